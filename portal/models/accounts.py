"""Batch accounts the portal fronts, and teams: the people who share work."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models


class Team(models.Model):
    """A group of people who share work: Team scope on every list, and what an Operator may act on."""

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)
    # Set by an Admin, in `budget_currency`; compared with the costs the price table gives (portal.costs.budgets).
    monthly_budget = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True,
        help_text="What the team's jobs may cost in a month; the preview warns past 80 %. Empty: no budget.")
    approval_limit = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True,
        help_text="A submission estimated to cost more than this waits for an Operator's or an Admin's approval "
                  "before anything runs. Empty: no limit.")
    budget_currency = models.CharField(max_length=3, default="USD", blank=True,
                                       help_text="ISO 4217 code of the budget and the limit; empty: USD.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BatchAccount(models.Model):
    """One Batch account the portal fronts, reached with a shared key or with Microsoft Entra ID. Nothing secret is
    stored: the key lives in the environment, in the variable named by `key_env_var`; Entra ID needs only the id of
    the managed identity to use (or none: DefaultAzureCredential finds the identity in the environment)."""

    class Auth(models.TextChoices):
        SHARED_KEY = "shared_key", "Shared key (from an environment variable)"
        ENTRA_ID = "entra_id", "Microsoft Entra ID (managed identity, workload identity or service principal)"

    name = models.SlugField(unique=True, help_text="Short name used in the portal.")
    account_url = models.URLField(max_length=300)
    account_name = models.CharField(max_length=64)
    auth = models.CharField(max_length=20, choices=Auth.choices, default=Auth.SHARED_KEY,
                            help_text="How the portal signs its requests to this account.")
    key_env_var = models.CharField(
        max_length=100, default="BATCH_ACCOUNT_KEY",
        validators=[RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "Letters, digits and underscores, not starting "
                                   "with a digit: the name of an environment variable, never the key itself.")],
        help_text="The name of the environment variable that holds the account's key, in the web and worker "
                  "processes. The key itself is never stored here.")
    managed_identity_client_id = models.CharField(
        max_length=36, blank=True,
        validators=[RegexValidator(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$",
                                   "A client id is a GUID, like 00000000-0000-0000-0000-000000000000.")],
        help_text="Entra ID only: the client id of the user-assigned managed identity to sign in as. Empty: "
                  "DefaultAzureCredential (AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET of a service "
                  "principal, workload identity, or the system-assigned managed identity).")
    is_default = models.BooleanField(default=False)
    # Disabled: not synced and not offered for new work; its mirror stays as history. Batch accounts are never
    # deleted here, since jobs, pools and submissions point at them.
    enabled = models.BooleanField(default=True, help_text="Synced and offered for new work. A disabled account's "
                                  "jobs and pools stay in the portal as history.")
    last_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

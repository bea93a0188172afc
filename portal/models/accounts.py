"""Batch accounts the portal fronts, and teams: the people who share work."""

from django.conf import settings
from django.db import models


class Team(models.Model):
    """A group of people who share work: Team scope on every list, and what an Operator may act on."""

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BatchAccount(models.Model):
    """One Batch account the portal fronts. Its key is a secret and lives in the environment,
    in the variable named by `key_env_var`, never in the database."""

    name = models.SlugField(unique=True, help_text="Short name used in the portal.")
    account_url = models.URLField(max_length=300)
    account_name = models.CharField(max_length=64)
    key_env_var = models.CharField(max_length=100, default="BATCH_ACCOUNT_KEY")
    is_default = models.BooleanField(default=False)
    last_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

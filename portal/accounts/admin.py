"""Admin for accounts: Batch accounts (added, edited and disabled by Admins; keys stay in the environment); teams
and their members editable, from the team's page or the user's. Membership changes reach the audit history through the
m2m receivers in portal/audit/receivers.py, so every write here goes through `members`/`teams`, never the through
table."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.db.models import Count, Model, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from portal.access import MANAGE_TEAMS
from portal.audit.admin import AuditedAdminMixin
from portal.models import BatchAccount, Team

User = get_user_model()


@admin.register(BatchAccount)
class BatchAccountAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Admins add and edit accounts, and disable one rather than delete it (jobs, pools and submissions point at
    it). The key is never entered here: only the name of the environment variable that holds it."""

    audit_type = "batch_account"
    list_display = ["name", "account_name", "account_url", "auth", "key_env_var", "enabled", "is_default",
                    "last_synced_at"]
    list_filter = ["enabled"]
    search_fields = ["name", "account_name"]
    fields = ["name", "account_url", "account_name", "auth", "key_env_var", "managed_identity_client_id", "enabled",
              "is_default", "last_synced_at", "audit_history"]
    # The default account follows settings (batchsync.accounts.default_account); the sync writes last_synced_at.
    readonly_fields = ["is_default", "last_synced_at", "audit_history"]
    actions = ["disable_accounts", "enable_accounts"]

    def get_readonly_fields(self, request: HttpRequest, obj: BatchAccount | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.is_default:
            # Settings are its source of truth: an edit here would be undone on the next sync.
            fields += ["name", "account_url", "account_name", "auth", "managed_identity_client_id"]
        return fields

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    @admin.action(description="Disable the selected accounts (no more syncs; their jobs stay as history)",
                  permissions=["change"])
    def disable_accounts(self, request: HttpRequest, queryset: QuerySet[BatchAccount]) -> None:
        self._set_enabled(request, queryset, False)

    @admin.action(description="Enable the selected accounts", permissions=["change"])
    def enable_accounts(self, request: HttpRequest, queryset: QuerySet[BatchAccount]) -> None:
        self._set_enabled(request, queryset, True)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[BatchAccount], enabled: bool) -> None:
        # One save per account, through save_model, so each change is in the audit history.
        for account in queryset.exclude(enabled=enabled):
            account.enabled = enabled
            self.save_model(request, account, None, change=True)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "member_count"]
    search_fields = ["name"]
    filter_horizontal = ["members"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return super().get_queryset(request).annotate(member_count=Count("members"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, team: Team) -> int:
        return team.member_count  # type: ignore[attr-defined]  # annotated by get_queryset


class UserWithTeamsForm(UserChangeForm):
    """Django's user form plus the user's teams (the reverse side of Team.members, which a ModelForm leaves out)."""

    teams = forms.ModelMultipleChoiceField(
        Team.objects.all(), required=False, widget=FilteredSelectMultiple("teams", is_stacked=False),
        help_text="Team scope on every list, and the work an Operator may act on.")
    # Set per request by PortalUserAdmin.get_form: someone who may change users but not teams sees them read-only.
    may_change_teams = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["teams"].disabled = not self.may_change_teams
        if self.instance.pk:
            self.fields["teams"].initial = self.instance.teams.all()


# Importing django.contrib.auth.admin (above) registered Django's own user admin, which this one replaces; the portal
# app is listed before auth, so the import is what makes the order certain.
admin.site.unregister(User)


@admin.register(User)
class PortalUserAdmin(UserAdmin):
    form = UserWithTeamsForm
    fieldsets = [
        (name, {**options, "fields": [*options["fields"], "teams"]} if "groups" in options["fields"] else options)
        for name, options in UserAdmin.fieldsets or ()
    ]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False,
                 **kwargs: Any) -> type[ModelForm[Any]]:
        form = super().get_form(request, obj, change=change, **kwargs)
        if issubclass(form, UserWithTeamsForm):   # not the add form, which has no teams
            form = type(form.__name__, (form,), {"may_change_teams": request.user.has_perm(MANAGE_TEAMS)})
        return form

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if "teams" in form.cleaned_data and not form.fields["teams"].disabled:
            # set() sends m2m_changed, which the audit receivers turn into a user.team_change event.
            form.instance.teams.set(form.cleaned_data["teams"])

"""Single sign-on with Microsoft Entra ID (OpenID Connect): who the person is, and their roles from directory groups.

Used only when OIDC_RP_CLIENT_ID is set (see settings). The person is identified by the ID token Entra returns to
the code flow (signature checked against the tenant's keys by mozilla-django-oidc); on every sign-in the directory
groups in its `groups` claim decide the person's roles (OIDC_GROUP_ROLES) and teams (OIDC_GROUP_TEAMS), so a change
in the directory takes effect at the next sign-in. Roles follow the directory exactly; teams the team mapping does
not name are left to the admin."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.db.models import QuerySet
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from portal.accounts.permissions import shared_user
from portal.accounts.roles import ROLE_NAMES, parse_group_mapping
from portal.models import Team

# The ID token's claims, as mozilla-django-oidc hands them over (JSON values).
Claims = Mapping[str, Any]

logger = logging.getLogger(__name__)


class EntraIDBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, keyed on the directory's user name and mapping groups to roles and teams."""

    def get_user(self, user_id: int) -> User | None:
        # Every request of a person signed in this way loads their row here: shared like the other backend's.
        return shared_user(user_id, super().get_user)

    def get_userinfo(self, access_token: str, id_token: str, payload: Claims) -> Claims:
        # The ID token is already verified and carries everything needed, the groups included; Entra's userinfo
        # endpoint would return neither groups nor the tenant, and costs a call.
        return payload

    def verify_claims(self, claims: Claims) -> bool:
        tenant = self.get_settings("OIDC_TENANT_ID", "")
        if tenant and claims.get("tid") != tenant:
            logger.warning("single sign-on refused: token from tenant %s, expected %s", claims.get("tid"), tenant)
            return False
        audience = claims.get("aud")
        if audience is not None and self.OIDC_RP_CLIENT_ID not in (audience if isinstance(audience, list)
                                                                   else [audience]):
            logger.warning("single sign-on refused: token for audience %s", audience)
            return False
        return bool(self.username_from(claims))

    @staticmethod
    def username_from(claims: Claims) -> str:
        # preferred_username is the sign-in name (alice@contoso.com): what people recognise on pages and in the
        # audit history. Entra's object id would be steadier, but the User model has no field for it.
        return (claims.get("preferred_username") or claims.get("upn") or claims.get("email") or "").strip().lower()

    def filter_users_by_claims(self, claims: Claims) -> QuerySet[User]:
        username = self.username_from(claims)
        if not username:
            return self.UserModel.objects.none()
        return self.UserModel.objects.filter(username__iexact=username)

    def describe_user_by_claims(self, claims: Claims) -> str:
        return f"username {self.username_from(claims)}"

    def create_user(self, claims: Claims) -> User:
        # No password: this account signs in through the directory only.
        user = self.UserModel.objects.create_user(self.username_from(claims), email=self._email(claims))
        return self.update_user(user, claims)

    def update_user(self, user: User, claims: Claims) -> User:
        with transaction.atomic():
            user.email = self._email(claims) or user.email
            user.first_name = (claims.get("given_name") or user.first_name)[:150]
            user.last_name = (claims.get("family_name") or user.last_name)[:150]
            roles = self.apply_groups(user, claims)
            # The admin site needs is_staff; the directory decides it along with the Admin role.
            user.is_staff = "Admin" in roles or user.is_superuser
            user.save()
        return user

    def apply_groups(self, user: User, claims: Claims) -> set[str]:
        """Give `user` exactly the roles (and mapped teams) their directory groups map to; returns the role names."""
        group_ids = self.group_ids(claims)
        role_map = parse_group_mapping(self.get_settings("OIDC_GROUP_ROLES", ""), allowed=ROLE_NAMES)
        team_map = parse_group_mapping(self.get_settings("OIDC_GROUP_TEAMS", ""))
        roles = {role_map[g] for g in group_ids if g in role_map}
        wanted_roles = list(Group.objects.filter(name__in=roles))
        user.groups.remove(*Group.objects.filter(name__in=ROLE_NAMES).exclude(pk__in=[g.pk for g in wanted_roles]))
        user.groups.add(*wanted_roles)
        if team_map:
            teams = {team_map[g] for g in group_ids if g in team_map}
            wanted_teams = [Team.objects.get_or_create(name=name)[0] for name in sorted(teams)]
            mapped = Team.objects.filter(name__in=set(team_map.values()))
            user.teams.remove(*mapped.exclude(pk__in=[t.pk for t in wanted_teams]))
            user.teams.add(*wanted_teams)
        return roles

    @staticmethod
    def group_ids(claims: Claims) -> set[str]:
        groups = claims.get("groups")
        if groups is None and "groups" in (claims.get("_claim_names") or {}):
            # Group overage: past 200 groups Entra sends a Graph link instead of the list. Assigning groups to the
            # app registration ("groups assigned to the application") keeps the list short.
            logger.warning("single sign-on for %s: the token lists no groups (overage); no role given",
                           claims.get("preferred_username"))
        return {str(g).lower() for g in groups or []}

    @staticmethod
    def _email(claims: Claims) -> str:
        email = claims.get("email") or ""
        if not email and "@" in (claims.get("preferred_username") or ""):
            email = claims["preferred_username"]
        return email.strip().lower()


def enabled() -> bool:
    return settings.OIDC_ENABLED

"""The people the tests act as: one per role, two teams, and an account with no role.

Roles are the groups migration 0007 creates. A transactional test flushes the database, groups included, so
`role()` recreates a group from the migration's own list when it is missing rather than trusting it is there."""

import importlib

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission

from portal.models import Team
from tests.factories import UserFactory

ROLES = importlib.import_module("portal.migrations.0007_roles_audit_guard").ROLES


def role(name: str) -> Group:
    group, created = Group.objects.get_or_create(name=name)
    if created or not group.permissions.exists():
        _ensure_permissions()
        wanted = []
        for dotted in ROLES[name]:
            app_label, codename = dotted.split(".")
            wanted.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
        group.permissions.set(wanted)
    return group


def _ensure_permissions() -> None:
    # A test with serialized_rollback flushes without Django's post-migrate step, so the tests after it can start
    # with no content types or permissions at all: make them as `migrate` would.
    for config in apps.get_app_configs():
        create_permissions(config, verbosity=0)


def team(name: str) -> Team:
    return Team.objects.get_or_create(name=name)[0]


def person(username: str, role_name: str | None = None, *, teams=(), **fields):
    """A user with `role_name` (or none) in `teams`."""
    user = UserFactory(username=username, role=role_name or "", **fields)
    for each in teams:
        user.teams.add(each)
    return user

"""The people the tests act as, in one place: one per role, two teams, and an account with no role.

The set, as fixtures in tests/conftest.py (a test asks for them by name rather than making its own people):

    owner       `submitter`        sue-submitter   Submitter in Team A: owns the work a test acts on
    team mate   `operator_a`       opal-operator   Operator in Team A: acts on the team's work, manages pools
    outsider    `other_submitter`  sid-submitter   Submitter in Team B: may read the owner's work, not act on it
                `operator_b`       otis-operator   Operator of Team B: acts on Team B's work, not Team A's
    viewer      `viewer`           vic-viewer      Viewer: reads everything, acts on nothing
    admin       `portal_admin`     ada-admin       Admin, with the staff flag the admin site needs
                `engineer`         erin-engineer   Submitter who may also write command lines
    no role     `no_role`          nora-norole     can sign in, reads nothing
                `user`             alice           Submitter in no team: the one `signed_in` signs in

`person()` makes anyone else a test is about (someone in two teams, a superuser).

Roles are the groups migration 0007 creates. A transactional test flushes the database, groups included, so
`role()` recreates a group from the migration's own list when it is missing rather than trusting it is there."""

import importlib

from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission
from django.test import Client

from portal.models import Team
from tests.factories import UserFactory

ROLES = {name: list(codenames) for name, codenames in
         importlib.import_module("portal.migrations.0007_roles_audit_guard").ROLES.items()}
# Later migrations that add to a role's permissions (each names its additions ROLE_ADDITIONS).
for _later in ("0020_vm_prices",):
    for _name, _added in importlib.import_module(f"portal.migrations.{_later}").ROLE_ADDITIONS.items():
        ROLES[_name] += _added


def role(name: str) -> Group:
    group, created = Group.objects.get_or_create(name=name)
    if created or not group.permissions.exists():
        _ensure_permissions()
        group.permissions.set([_permission(dotted) for dotted in ROLES[name]])
    return group


def _permission(dotted: str) -> Permission:
    app_label, codename = dotted.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def _ensure_permissions() -> None:
    # A test with serialized_rollback flushes without Django's post-migrate step, so the tests after it can start
    # with no content types or permissions at all: make them as `migrate` would.
    for config in apps.get_app_configs():
        create_permissions(config, verbosity=0)


def team(name: str) -> Team:
    return Team.objects.get_or_create(name=name)[0]


def person(username: str, role_name: str | None = None, *, teams=(), permissions=(), **fields):
    """A user with exactly `role_name` (or no role) in `teams`, with `permissions` ("portal.codename") besides."""
    user = UserFactory(username=username, role=role_name or "", **fields)
    for each in teams:
        user.teams.add(each)
    for dotted in permissions:
        user.user_permissions.add(_permission(dotted))
    return user


def client_for(user) -> Client:
    """A test client signed in as `user`."""
    client = Client()
    client.force_login(user)
    return client

"""Audit records of what happens inside Django's own code: sign-in, sign-out, lockouts, and changes to roles,
teams and permissions made in the admin. Connected by PortalConfig.ready().

Conventions keep writes out of signals; these are the exception, because those changes happen inside Django (its
auth views, the admin's forms), where no service of ours is called."""

from collections.abc import Callable, Iterable
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.http import HttpRequest

from portal.audit.middleware import current_user
from portal.audit.services import record_event
from portal.models import Team


def connect_receivers() -> None:
    User = get_user_model()
    user_logged_in.connect(_logged_in, dispatch_uid="portal.audit.logged_in")
    user_logged_out.connect(_logged_out, dispatch_uid="portal.audit.logged_out")
    user_login_failed.connect(_login_failed, dispatch_uid="portal.audit.login_failed")
    m2m_changed.connect(_groups_changed, sender=User.groups.through, dispatch_uid="portal.audit.groups")
    m2m_changed.connect(_teams_changed, sender=Team.members.through, dispatch_uid="portal.audit.teams")
    m2m_changed.connect(_group_permissions_changed, sender=Group.permissions.through,
                        dispatch_uid="portal.audit.group_permissions")
    post_delete.connect(_user_deleted, sender=User, dispatch_uid="portal.audit.user_deleted")
    pre_save.connect(_user_flags_before, sender=User, dispatch_uid="portal.audit.user_flags_before")
    post_save.connect(_user_flags_after, sender=User, dispatch_uid="portal.audit.user_flags_after")
    if apps.is_installed("axes"):
        # Only when installed: a portal without login throttling has no axes to import.
        from axes.signals import user_locked_out  # noqa: PLC0415

        user_locked_out.connect(_locked_out, dispatch_uid="portal.audit.locked_out")


def _logged_in(sender: type[User], request: HttpRequest, user: User, **kwargs: Any) -> None:
    record_event(actor=user, action="auth.login", obj=user, object_type="user")


def _logged_out(sender: type[User], request: HttpRequest, user: User | None, **kwargs: Any) -> None:
    if user is not None:
        record_event(actor=user, action="auth.logout", obj=user, object_type="user")


def _login_failed(sender: str, credentials: dict[str, Any], request: HttpRequest | None = None,
                  **kwargs: Any) -> None:
    User = get_user_model()
    # Only the name that was tried: Django has already masked the password, and it is not kept even masked.
    username = str(credentials.get(User.USERNAME_FIELD) or credentials.get("username") or "")[:150]
    known = User._default_manager.filter(**{User.USERNAME_FIELD: username}).values_list("pk", flat=True).first()
    record_event(actor=None, action="auth.login_failed", object_type="user",
                 object_id=str(known) if known else "", object_label=username,
                 details={"username": username, "known_user": known is not None})


def _locked_out(sender: object, request: HttpRequest | None = None, username: str | None = None,
                ip_address: str | None = None, **kwargs: Any) -> None:
    # Sent when django-axes locks a name at an address, and again for each attempt refused while it lasts.
    username = str(username or "")[:150]
    record_event(actor=None, action="auth.lockout", object_type="user", object_label=username,
                 details={"username": username})


# The flags that make an account an administrator, or stop it signing in at all, are role changes too.
_USER_FLAGS = ("is_superuser", "is_staff", "is_active")


def _user_flags_before(sender: type[User], instance: User, update_fields: Iterable[str] | None = None,
                       raw: bool = False, **kwargs: Any) -> None:
    if raw or instance.pk is None or (update_fields is not None and not set(update_fields) & set(_USER_FLAGS)):
        return
    # Kept on the instance from pre_save to post_save.
    instance._audit_flags_before = (  # type: ignore[attr-defined]
        type(instance)._default_manager.filter(pk=instance.pk).values(*_USER_FLAGS).first())


def _user_flags_after(sender: type[User], instance: User, created: bool = False, raw: bool = False,
                      **kwargs: Any) -> None:
    before = instance.__dict__.pop("_audit_flags_before", None)
    if raw or created or not before:
        return
    changes = {flag: [before[flag], getattr(instance, flag)] for flag in _USER_FLAGS
               if before[flag] != getattr(instance, flag)}
    if changes:
        record_event(actor=current_user(), action="user.role_change", obj=instance, object_type="user",
                     changes=changes)


def _user_deleted(sender: type[User], instance: User, **kwargs: Any) -> None:
    record_event(actor=current_user(), action="user.delete", obj=instance, object_type="user")


def _group_permissions_changed(sender: type[Model], instance: Model, action: str, reverse: bool, model: type[Model],
                               pk_set: set[int] | None, **kwargs: Any) -> None:
    """What a role may do changed (normally only by a migration; an administrator could in the admin)."""
    if reverse or not isinstance(instance, Group):
        return
    def names() -> list[str]:
        return sorted(f"{app}.{code}" for app, code in
                      instance.permissions.values_list("content_type__app_label", "codename"))

    if action.startswith("pre_"):
        # Kept on the instance from the pre_ signal to the post_ one.
        instance._audit_permissions_before = names()  # type: ignore[attr-defined]
    elif action.startswith("post_"):
        before, after = getattr(instance, "_audit_permissions_before", None), names()
        if before is not None and before != after:
            record_event(actor=current_user(), action="group.permission_change", object_type="group",
                         object_id=str(instance.pk), object_label=instance.name,
                         changes={"permissions": [before, after]})


def _groups_changed(sender: type[Model], instance: Model, action: str, reverse: bool, model: type[Model],
                    pk_set: set[int] | None, **kwargs: Any) -> None:
    _membership_changed(instance=instance, action=action, reverse=reverse, pk_set=pk_set,
                        relation="groups", event="user.role_change",
                        names_of=lambda user: sorted(user.groups.values_list("name", flat=True)),
                        users_of=lambda group: group.user_set.all())


def _teams_changed(sender: type[Model], instance: Model, action: str, reverse: bool, model: type[Model],
                   pk_set: set[int] | None, **kwargs: Any) -> None:
    # Team.members is the forward side here: `instance` is a Team unless `reverse` (user.teams.add(...)).
    _membership_changed(instance=instance, action=action, reverse=not reverse, pk_set=pk_set,
                        relation="teams", event="user.team_change",
                        names_of=lambda user: sorted(user.teams.values_list("name", flat=True)),
                        users_of=lambda team: team.members.all())


def _membership_changed(*, instance: Any, action: str, reverse: bool, pk_set: set[int] | None, relation: str,
                        event: str, names_of: Callable[[User], list[str]],
                        users_of: Callable[[Any], Iterable[User]]) -> None:
    """One event per user whose memberships changed, with the names before and after. `reverse` means
    `instance` is the group or team and `pk_set` holds user ids."""
    if action not in ("pre_add", "pre_remove", "pre_clear", "post_add", "post_remove", "post_clear"):
        return
    stash = f"_audit_{relation}_before"
    if action.startswith("pre_"):
        # The state before is read now; after a clear, the post_ signal no longer says who was affected.
        if not reverse:
            users = [instance]
        elif pk_set is None:
            users = list(users_of(instance))
        else:
            users = list(get_user_model()._default_manager.filter(pk__in=pk_set))
        setattr(instance, stash, {user.pk: names_of(user) for user in users})
        return
    befores = getattr(instance, stash, {})
    affected = [instance] if not reverse else list(get_user_model()._default_manager.filter(pk__in=befores))
    actor = current_user()
    for user in affected:
        _record_membership(actor, user, event, relation, befores.get(user.pk), names_of(user))


def _record_membership(actor: User | None, user: User, event: str, relation: str, before: list[str] | None,
                       after: list[str]) -> None:
    if before is None or before == after:
        return
    record_event(actor=actor, action=event, obj=user, object_type="user", changes={relation: [before, after]})

"""Each signed-in person's user row and permissions, read from the database once and shared by every web process
through the cache.

Every request loads the person's row (Django's AuthenticationMiddleware), and every page asks `portal.access` several
times who may do what; Django's ModelBackend answers from a query for the row and two for the permissions (the
user's own, their groups'). Rows and roles change rarely, so both are kept in the cache under tokens that a change
moves on: the row under a token of that person's, which any save or deletion of the row moves on; the permissions
under a generation token that any change to roles, group permissions or a user's own permissions moves on. A token
moves after the change's transaction commits, so no reader can store the old answer under the new token; a
deactivated person, a changed password or superuser flag is seen by the next request. A Redis that does not answer
is a miss: the answer then comes from the database, as without this backend."""

import uuid
from collections.abc import Callable
from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser, Group, Permission, User
from django.core.cache import cache
from django.db import transaction
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save

GENERATION_KEY = "permissions:generation"
# A change moves the tokens on at once; this bounds how long an answer can outlive a change made while Redis did not
# answer (the token could not move then) or one made without a save (a bulk update).
CACHE_SECONDS = 60


def _user_key(user_id: int) -> str:
    return f"permissions:user:{user_id}"


def _row_key(user_id: int) -> str:
    return f"users:row:{user_id}"


def _row_token_key(user_id: int) -> str:
    return f"users:token:{user_id}"


def shared_user(user_id: int, load: Callable[[int], User | None]) -> User | None:
    """The person `user_id` for this request, as `load` (a backend's own get_user) reads them: from the shared cache
    while their row has not changed since it was read. Their permissions' cache entries come in the same read."""
    keys = [_row_token_key(user_id), _row_key(user_id), GENERATION_KEY, _user_key(user_id)]
    found = cache.get_many(keys)
    token = found.get(keys[0]) or ""
    entry = found.get(keys[1])
    if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == token and isinstance(entry[1], User):
        user: User | None = entry[1]
    else:
        user = load(user_id)
        if user is not None:
            # Under the token read before the row: if the row changes meanwhile, its token moves past this one.
            cache.set(keys[1], (token, user), CACHE_SECONDS)
    if user is not None:
        user._permission_entries = {key: found.get(key) for key in keys[2:]}  # type: ignore[attr-defined]
    return user


class CachedPermissionsBackend(ModelBackend):
    """ModelBackend, with the signed-in person's row (`get_user`) served from the shared cache while it has not
    changed, and `get_all_permissions` while the roles have not changed."""

    def get_user(self, user_id: int) -> User | None:
        user = shared_user(user_id, super().get_user)
        # ModelBackend's own check, which a row read by another backend (single sign-on's) has not been through.
        return user if user is not None and self.user_can_authenticate(user) else None

    def get_all_permissions(self, user_obj: User | AnonymousUser, obj: Model | None = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        # ModelBackend's own per-request memo, on the user object.
        if not hasattr(user_obj, "_perm_cache"):
            setattr(user_obj, "_perm_cache", self._shared(user_obj))  # noqa: B010
        permissions: set[str] = getattr(user_obj, "_perm_cache")  # noqa: B009
        return permissions

    def _shared(self, user: Any) -> set[str]:
        key = _user_key(user.pk)
        # Read with the row by `get_user` when it loaded this person for the request; once only.
        found = user.__dict__.pop("_permission_entries", None) or cache.get_many([GENERATION_KEY, key])
        generation = found.get(GENERATION_KEY) or ""
        entry = found.get(key)
        # The entry names the user row it was read for (its creation time: a user deleted and made again under the
        # same id is someone else) and the superuser flag (a superuser has every permission); both come from the
        # request's user row, current as of the row's last change, so a changed flag is never answered from here.
        identity = (generation, user.is_superuser, user.date_joined)
        if isinstance(entry, tuple) and entry[:3] == identity:
            return set(entry[3])
        permissions = super().get_all_permissions(user)
        cache.set(key, (*identity, frozenset(permissions)), CACHE_SECONDS)
        return set(permissions)


def _move_token(key: str) -> None:
    # A new random token rather than a counter: a plain set, which the tolerant cache drops quietly when Redis does
    # not answer, where incr would raise.
    cache.set(key, uuid.uuid4().hex, None)


def _move_token_now_and_after_commit(key: str) -> None:
    # Now, so this process's next page sees the change even inside the transaction that made it; and again once it
    # commits, since another process may have cached the old rows, under the new token, in between.
    _move_token(key)
    transaction.on_commit(lambda: _move_token(key))


def _on_change(**kwargs: Any) -> None:
    """Roles or permissions changed: every cached answer is out of date."""
    _move_token_now_and_after_commit(GENERATION_KEY)


def _row_changed(instance: User, **kwargs: Any) -> None:
    """A person's row was saved or deleted: their shared copy is out of date."""
    _move_token_now_and_after_commit(_row_token_key(instance.pk))


def connect_receivers() -> None:
    """Roles and permissions change inside Django (the admin's forms, single sign-on's group mapping), where no
    service of ours is called: they are heard of by signal. Connected by PortalConfig.ready()."""
    m2m_changed.connect(_on_change, sender=User.groups.through, dispatch_uid="portal.permissions.groups")
    m2m_changed.connect(_on_change, sender=User.user_permissions.through,
                        dispatch_uid="portal.permissions.user_permissions")
    m2m_changed.connect(_on_change, sender=Group.permissions.through,
                        dispatch_uid="portal.permissions.group_permissions")
    post_delete.connect(_on_change, sender=Group, dispatch_uid="portal.permissions.group_deleted")
    post_delete.connect(_on_change, sender=Permission, dispatch_uid="portal.permissions.permission_deleted")
    post_save.connect(_row_changed, sender=User, dispatch_uid="portal.permissions.user_saved")
    post_delete.connect(_row_changed, sender=User, dispatch_uid="portal.permissions.user_deleted")

"""Each person's permissions, read from the database once and shared by every web process through the cache.

Every page asks `portal.access` several times who may do what; Django's ModelBackend answers from two queries per
request (the user's own permissions, their groups'). Roles change rarely, so the answer is kept in the cache under a
generation token that any change to roles, group permissions or a user's own permissions moves on (after its
transaction commits, so no reader can store the old answer under the new token). A Redis that does not answer is a
miss: the answer then comes from the database, as without this backend."""

import uuid
from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser, Group, Permission, User
from django.core.cache import cache
from django.db import transaction
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete

GENERATION_KEY = "permissions:generation"
# A change moves the generation on at once; this bounds how long an answer can outlive a change made while Redis
# did not answer (the generation could not move then).
CACHE_SECONDS = 60


def _user_key(user_id: int) -> str:
    return f"permissions:user:{user_id}"


class CachedPermissionsBackend(ModelBackend):
    """ModelBackend, with `get_all_permissions` served from the shared cache while the roles have not changed."""

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
        found = cache.get_many([GENERATION_KEY, key])
        generation = found.get(GENERATION_KEY) or ""
        entry = found.get(key)
        # The entry names the user row it was read for (its creation time: a user deleted and made again under the
        # same id is someone else) and the superuser flag (a superuser has every permission); both are read from the
        # user row on every request, so a changed flag is never answered from the cache.
        identity = (generation, user.is_superuser, user.date_joined)
        if isinstance(entry, tuple) and entry[:3] == identity:
            return set(entry[3])
        permissions = super().get_all_permissions(user)
        cache.set(key, (*identity, frozenset(permissions)), CACHE_SECONDS)
        return set(permissions)


def permissions_changed() -> None:
    """Every cached answer is out of date from now on (called once the change is committed)."""
    # A new random token rather than a counter: a plain set, which the tolerant cache drops quietly when Redis does
    # not answer, where incr would raise.
    cache.set(GENERATION_KEY, uuid.uuid4().hex, None)


def _on_change(**kwargs: Any) -> None:
    # Now, so this process's next page sees the change even inside the transaction that made it; and again once it
    # commits, since another process may have cached the old rows, under the new token, in between.
    permissions_changed()
    transaction.on_commit(permissions_changed)


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

"""The roles, and the mapping of directory groups onto them for single sign-on.

Plain Python without Django: settings check the mappings before the apps load."""

from __future__ import annotations

# The roles, as Django groups (migration 0007); what each may do is decided in portal.access.
ROLE_NAMES = ("Viewer", "Submitter", "Operator", "Admin")


def parse_group_mapping(text: str, *, allowed: tuple[str, ...] | None = None) -> dict[str, str]:
    """'<group id>=<name>,<group id>=<name>' → {group id (lower case): name}, for single sign-on's group mappings.
    Raises ValueError on a malformed pair or, with `allowed`, a name outside it, so a typo stops the start rather
    than silently granting nothing. Plain Python: settings call it before the apps load."""
    mapping: dict[str, str] = {}
    for pair in (item.strip() for item in (text or "").split(",")):
        if not pair:
            continue
        group_id, sep, name = (part.strip() for part in pair.partition("="))
        if not sep or not group_id or not name:
            raise ValueError(f"expected <group id>=<name>, got {pair!r}")
        if allowed is not None and name not in allowed:
            raise ValueError(f"{name!r} is not one of {', '.join(allowed)}")
        mapping[group_id.lower()] = name
    return mapping

"""Who may do what: the one place the portal decides whether a person may see or act on an object.

Roles are Django groups (migration 0007): Viewer reads; Submitter submits from templates and acts on their own
work; Operator acts on the work of their teams and manages pools; Admin edits templates, users and accounts.
Views and services ask these functions; none of them checks a group name directly."""

from __future__ import annotations

SUBMIT = "portal.submit"
OPERATE_TEAM_WORK = "portal.operate_team_work"
MANAGE_POOLS = "portal.manage_pools"
WRITE_COMMAND_LINES = "portal.write_command_lines"


def _active(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active)


def can_submit(user) -> bool:
    return _active(user) and user.has_perm(SUBMIT)


def can_act_on(user, obj) -> bool:
    """May `user` terminate, retry, delete or re-run `obj` (a Job, Task or Submission)? Their own work with the
    submit permission, their teams' work as an Operator, anything as a superuser."""
    if not _active(user):
        return False
    if user.is_superuser:
        return True
    owner_id, team_id = _owner_and_team(obj)
    if owner_id is not None and owner_id == user.pk and user.has_perm(SUBMIT):
        return True
    return bool(team_id is not None and user.has_perm(OPERATE_TEAM_WORK)
                and user.teams.filter(pk=team_id).exists())


def _owner_and_team(obj) -> tuple[int | None, int | None]:
    from portal.models import Job, Submission, Task

    if isinstance(obj, Task):
        obj = obj.job
    if isinstance(obj, (Job, Submission)):
        return obj.submitted_by_id, obj.team_id
    raise TypeError(f"no access rule for {type(obj).__name__}")

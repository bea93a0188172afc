"""Who may do what: the one place the portal decides whether a person may see or act on an object.

Roles are Django groups (migration 0007): Viewer reads; Submitter submits from templates and acts on their own
work; Operator acts on the work of their teams and manages pools; Admin edits templates, users and accounts.
Views and services ask these functions; none of them checks a group name directly.

Reading: anyone with a role reads everything the portal mirrors (the dashboard is the team's shared view), and a
signed-in account without a role reads nothing. Scopes (My / Team / All) narrow lists for convenience; they are
filters, not walls. Acting is narrower: see `can_act_on`."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeGuard, TypeVar

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.db.models import Model, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse

from portal.accounts.roles import ROLE_NAMES
from portal.lookups import CompiledGet
from portal.models import BatchAccount, Job, Submission, Task, Team

# Who asks: a request's user, signed in or not.
Person = User | AnonymousUser


class SignedInRequest(HttpRequest):
    """The request a view behind login_required gets (for the type checker): its user is signed in."""
    user: User

M = TypeVar("M", bound=Model)
QS = TypeVar("QS", bound=QuerySet[Any])

SUBMIT = "portal.submit"
OPERATE_TEAM_WORK = "portal.operate_team_work"
MANAGE_POOLS = "portal.manage_pools"
WRITE_COMMAND_LINES = "portal.write_command_lines"
MANAGE_TEAMS = "portal.change_team"
# Operators and Admins: the audit pages show the whole history, addresses included.
VIEW_AUDIT = "portal.view_auditevent"
# Every role has it (migration 0007), so it stands for "has a role": the one permission reads are gated on.
READ = "portal.view_job"

# What each role adds, in words a refused person reads (see `refusal`), and, for each right a page may need, what
# it lets one do and the first role that has it. Migration 0007 gives the roles these rights.
_ROLE_CAN = {
    "Viewer": "can read",
    "Submitter": "can read and submit work",
    "Operator": "can read, submit work, act on your teams' work and manage pools",
    "Admin": "can do everything in the portal",
}
_RIGHTS = {
    SUBMIT: ("submit work", "Submitter"),
    MANAGE_POOLS: ("create, resize or delete pools", "Operator"),
    VIEW_AUDIT: ("read the audit history", "Operator"),
    WRITE_COMMAND_LINES: ("write command lines", "Admin"),
    OPERATE_TEAM_WORK: ("act on your teams' work", "Operator"),
}

SCOPE_MY, SCOPE_TEAM, SCOPE_ALL = "my", "team", "all"
SCOPES = [(SCOPE_MY, "Mine"), (SCOPE_TEAM, "My teams"), (SCOPE_ALL, "All")]


def _active(user: Person | None) -> TypeGuard[User]:
    return bool(user and user.is_authenticated and user.is_active)


def can_read(user: Person) -> bool:
    """May `user` read the portal's pages at all? Superusers always; others when they have a role."""
    return _active(user) and (user.is_superuser or user.has_perm(READ))


def can_manage_pools(user: Person) -> bool:
    return _active(user) and user.has_perm(MANAGE_POOLS)


def can_submit(user: Person) -> bool:
    return _active(user) and user.has_perm(SUBMIT)


def can_write_command_lines(user: Person) -> bool:
    """Writing a command line is writing code that runs on the pool: free-form ones on the submit form, and specs
    of job templates."""
    return _active(user) and user.has_perm(WRITE_COMMAND_LINES)


def can_use_admin(user: Person) -> bool:
    """Who the admin site lets in (Django's own rule, staff), so pages link to it only for them."""
    return _active(user) and user.is_staff


def can_view_audit(user: Person) -> bool:
    """Who reads the whole audit history (its pages and export): Operators and Admins."""
    return _active(user) and user.has_perm(VIEW_AUDIT)


def user_can_view_account(*, user: Person, account_id: int) -> bool:
    """Whether `user` may read the mirror of one Batch account.

    Anyone with a role reads every account (`can_read`) until per-account roles exist; this is the one place to
    narrow that, and every object fetch (`readable_or_404`) and list (`visible_account_ids`) goes through it."""
    return bool(account_id) and can_read(user)


def visible_account_ids(user: Person) -> list[int]:
    """Ids of the accounts `user` may read; lists filter on these (the account table is tiny)."""
    return [pk for pk in BatchAccount.objects.order_by("pk").values_list("pk", flat=True)
            if user_can_view_account(user=user, account_id=pk)]


def readable_or_404(queryset: QuerySet[M] | CompiledGet[M], *, user: Person, account_of: Callable[[M], int],
                    **lookup: Any) -> M:
    """The one object of `queryset` matching `lookup`, if `user` may read its account (`account_of(obj)` gives the
    account id). 404 rather than 403 either way: a person without access learns nothing about which ids exist."""
    try:
        obj = queryset.get(**lookup)
    except ObjectDoesNotExist:   # the model's DoesNotExist
        raise Http404(f"No {queryset.model._meta.verbose_name} matches the given query.") from None
    if not user_can_view_account(user=user, account_id=account_of(obj)):
        raise Http404("No such object")
    return obj


def can_act_on(user: Person, obj: Job | Task | Submission) -> bool:
    """May `user` terminate, retry, delete or re-run `obj` (a Job, Task or Submission)? Their own work with the
    submit permission, their teams' work as an Operator, anything as a superuser."""
    if not _active(user):
        return False
    if user.is_superuser:
        return True
    owner_id, team_id = _owner_and_team(obj)
    if owner_id is not None and owner_id == user.pk and user.has_perm(SUBMIT):
        return True
    # An Admin may put themselves in any team (portal.change_team), so a team boundary would only cost them a detour:
    # operators who manage teams act on every team's work.
    if user.has_perm(OPERATE_TEAM_WORK) and user.has_perm(MANAGE_TEAMS):
        return True
    return bool(team_id is not None and user.has_perm(OPERATE_TEAM_WORK)
                and user.teams.filter(pk=team_id).exists())


def can_act_on_filter(user: Person) -> Q:
    """`can_act_on` as a filter over jobs or submissions (their `submitted_by` and `team`): for lists that show only
    what the person may act on."""
    if not _active(user):
        return Q(pk__in=[])
    if user.is_superuser or (user.has_perm(OPERATE_TEAM_WORK) and user.has_perm(MANAGE_TEAMS)):
        return Q()
    allowed = Q(submitted_by=user.pk) if user.has_perm(SUBMIT) else Q(pk__in=[])
    if user.has_perm(OPERATE_TEAM_WORK):
        allowed |= Q(team__in=user.teams.values("pk"))
    return allowed


def can_act_on_some_work(user: Person) -> bool:
    """Could `user` act on any work at all (`can_act_on` true for something): pages offer actions across many
    jobs (the Failures page's "Retry these") only to them; what each job allows is still asked per job."""
    return _active(user) and (user.is_superuser or user.has_perm(SUBMIT) or user.has_perm(OPERATE_TEAM_WORK))


def can_submit_again(user: Person, submission: Submission) -> bool:
    """May `user` send `submission`'s work to Batch again: re-run it, or retry its failed tasks as a new
    submission? Both submit work (the Submitter role) and act on the submission (`can_act_on`)."""
    return can_submit(user) and can_act_on(user, submission)


def can_act_on_teams(user: Person) -> bool:
    """Does `user` act on their teams' work (an Operator), not only their own?"""
    return _active(user) and (user.is_superuser or user.has_perm(OPERATE_TEAM_WORK))


def can_view_costs(user: Person) -> bool:
    """Who reads the Costs page: Operators (their teams' costs) and Admins (every team's); see `cost_team_ids`."""
    return can_act_on_teams(user)


def cost_team_ids(user: User) -> list[int] | None:
    """The teams whose costs `user` reads: None for all of them and for work outside any team (Admins, who manage
    teams, and superusers); else the teams they are in."""
    if user.is_superuser or user.has_perm(MANAGE_TEAMS):
        return None
    return list(user.teams.values_list("pk", flat=True))


def can_approve(user: Person, submission: Submission) -> bool:
    """May `user` approve or turn down `submission`, which waits for approval (portal.costs.budgets)? An Operator of its
    team or an Admin (as `can_act_on`), never the person who submitted it."""
    return (_active(user) and submission.submitted_by_id != user.pk and user.has_perm(OPERATE_TEAM_WORK)
            and can_act_on(user, submission))


class Refused(PermissionDenied):
    """A refusal that says why in plain words and what to do; the 403 page shows its message as it is."""


def roles_of(user: Person) -> list[str]:
    """The portal roles `user` holds, lowest first."""
    if not _active(user):
        return []
    held = set(user.groups.filter(name__in=ROLE_NAMES).values_list("name", flat=True))
    return [name for name in ROLE_NAMES if name in held]


def refusal(user: Person, right: str) -> Refused:
    """Why `user` may not use `right` (one of the permissions above), and whom to ask: raise what this returns.
    "Your role, Viewer, can read but not submit work. Ask an Admin for the Submitter role." """
    action, role_needed = _RIGHTS[right]
    roles = roles_of(user)
    if not roles:
        return Refused(f"Your account has no role that lets you {action}. Ask an Admin for the {role_needed} role.")
    highest = roles[-1]
    return Refused(f"Your role, {highest}, {_ROLE_CAN[highest]} but not {action}. "
                   f"Ask an Admin for the {role_needed} role.")


def role_for(right: str) -> str:
    """The first role that has `right` (one of the permissions above), with its article, for sentences that say
    who could change something: "an Operator", "an Admin"."""
    role = _RIGHTS[right][1]
    return f"{'an' if role[0] in 'AEIOU' else 'a'} {role}"


View = Callable[..., HttpResponse]


def require(right: str) -> Callable[[View], View]:
    """A view decorator: the view runs only for people with `right`; others get the 403 page saying why."""
    def decorator(view: View) -> View:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.has_perm(right):
                raise refusal(request.user, right)
            return view(request, *args, **kwargs)
        return checked
    return decorator


def _owner_and_team(obj: Job | Task | Submission) -> tuple[int | None, int | None]:
    if isinstance(obj, Task):
        obj = obj.job
    if isinstance(obj, (Job, Submission)):
        return obj.submitted_by_id, obj.team_id
    raise TypeError(f"no access rule for {type(obj).__name__}")


def submission_team(user: User) -> Team | None:
    """The team a new submission (and so its job) belongs to: the submitter's only team, or, for someone in several,
    the first by name, so the choice is stable and visible in the admin; None for someone in no team, whose work
    then only they (and superusers) may act on."""
    return user.teams.order_by("name", "pk").first()


def scoped(queryset: QS, *, user: User, scope: str, owner_field: str = "submitted_by",
           team_field: str = "team") -> QS:
    """`queryset` (jobs or submissions) narrowed to a scope: my work, my teams' work, or everything readable."""
    if scope == SCOPE_MY:
        return queryset.filter(**{owner_field: user.pk})
    if scope == SCOPE_TEAM:
        return queryset.filter(**{f"{team_field}__in": user.teams.values("pk")})
    return queryset

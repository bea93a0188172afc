"""Reads of the audit history: the filtered list, the History sections of job, task, pool and submission pages,
and the words and links the pages show for each record. Writes are portal.audit.services'."""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from portal import access
from portal.models import AuditEvent, Job, JobTemplate, Pool, PoolTemplate, Submission, Task
from portal.pagination import PAGE_SIZE, Page, Sort, keyset_page
from portal.params import row_id_param

AUDIT_NEWEST_FIRST = Sort("new", "Newest first", None, descending=True)
HISTORY_SHOWN = 20


@dataclass(frozen=True)
class AuditFilters:
    who: str = ""
    action: str = ""
    object_type: str = ""
    object_id: str = ""
    since: datetime | None = None     # from, inclusive
    until: datetime | None = None     # to, exclusive (a date alone means the end of that day)
    since_text: str = ""
    until_text: str = ""

    @property
    def active(self) -> bool:
        return bool(self.who or self.action or self.object_type or self.object_id or self.since or self.until)

    def as_params(self) -> dict:
        params = {"who": self.who, "action": self.action, "object_type": self.object_type,
                  "object_id": self.object_id, "from": self.since_text, "to": self.until_text}
        return {key: value for key, value in params.items() if value}


def _audit_time(text: str, *, end: bool) -> datetime | None:
    """A time typed into the from/to fields: a date, or a date and time (the page's datetime-local), in UTC."""
    text = text.strip()
    try:
        # A date first: parse_datetime would read one as its midnight, and "to" a date means the whole day.
        day = parse_date(text)
        if day is not None:
            moment = datetime(day.year, day.month, day.day) + (timedelta(days=1) if end else timedelta())
        else:
            moment = parse_datetime(text)  # type: ignore[assignment]  # None is checked next
        if moment is None:
            return None
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if timezone.is_naive(moment) else moment


def audit_filters_from(params: Mapping[str, str]) -> AuditFilters:
    since_text, until_text = params.get("from", "").strip()[:32], params.get("to", "").strip()[:32]
    since, until = _audit_time(since_text, end=False), _audit_time(until_text, end=True)
    return AuditFilters(
        who=params.get("who", "").strip()[:150], action=params.get("action", "").strip()[:64],
        object_type=params.get("object_type", "").strip()[:40], object_id=params.get("object_id", "").strip()[:200],
        since=since, until=until, since_text=since_text if since else "", until_text=until_text if until else "")


def audit_events(filters: AuditFilters) -> QuerySet[AuditEvent]:
    """The filtered events, unordered. `action` matches a prefix, so "job." finds every job action; `who`
    matches the start of the name recorded at the time (people renamed or deleted since are still found)."""
    events = AuditEvent.objects.all()
    if filters.who:
        events = events.filter(actor_name__istartswith=filters.who)
    if filters.action:
        events = events.filter(action__startswith=filters.action)
    if filters.object_type:
        events = events.filter(object_type=filters.object_type)
    if filters.object_id:
        events = events.filter(object_id=filters.object_id)
    if filters.since:
        events = events.filter(at__gte=filters.since)
    if filters.until:
        events = events.filter(at__lt=filters.until)
    return events


def audit_list(*, filters: AuditFilters, after: str | None = None, before: str | None = None,
               size: int = PAGE_SIZE) -> Page:
    """Newest first by id (the chain's order), keyset-paged: nothing counts the table."""
    return keyset_page(audit_events(filters), sort=AUDIT_NEWEST_FIRST, tiebreak="id", size=size,
                       after=after, before=before)


def audit_for_job(job: Job, limit: int = HISTORY_SHOWN) -> list:
    """The latest events about a job and about the submission that made it, newest first."""
    # One query: the submission's id is looked up inside it (object ids are text).
    made_it = (Submission.objects.filter(job_id=job.job_id, account_id=job.account_id)
               .values(pk_text=Cast("pk", output_field=CharField())))
    about = Q(object_type="job", object_id=str(job.pk)) | Q(object_type="submission", object_id__in=made_it)
    return list(AuditEvent.objects.filter(about).order_by("-id")[:limit])


def audit_for_submission(submission: Submission, job: Job | None, limit: int = HISTORY_SHOWN) -> list:
    """The latest events about a submission and, once synced, the job it made, newest first."""
    about = Q(object_type="submission", object_id=str(submission.pk))
    if job is not None:
        about |= Q(object_type="job", object_id=str(job.pk))
    return list(AuditEvent.objects.filter(about).order_by("-id")[:limit])


def audit_for_object(object_type: str, object_id: object, limit: int = HISTORY_SHOWN) -> list:
    return list(AuditEvent.objects.filter(object_type=object_type, object_id=str(object_id))
                .order_by("-id")[:limit])


def audit_value_text(value: object) -> str:
    if value is None or value == "" or value == []:
        return "–"
    if isinstance(value, list) and all(isinstance(item, (str, int, float)) for item in value):
        return ", ".join(str(item) for item in value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def audit_change_lines(event: AuditEvent) -> list[tuple[str, str, str]]:
    """(field, before, after) as text, for "field: before → after"."""
    lines = []
    for field, pair in sorted((event.changes or {}).items()):
        before, after = pair if isinstance(pair, list) and len(pair) == 2 else (None, pair)
        lines.append((field, audit_value_text(before), audit_value_text(after)))
    return lines


def audit_object_links(events: Iterable[AuditEvent], *, user: User) -> dict[tuple[str, str], str]:
    """Links to the objects the events are about that still exist, {(object_type, object_id): url}: one query
    per type on the page, by primary key or Batch id."""
    wanted: dict[str, set[str]] = {}
    for event in events:
        if event.object_type and event.object_id:
            wanted.setdefault(event.object_type, set()).add(event.object_id)

    def pks(ids: Iterable[str]) -> list[int]:
        return [pk for pk in map(row_id_param, ids) if pk is not None]

    links: dict[tuple[str, str], str] = {}
    if "job" in wanted:
        for pk in Job.objects.filter(pk__in=pks(wanted["job"])).values_list("pk", flat=True):
            links[("job", str(pk))] = reverse("job_detail", args=[pk])
    if "task" in wanted:
        for pk in Task.objects.filter(pk__in=pks(wanted["task"])).values_list("pk", flat=True):
            links[("task", str(pk))] = reverse("task_detail", args=[pk])
    if "pool" in wanted:
        for pk, pool_id in (Pool.objects.filter(pool_id__in=wanted["pool"], gone_at__isnull=True)
                            .values_list("pk", "pool_id")):
            links[("pool", pool_id)] = reverse("pool_detail", args=[pk])
    if "submission" in wanted:
        for pk, public_id in Submission.objects.filter(pk__in=pks(wanted["submission"])).values_list("pk",
                                                                                                 "public_id"):
            links[("submission", str(pk))] = reverse("submission_detail", args=[public_id])
    if access.can_use_admin(user):
        for object_type, model, admin_name in (("job_template", JobTemplate, "admin:portal_jobtemplate_change"),
                                               ("pool_template", PoolTemplate, "admin:portal_pooltemplate_change"),
                                               ("user", get_user_model(), "admin:auth_user_change")):
            if object_type in wanted:
                for pk in model._default_manager.filter(pk__in=pks(wanted[object_type])).values_list("pk",
                                                                                                     flat=True):
                    links[(object_type, str(pk))] = reverse(admin_name, args=[pk])
    return links


def audit_rows(events: list[AuditEvent], *, user: User) -> list:
    """The events with what the page shows of them: `link` (or None) and `change_lines`."""
    links = audit_object_links(events, user=user)
    for event in events:
        # Set on the instances for the template to show.
        event.link = links.get((event.object_type, event.object_id))  # type: ignore[attr-defined]
        event.change_lines = audit_change_lines(event)  # type: ignore[attr-defined]
    return events


def history_viewer(user: User) -> str:
    """What of a History section depends on who reads it (audit_rows and its template): addresses, shown to those who
    read the whole audit history, and links to the admin site, for its users. A shared section varies on this."""
    return f"audit={int(access.can_view_audit(user))},admin={int(access.can_use_admin(user))}"


def audit_list_url(object_type: str, object_id: object) -> str:
    """The audit list filtered to one object."""
    return reverse("audit_list") + "?" + urlencode({"object_type": object_type, "object_id": object_id})

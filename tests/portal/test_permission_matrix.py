"""Every named URL × every persona, generated from the URL conf: who gets in, who is refused, and that a refused
POST changes nothing. A new URL without an entry in ROUTES fails `test_every_url_has_an_entry`, so no page is missed.

Personas: anonymous, a signed-in account with no role, a Viewer, the Submitter who owns the work (team A), another
Submitter (team B), an Operator of team A, an Operator of team B, and an Admin (staff, not a superuser)."""

from dataclasses import dataclass, field

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from portal.models import Job, JobTemplate, Pool, Submission, Task, TaskAttempt
from portal.submit import services
from tests.factories import BatchAccountFactory, JobFactory, NodeFactory, PoolFactory, TaskFactory

pytestmark = pytest.mark.django_db

PERSONAS = ["anonymous", "no_role", "viewer", "owner", "other_submitter", "operator_a", "operator_b", "admin"]
READERS = {"viewer", "owner", "other_submitter", "operator_a", "operator_b", "admin"}
SUBMITTERS = READERS - {"viewer"}
POOL_MANAGERS = {"operator_a", "operator_b", "admin"}
# May act on the owner's work (team A): the owner, team A's Operator, and the Admin (who manages teams).
ACTORS = {"owner", "operator_a", "admin"}
REFUSED = {403, 404}


@dataclass
class Route:
    """How one URL behaves: which personas may GET it (200) and POST to it, and whether GET exists at all."""
    kwargs: str = ""                       # which fixture objects fill the URL: "pool", "job", "task", ...
    get: set = field(default_factory=set)  # personas that GET 200; other signed-in personas are refused
    post: set | None = None                # None: no POST. Else personas allowed to POST (refused ones are checked)
    get_allowed: bool = True               # False: POST only, GET answers 405 to anyone allowed past the role check
    query: str = ""
    ok: frozenset = frozenset({200})       # what an allowed GET answers


ROUTES = {
    "dashboard": Route(get=READERS),
    "pool_list": Route(get=READERS),
    "pool_detail": Route("pool", get=READERS),
    "node_files": Route("node", get=READERS),
    "pool_create": Route(get=POOL_MANAGERS),
    "pool_create_confirm": Route(post=POOL_MANAGERS, get_allowed=False),
    "pool_resize": Route("pool", get=POOL_MANAGERS),
    "pool_resize_confirm": Route("pool", post=POOL_MANAGERS, get_allowed=False),
    "pool_delete": Route("pool", get=POOL_MANAGERS),
    "pool_delete_confirm": Route("pool", post=POOL_MANAGERS, get_allowed=False),
    "job_list": Route(get=READERS),
    "job_detail": Route("job", get=READERS),
    "job_preparation": Route("job", get=READERS),
    "job_logs_zip": Route("job", get=READERS),
    "job_terminate": Route("job", get=ACTORS, post=ACTORS),
    "job_retry_failed": Route("job", get=ACTORS, post=ACTORS),
    "task_detail": Route("task", get=READERS),
    "task_terminate": Route("task", get=ACTORS, post=ACTORS),
    "task_delete": Route("task", get=ACTORS, post=ACTORS),
    "task_output": Route("task", get=READERS),
    "task_output_window": Route("task", get=READERS, query="path=stdout.txt"),
    "task_output_tail": Route("task", get=READERS, query="path=stdout.txt&after=0"),
    # Streams from Batch at once, so with no Batch here an allowed reader gets its 503, not a page.
    "task_output_download": Route("task", get=READERS, query="path=stdout.txt", ok=frozenset({200, 503})),
    "task_output_search": Route("task", get=READERS, query="path=stdout.txt&q=x"),
    "task_output_link": Route("task", post=READERS, get_allowed=False),
    "job_results": Route("job", get=READERS),
    "job_results_zip": Route("job", get=READERS),
    "task_results": Route("task", get=READERS),
    # Read from storage at once: with no such file (or no storage) here an allowed reader gets its 404 or 503.
    "task_result_preview": Route("task", get=READERS, query="name=count.txt", ok=frozenset({200, 404, 503})),
    "task_result_image": Route("task", get=READERS, query="name=chart.png", ok=frozenset({200, 404, 503})),
    "task_result_download": Route("task", get=READERS, query="name=count.txt", ok=frozenset({200, 404, 503})),
    # An earlier attempt whose output was not kept: its page says so.
    "task_attempt_output": Route("attempt", get=READERS),
    "failure_triage": Route(get=READERS),
    # GET without a chosen group of failures is a 404 for everyone; the POST is what matters.
    "failure_retry": Route(get=set(), post=SUBMITTERS),
    "audit_list": Route(get=POOL_MANAGERS),
    # Operators see their teams' costs, Admins every team's.
    "cost_overview": Route(get=POOL_MANAGERS),
    # Approving a submission over its team's limit: its team's Operator or an Admin, never its submitter.
    "submission_decide": Route("submission", post={"operator_a", "admin"}, get_allowed=False),
    "audit_export": Route(get=POOL_MANAGERS),
    "submit_template_list": Route(get=SUBMITTERS),
    "submit_form": Route("template", get=SUBMITTERS, post=SUBMITTERS),
    "submit_upload": Route("template", post=SUBMITTERS, get_allowed=False),
    "submit_confirm": Route("template", post=SUBMITTERS, get_allowed=False),
    "submission_list": Route(get=SUBMITTERS),
    "submission_detail": Route("submission", get=ACTORS),
    # Its job is not in the mirror here, so an allowed GET says so (200) and a POST submits nothing.
    "submission_retry_failed": Route("submission", get=ACTORS, post=ACTORS),
}
# Sign-in and health answer everyone; the admin site has its own staff check (tested below).
OPEN = {"login", "logout", "healthz", "readyz", "oidc_authentication_init", "oidc_authentication_callback", "favicon"}


def named_urls(patterns=None, namespace=""):
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin":
                continue
            yield from named_urls(entry.url_patterns, entry.namespace or namespace)
        elif isinstance(entry, URLPattern) and entry.name:
            yield f"{namespace}:{entry.name}" if namespace else entry.name


@pytest.fixture
def world(team_a, team_b, viewer, submitter, other_submitter, operator_a, operator_b, portal_admin, no_role):
    """The owner's (team A) job, task and submission; a pool with a node; the template they came from."""
    account = BatchAccountFactory()
    pool = PoolFactory(account=account)
    node = NodeFactory(pool=pool)
    job = JobFactory(account=account, pool_id=pool.pool_id, submitted_by=submitter, team=team_a)
    task = TaskFactory(job=job)
    TaskAttempt.objects.create(task=task, number=1, result="failure", output_saved_at=timezone.now())
    TaskAttempt.objects.create(task=task, number=2, retry_count=1)
    template = JobTemplate.objects.get(slug="render-frames")
    submission = services.submission_create(user=submitter, template_version=template.current_version(),
                                            parameters={"frames": "3"})
    people = {"no_role": no_role, "viewer": viewer, "owner": submitter, "other_submitter": other_submitter,
              "operator_a": operator_a, "operator_b": operator_b, "admin": portal_admin}
    kwargs = {"": {}, "pool": {"pk": pool.pk}, "node": {"pk": pool.pk, "node_id": node.node_id},
              "job": {"pk": job.pk}, "task": {"pk": task.pk},
              "attempt": {"pk": task.pk, "number": 1}, "template": {"slug": template.slug},
              "submission": {"public_id": submission.public_id}}
    return {"people": people, "kwargs": kwargs, "job": job, "task": task, "pool": pool, "submission": submission}


def snapshot(world) -> tuple:
    """What a refused POST must leave as it was."""
    return (tuple(Job.objects.filter(pk=world["job"].pk).values_list("state", "gone_at", "team_id", "submitted_by_id")),
            tuple(Task.objects.filter(pk=world["task"].pk).values_list("state", "retry_count", "gone_at")),
            tuple(Pool.objects.filter(pk=world["pool"].pk).values_list("target_dedicated_nodes", "gone_at")),
            Submission.objects.count(), Task.objects.count(), Job.objects.count())


def client_for(world, persona: str) -> Client:
    client = Client()
    if persona != "anonymous":
        client.force_login(world["people"][persona])
    return client


def test_every_url_has_an_entry():
    missing = sorted(set(named_urls()) - set(ROUTES) - OPEN)
    assert not missing, f"add these URL names to ROUTES in {__file__}: {missing}"
    assert not set(ROUTES) - set(named_urls()), "ROUTES names a URL that no longer exists"


@pytest.mark.parametrize("name", sorted(ROUTES))
@pytest.mark.parametrize("persona", PERSONAS)
def test_get(world, name, persona):
    route = ROUTES[name]
    url = reverse(name, kwargs=world["kwargs"][route.kwargs]) + (f"?{route.query}" if route.query else "")
    response = client_for(world, persona).get(url)

    if persona == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), response
    elif persona == "no_role":
        assert response.status_code in REFUSED
    elif not route.get_allowed:
        # POST-only: refused personas are refused before the method is looked at, or see 405 like everyone else.
        assert response.status_code == 405 or (persona not in (route.post or set()) and response.status_code
                                                in REFUSED), response.status_code
    elif persona in route.get:
        assert response.status_code in route.ok, response.status_code
    else:
        assert response.status_code in REFUSED, response.status_code


POSTABLE = sorted(name for name, route in ROUTES.items() if route.post is not None)


@pytest.mark.parametrize("name", POSTABLE)
@pytest.mark.parametrize("persona", PERSONAS)
def test_refused_post_changes_nothing(world, name, persona):
    route = ROUTES[name]
    if persona in route.post:
        pytest.skip("allowed: what an allowed POST does is each view's own test")
    url = reverse(name, kwargs=world["kwargs"][route.kwargs])
    before = snapshot(world)
    # Enough of a form that only the permission stands in the way.
    data = {"reason": "matrix", "confirmed": "1", "dedicated_nodes": "0", "low_priority_nodes": "0", "frames": "3",
            "path": "stdout.txt", "template_version": world["submission"].template_version_id}
    response = client_for(world, persona).post(url, data)

    if persona == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    else:
        assert response.status_code in REFUSED, response.status_code
    assert snapshot(world) == before


def test_admin_site_sends_non_staff_to_its_login(world):
    for persona in ["viewer", "operator_a", "no_role"]:
        response = client_for(world, persona).get(reverse("admin:index"))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert client_for(world, "admin").get(reverse("admin:index")).status_code == 200
    assert client_for(world, "anonymous").get(reverse("admin:index")).status_code == 302

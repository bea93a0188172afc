"""Shared page sections (portal/pages.py) and the shared cache of permissions (portal/accounts/permissions.py):
rendered once for every viewer, yet each viewer still sees their own name, actions and scope, and a change to the
rows a page reads shows at once."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth.models import Group
from django.core.cache.utils import make_template_fragment_key
from django.db import connection
from django.template import Context, Template
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from portal import pages
from portal.audit.middleware import RequestContext, _current
from portal.audit.services import record_event
from portal.models import JobState, TaskState
from tests.factories import JobFactory, TaskFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def shared(settings, local_cache):
    """Sections shared for a minute, in this process's own memory cache (emptied before and after)."""
    settings.PAGE_SHARED_SECONDS = 60
    settings.DASHBOARD_SHARED_SECONDS = 60
    return local_cache


def queries(client, url: str) -> tuple[str, int]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode(), len(captured.captured_queries)


def test_a_shared_job_page_is_read_once_for_everyone(client, shared, viewer, operator_a):
    job = JobFactory(team=operator_a.teams.first())
    TaskFactory.create_batch(3, job=job)
    url = reverse("job_detail", args=[job.pk])

    client.force_login(viewer)
    first, first_queries = queries(client, url)
    client.force_login(operator_a)
    second, second_queries = queries(client, url)

    # The second viewer is served the sections the first one rendered: none of their queries run again.
    assert second_queries < first_queries
    assert second.count('href="/tasks/') == first.count('href="/tasks/') == 3
    # What belongs to the viewer is their own: their name, and the actions they may take.
    assert "vic-viewer" in first and "opal-operator" not in first
    assert "opal-operator" in second and "vic-viewer" not in second
    assert 'id="job-terminate"' not in first
    assert 'id="job-terminate"' in second


def test_a_change_to_the_job_shows_at_once(client, shared, viewer):
    job = JobFactory(state=JobState.ACTIVE, terminate_reason="")
    url = reverse("job_detail", args=[job.pk])
    client.force_login(viewer)
    client.get(url)

    job.state, job.terminate_reason = JobState.COMPLETED, "UserTerminate"
    job.save()

    assert "UserTerminate" in client.get(url).content.decode()


def test_within_the_window_a_task_change_alone_is_not_read_again(client, shared, viewer):
    """The bound the sharing costs, made visible: rows other than the job's are at most PAGE_SHARED_SECONDS old."""
    job = JobFactory()
    task = TaskFactory(job=job, task_id="first-name")
    url = reverse("job_detail", args=[job.pk])
    client.force_login(viewer)
    assert "first-name" in client.get(url).content.decode()

    type(task).objects.filter(pk=task.pk).update(task_id="second-name")

    assert "first-name" in client.get(url).content.decode()
    shared.clear()   # the window has passed: the shared copy and each process's are gone
    pages.forget_local_copies()
    assert "second-name" in client.get(url).content.decode()


@pytest.mark.parametrize("auditor_first", [True, False])
def test_a_shared_history_shows_addresses_only_to_those_who_may_see_them(client, shared, viewer, operator_a,
                                                                          auditor_first):
    job = JobFactory()
    # Recorded inside a request from that address, as the middleware sets it aside for record_event.
    token = _current.set(RequestContext(ip="203.0.113.7", request=None))
    try:
        record_event(actor=operator_a, action="job.terminate", obj=job, reason="wrong frames")
    finally:
        _current.reset(token)
    url = reverse("job_detail", args=[job.pk])
    pages = {}
    for person in ([operator_a, viewer] if auditor_first else [viewer, operator_a]):
        client.force_login(person)
        pages[person.username] = client.get(url).content.decode()

    assert "job.terminate" in pages["vic-viewer"] and "job.terminate" in pages["opal-operator"]
    assert "203.0.113.7" in pages["opal-operator"]
    assert "203.0.113.7" not in pages["vic-viewer"]


def test_the_task_page_shares_its_status_but_not_its_actions(client, shared, viewer, operator_a):
    job = JobFactory(team=operator_a.teams.first())
    task = TaskFactory(job=job, state=TaskState.RUNNING, end_time=None)
    url = reverse("task_detail", args=[task.pk])

    client.force_login(viewer)
    first, first_queries = queries(client, url)
    client.force_login(operator_a)
    second, second_queries = queries(client, url)

    assert second_queries < first_queries
    assert 'id="task-terminate"' not in first
    assert 'id="task-terminate"' in second


def test_whose_jobs_mine_lists_is_never_shared(client, shared, submitter, other_submitter):
    JobFactory(job_id="sues-job", submitted_by=submitter)
    JobFactory(job_id="sids-job", submitted_by=other_submitter)
    url = reverse("job_list") + "?scope=my"

    client.force_login(submitter)
    sue = client.get(url).content.decode()
    client.force_login(other_submitter)
    sid = client.get(url).content.decode()

    assert "sues-job" in sue and "sids-job" not in sue
    assert "sids-job" in sid and "sues-job" not in sid


def test_the_dashboard_is_rendered_once_for_everyone(client, shared, viewer, operator_a):
    JobFactory.create_batch(3)
    client.force_login(viewer)
    first, first_queries = queries(client, reverse("dashboard"))
    client.force_login(operator_a)
    second, second_queries = queries(client, reverse("dashboard"))

    assert second_queries < first_queries
    assert "opal-operator" in second and "vic-viewer" not in second


def test_nothing_kept_for_everyone_holds_a_password_hash(client, shared, viewer, submitter):
    submitter.set_password("a password of sue's")
    submitter.save()
    JobFactory(submitted_by=submitter)
    client.force_login(viewer)
    for url in (reverse("dashboard"), reverse("job_list"), reverse("job_list") + "?scope=all"):
        assert client.get(url).status_code == 200

    kept = list(shared._cache.values())   # the memory cache's pickled entries
    assert kept
    assert not any(submitter.password.encode() in entry for entry in kept)


# --- permissions, from the shared cache ---------------------------------------------------------------

def test_permissions_are_read_from_the_cache_after_the_first_page(client, shared, viewer):
    job = JobFactory()
    url = reverse("job_detail", args=[job.pk])
    client.force_login(viewer)
    _, first_queries = queries(client, url)
    _, second_queries = queries(client, url)

    assert second_queries < first_queries


def test_a_role_taken_away_takes_effect_on_the_next_page(client, shared, viewer):
    client.force_login(viewer)
    assert client.get(reverse("job_list")).status_code == 200

    viewer.groups.remove(Group.objects.get(name="Viewer"))

    assert client.get(reverse("job_list")).status_code == 403


def test_a_role_given_takes_effect_on_the_next_page(client, shared, no_role):
    client.force_login(no_role)
    assert client.get(reverse("job_list")).status_code == 403

    no_role.groups.add(Group.objects.get(name="Viewer"))

    assert client.get(reverse("job_list")).status_code == 200


def test_a_permission_taken_from_a_role_takes_effect_for_its_members(client, shared, submitter):
    client.force_login(submitter)
    assert client.get(reverse("submit_template_list")).status_code == 200

    Group.objects.get(name="Submitter").permissions.remove(
        *Group.objects.get(name="Submitter").permissions.filter(codename="submit"))

    assert client.get(reverse("submit_template_list")).status_code == 403


# --- the {% shared %} tag ----------------------------------------------------------------------------------

SECTION = Template('{% load portal_shared %}{% shared "test-section" version %}{{ rendering }}{% endshared %}')


def test_a_section_that_expires_is_rendered_once_while_the_others_wait(shared):
    renderings = []

    def rendering():
        renderings.append(1)
        time.sleep(0.2)   # a slow section: the other requests arrive while it renders
        return f"rendering {len(renderings)}"

    with ThreadPoolExecutor(4) as pool:
        pages = list(pool.map(lambda _: SECTION.render(Context({"version": "v1", "rendering": rendering})),
                              range(4)))

    assert renderings == [1]
    assert pages == ["rendering 1"] * 4


def test_a_renderer_that_never_finishes_holds_the_others_up_only_briefly(shared):
    key = "shared:" + make_template_fragment_key("test-section", [])   # the version is not part of the key
    shared.add(key + ":rendering", "a renderer that died", 60)

    assert SECTION.render(Context({"version": "v2", "rendering": "rendered anyway"})) == "rendered anyway"


def test_a_section_varies_on_what_it_names(shared):
    first = SECTION.render(Context({"version": "v3", "rendering": "first"}))
    again = SECTION.render(Context({"version": "v3", "rendering": "second"}))
    other = SECTION.render(Context({"version": "v4", "rendering": "second"}))

    assert (first, again, other) == ("first", "first", "second")


def test_a_process_keeps_its_copy_until_the_shared_copy_expires_and_no_longer(shared, monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(pages, "_now", lambda: clock[0])
    assert SECTION.render(Context({"version": "v5", "rendering": "first"})) == "first"

    shared.clear()   # served from this process's copy, without asking the cache
    assert SECTION.render(Context({"version": "v5", "rendering": "second"})) == "first"

    clock[0] += 61   # past PAGE_SHARED_SECONDS (60): neither copy is served
    assert SECTION.render(Context({"version": "v5", "rendering": "third"})) == "third"


def test_another_process_reads_the_shared_copy(shared):
    assert SECTION.render(Context({"version": "v6", "rendering": "first"})) == "first"

    pages.forget_local_copies()   # as a process that has not seen the section

    assert SECTION.render(Context({"version": "v6", "rendering": "second"})) == "first"


def test_while_one_request_renders_a_change_the_others_are_served_the_copy_it_replaces(shared):
    renderings = []

    def rendering():
        renderings.append(1)
        time.sleep(0.3)   # a slow section: the other requests arrive while it renders
        return f"rendering {len(renderings)}"

    assert SECTION.render(Context({"version": "v7", "rendering": rendering})) == "rendering 1"
    with ThreadPoolExecutor(4) as pool:
        pages = list(pool.map(lambda _: SECTION.render(Context({"version": "v8", "rendering": rendering})),
                              range(4)))

    # One request rendered the new version; the three that came meanwhile did not wait for it.
    assert renderings == [1, 1]
    assert sorted(pages) == ["rendering 1"] * 3 + ["rendering 2"]
    assert SECTION.render(Context({"version": "v8", "rendering": rendering})) == "rendering 2"


def test_a_copy_past_its_window_is_served_only_while_another_request_renders_it_again(shared, monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(pages, "_now", lambda: clock[0])
    key = "shared:" + make_template_fragment_key("test-section", [])
    assert SECTION.render(Context({"version": "v9", "rendering": "first"})) == "first"
    clock[0] += 61   # past PAGE_SHARED_SECONDS (60)

    shared.add(key + ":rendering", "another request", 60)
    assert SECTION.render(Context({"version": "v9", "rendering": "second"})) == "first"
    shared.delete(key + ":rendering")
    assert SECTION.render(Context({"version": "v9", "rendering": "third"})) == "third"


def test_a_copy_twice_its_window_old_is_never_served(shared, monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(pages, "_now", lambda: clock[0])
    key = "shared:" + make_template_fragment_key("test-section", [])
    assert SECTION.render(Context({"version": "v10", "rendering": "first"})) == "first"
    clock[0] += 121   # past twice PAGE_SHARED_SECONDS

    shared.add(key + ":rendering", "a renderer that died", 60)
    assert SECTION.render(Context({"version": "v10", "rendering": "second"})) == "second"

"""Every page of the portal in Chromium: at a phone's width (390 px) nothing scrolls sideways, and axe-core finds no
accessibility problem of serious or critical impact. The pages come from the URL conf, through the permission
matrix's ROUTES (a new URL without an entry fails there), each with a real object behind its ids; the objects'
account points at this test's localbatch and storage at its Azurite, so no page reaches a developer's services."""

import importlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.apps import apps
from django.urls import reverse

from batchsync.accounts import default_account
from portal.audit.services import record_event
from portal.models import JobTemplate, TaskAttempt, TaskState, VmPrice
from portal.submit import services
from tests.factories import PASSWORD, BatchAccountFactory, JobFactory, NodeFactory, PoolFactory, TaskFactory
from tests.personas import person
from tests.portal.test_permission_matrix import ROUTES

pytestmark = pytest.mark.django_db(transaction=True)

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
SERIOUS = {"serious", "critical"}


@dataclass
class Page:
    name: str
    path: str
    persona: str = "admin"   # who opens it: the Admin sees every page and the longest navigation


@pytest.fixture
def world(batch, azurite, settings, monkeypatch):
    """One of each object a URL can name, on this test's localbatch and Azurite; the people who open the pages."""
    settings.AZURE_STORAGE_CONNECTION_STRING = azurite.connection_string
    people = {"admin": person("ada-admin", "Admin", is_staff=True), "viewer": person("vic-viewer", "Viewer"),
              "no_role": person("nora-norole")}
    account = default_account()
    monkeypatch.setenv("BATCH_ACCOUNT_KEY", batch.account_key)   # the second account's key, from the environment
    pool = PoolFactory(account=account, pool_id="render-pool-with-a-rather-long-name")
    node = NodeFactory(pool=pool)
    # Named, and terminated with a task it killed: the name beside the id, and terminated's own colour.
    job = JobFactory(account=account, pool_id=pool.pool_id, submitted_by=people["admin"],
                     job_id="sub-5eb0abbae0614a07b1c3d2e4f5a6b7c8",
                     display_name="Frames for the March review, second attempt with the longer inputs",
                     state="completed", terminate_reason="UserTerminate", task_completed=3, task_succeeded=1,
                     task_failed=2, task_active=1)
    task = TaskFactory(job=job, node_id=node.node_id)
    # Retried once: its page lists both attempts; the first one's output was not kept.
    TaskAttempt.objects.create(task=task, number=1, result="failure", node_id=node.node_id,
                               start_time=task.start_time - timedelta(minutes=2), output_saved_at=task.start_time)
    TaskAttempt.objects.create(task=task, number=2, retry_count=1, start_time=task.start_time, end_time=task.end_time,
                               exit_code=0, result="success", node_id=node.node_id)
    TaskFactory(job=job, failed=True, node_id=node.node_id)
    TaskFactory(job=job, failed=True, failure_code="TaskEnded", node_id=node.node_id)
    TaskFactory(job=job, state=TaskState.ACTIVE)
    # Priced, so the job page says what it cost and the Costs page draws its chart.
    VmPrice.objects.create(vm_size=pool.vm_size, dedicated_per_hour="0.096", currency="USD", taken_on="2026-12-01")
    # A second account, with the same pool id and a job of the same id: every list names accounts and offers the
    # account filter, and the pool filter offers each account's pool (the widest these pages get).
    second = BatchAccountFactory(name="production-west-europe", is_default=False, account_url=batch.endpoint,
                                 account_name=batch.account_name, key_env_var="BATCH_ACCOUNT_KEY")
    JobFactory(account=second, job_id=job.job_id, pool_id=PoolFactory(account=second, pool_id=pool.pool_id).pool_id)
    # The shipped examples, as migration 0005 makes them: an earlier transactional test's flush removed them.
    importlib.import_module("portal.migrations.0005_example_job_templates").add_templates(apps, None)
    template = JobTemplate.objects.get(slug="render-frames")
    submission = services.submission_create(user=people["admin"], template_version=template.current_version(),
                                            parameters={"frames": "3"},
                                            name="Frames for the March review, second attempt with the longer inputs")
    # An audit row whose object link shares its line with the object's type: a link inside text (link-in-text-block).
    record_event(actor=people["admin"], action="pool.resize", object_type="pool",
                 object_id=PoolFactory(account=account, pool_id="gpu").pool_id,
                 changes={"target_dedicated_nodes": [1, 2]})
    kwargs = {"": {}, "pool": {"pk": pool.pk}, "node": {"pk": pool.pk, "node_id": node.node_id},
              "job": {"pk": job.pk}, "task": {"pk": task.pk}, "attempt": {"pk": task.pk, "number": 1},
              "template": {"slug": template.slug},
              "submission": {"public_id": submission.public_id}}
    pages = [Page(name, reverse(name, kwargs=kwargs[route.kwargs]) + (f"?{route.query}" if route.query else ""))
             for name, route in sorted(ROUTES.items()) if route.get_allowed and "admin" in route.get]
    pages += [Page("login", reverse("login"), persona="anonymous"),
              Page("error 404", "/no/such/page/"),
              Page("error 403", reverse("submit_template_list"), persona="viewer"),
              Page("no role", reverse("dashboard"), persona="no_role")]
    return pages


def sign_in(browser, live_server, persona: str):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    if persona != "anonymous":
        page.goto(live_server.url + reverse("login"))
        page.get_by_label("Username").fill({"admin": "ada-admin", "viewer": "vic-viewer",
                                            "no_role": "nora-norole"}[persona])
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.locator("main").wait_for()
    return context, page


def each_page(browser, live_server, world):
    """(Page, Playwright page) for every HTML page, one browser context per persona."""
    for persona in dict.fromkeys(p.persona for p in world):
        context, tab = sign_in(browser, live_server, persona)
        try:
            for entry in (p for p in world if p.persona == persona):
                url = live_server.url + entry.path
                # Asked first with the page's cookies: CSV, zip and file downloads are not pages to open.
                if "text/html" not in (tab.request.get(url).headers.get("content-type") or ""):
                    continue
                # Sections a page loads after it opens (the task's output, a job's preparation) are part of it.
                tab.goto(url, wait_until="networkidle")
                if tab.locator("body > main").count() == 0:
                    continue   # an htmx fragment fetched on its own: checked inside the page that loads it
                yield entry, tab
        finally:
            context.close()


def settle(tab) -> None:
    """Two animation frames: what the page's script does after a resize (portal.js) has been done."""
    tab.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def test_no_page_scrolls_sideways_on_a_phone(browser, live_server, world):
    too_wide, seen = {}, []
    for entry, tab in each_page(browser, live_server, world):
        for size in (PHONE, DESKTOP):
            tab.set_viewport_size(size)
            settle(tab)
            width = tab.evaluate("() => document.documentElement.scrollWidth")
            if width > size["width"]:
                # What sticks out, to say what to fix.
                culprits = tab.evaluate("""(limit) => [...document.querySelectorAll('body *')]
                    .filter(el => el.getBoundingClientRect().right > limit + 1)
                    .filter(el => !el.parentElement || el.parentElement.getBoundingClientRect().right <= limit + 1)
                    .slice(0, 5).map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : '')
                                           + ' ' + Math.round(el.getBoundingClientRect().right))""", size["width"])
                too_wide[f"{entry.name} at {size['width']}"] = (width, culprits)
        seen.append(entry.name)

    assert len(seen) >= 20, seen   # the list really is every page, not a handful
    assert not too_wide, "\n".join(f"{where}: {found}" for where, found in too_wide.items())


def test_the_phone_menu_opens_and_closes(browser, live_server, world):
    context, tab = sign_in(browser, live_server, "admin")
    try:
        tab.set_viewport_size(PHONE)
        tab.goto(live_server.url + reverse("dashboard"))
        nav = tab.get_by_role("navigation", name="Main")
        menu = tab.get_by_role("button", name="Menu")
        assert nav.is_hidden() and menu.get_attribute("aria-expanded") == "false"

        menu.click()
        assert nav.get_by_role("link", name="Jobs").is_visible() and menu.get_attribute("aria-expanded") == "true"
        assert tab.get_by_role("button", name="Log out").is_visible()
        nav.get_by_role("link", name="Jobs").click()
        tab.get_by_role("heading", name="Jobs").wait_for()

        tab.set_viewport_size(DESKTOP)
        assert tab.get_by_role("navigation", name="Main").is_visible()
        assert tab.get_by_role("button", name="Menu").is_hidden()
    finally:
        context.close()


def test_no_page_has_a_serious_accessibility_problem(browser, live_server, world):
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci` (or `make test`, which does it)")
    axe = AXE.read_text()
    problems, seen = {}, []
    for entry, tab in each_page(browser, live_server, world):
        for size in (DESKTOP, PHONE):
            tab.set_viewport_size(size)
            settle(tab)
            # Evaluated by the browser's debugging protocol, which the page's CSP does not govern (a <script> tag would
            # be refused, as it should be).
            tab.evaluate(axe)
            result = tab.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
            serious = [f"{v['id']} ({v['impact']}): {', '.join(n['target'][0] for n in v['nodes'][:3])}"
                       for v in result["violations"] if v["impact"] in SERIOUS]
            if serious:
                problems[f"{entry.name} at {size['width']}"] = serious
        seen.append(entry.name)

    assert len(seen) >= 20, seen
    assert not problems, "\n".join(f"{where}: {found}" for where, found in problems.items())

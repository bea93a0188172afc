"""Creating, resizing and deleting pools from the portal, checked against localbatch through the real SDK.

Personas: a manager (a Viewer given portal.manage_pools), a superuser, alice (`user`: a Submitter, who may not
manage pools) and anonymous."""

import re

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from batchsync import celery_app
from batchsync.accounts import default_account
from batchsync.gateway import BatchGateway
from batchsync.sync import sync_pools
from localbatch.server import Faults, start
from portal.access import MANAGE_POOLS
from portal.actions import ActionError
from portal.models import Job, JobState, Pool, PoolTemplate
from portal.pools import services
from tests.localbatch.helpers import make_pool, wait_for
from tests.personas import person

pytestmark = pytest.mark.django_db

SMALL_LINUX = "Small Linux pool"


# --- fixtures ---------------------------------------------------------------------------------------


def point_settings_at(localbatch, settings, monkeypatch):
    settings.BATCH_ACCOUNT_URL = localbatch.endpoint
    settings.BATCH_ACCOUNT_NAME = localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    # batchsync.accounts prefers the environment variable to the setting; a key exported in the shell
    # running the tests must not send the portal elsewhere.
    monkeypatch.delenv("BATCH_ACCOUNT_KEY", raising=False)


@pytest.fixture
def batch(localbatch, settings, monkeypatch):
    """localbatch, with the portal's default account pointing at it."""
    point_settings_at(localbatch, settings, monkeypatch)
    return localbatch


@pytest.fixture
def slow_batch(tmp_path, settings, monkeypatch):
    """localbatch whose nodes take an hour to start, so a pool with nodes stays `resizing` throughout the test."""
    running = start(str(tmp_path / "slow-localbatch"), node_start_seconds=3600)
    point_settings_at(running, settings, monkeypatch)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def manager(db):
    # A Viewer (reading needs a role) given exactly the one permission these pages are about.
    return person("mia-manager", "Viewer", permissions=[MANAGE_POOLS])


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


@pytest.fixture
def outsider_client(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def small_linux():
    return PoolTemplate.objects.get(name=SMALL_LINUX)


def mirror(pool_id: str, **fields) -> Pool:
    """The mirror row the sync would have written for a pool that exists in Batch."""
    values = dict(state="active", allocation_state="steady", vm_size="standard_d2s_v3", last_synced_at=timezone.now())
    return Pool.objects.create(account=default_account(), pool_id=pool_id, **(values | fields))


def pool_ids(batch_client) -> list[str]:
    return [pool.id for pool in batch_client.list_pools()]


def create_post(template, pool_id="pool-a", dedicated=2, low_priority=0, **extra) -> dict:
    """The create form's fields; with `confirmed`, also the template version the confirm page carries."""
    data = {"template": template.pk, "pool_id": pool_id, "dedicated_nodes": dedicated,
            "low_priority_nodes": low_priority}
    if "confirmed" in extra:
        data["template_version"] = template.updated_at.isoformat()
    return data | extra


def text(response) -> str:
    return response.content.decode()


# --- who may do what --------------------------------------------------------------------------------

PAGES = [("pool_create", False), ("pool_resize", True), ("pool_delete", True)]
MUTATIONS = [("pool_create_confirm", False), ("pool_resize_confirm", True), ("pool_delete_confirm", True)]


def url_for(name: str, needs_pool: bool, pool: Pool) -> str:
    return reverse(name, args=[pool.pk]) if needs_pool else reverse(name)


@pytest.mark.parametrize("name, needs_pool", PAGES + MUTATIONS)
def test_anonymous_is_sent_to_login(client, batch, name, needs_pool):
    url = url_for(name, needs_pool, mirror("pool-a"))

    response = client.post(url) if (name, needs_pool) in MUTATIONS else client.get(url)

    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.parametrize("name, needs_pool", PAGES)
def test_signed_in_user_without_permission_gets_403_on_pages(outsider_client, batch, name, needs_pool):
    response = outsider_client.get(url_for(name, needs_pool, mirror("pool-a")))

    assert response.status_code == 403


def test_user_without_permission_changes_nothing_in_batch(outsider_client, batch, batch_client, small_linux):
    make_pool(batch_client, "pool-a", nodes=1)
    pool = mirror("pool-a", target_dedicated_nodes=1)

    responses = [
        outsider_client.post(reverse("pool_create_confirm"), create_post(small_linux, "pool-b", confirmed="1")),
        outsider_client.post(reverse("pool_resize_confirm", args=[pool.pk]),
                             {"dedicated_nodes": 3, "low_priority_nodes": 0, "confirmed": "1"}),
        outsider_client.post(reverse("pool_delete_confirm", args=[pool.pk]), {"confirm_pool_id": "pool-a"}),
    ]

    assert [r.status_code for r in responses] == [403, 403, 403]
    assert pool_ids(batch_client) == ["pool-a"]
    batch_pool = batch_client.get_pool("pool-a")
    assert (batch_pool.state, batch_pool.target_dedicated_nodes) == ("active", 1)


@pytest.mark.parametrize("name, needs_pool", PAGES)
def test_manager_reaches_every_page(manager_client, batch, name, needs_pool):
    response = manager_client.get(url_for(name, needs_pool, mirror("pool-a")))

    assert response.status_code == 200


def test_superuser_needs_no_explicit_permission(admin_client, batch):
    assert admin_client.get(reverse("pool_create")).status_code == 200


@pytest.mark.parametrize("name, needs_pool", MUTATIONS)
def test_confirm_steps_accept_only_post(manager_client, batch, name, needs_pool):
    assert manager_client.get(url_for(name, needs_pool, mirror("pool-a"))).status_code == 405


def test_a_pool_batch_deleted_cannot_be_resized_or_deleted(manager_client, batch):
    pool = mirror("old", gone_at=timezone.now())

    assert manager_client.get(reverse("pool_resize", args=[pool.pk])).status_code == 404
    assert manager_client.get(reverse("pool_delete", args=[pool.pk])).status_code == 404


# --- the buttons on the pool pages ----------------------------------------------------------------------


def test_manager_sees_the_buttons(manager_client, batch):
    pool = mirror("pool-a")

    listing = text(manager_client.get(reverse("pool_list")))
    detail = text(manager_client.get(reverse("pool_detail", args=[pool.pk])))

    assert f'href="{reverse("pool_create")}"' in listing
    assert f'href="{reverse("pool_resize", args=[pool.pk])}"' in detail
    assert f'href="{reverse("pool_delete", args=[pool.pk])}"' in detail


def test_others_do_not_see_the_buttons(outsider_client, batch):
    pool = mirror("pool-a")

    listing = text(outsider_client.get(reverse("pool_list")))
    detail = text(outsider_client.get(reverse("pool_detail", args=[pool.pk])))

    assert reverse("pool_create") not in listing
    assert reverse("pool_resize", args=[pool.pk]) not in detail
    assert reverse("pool_delete", args=[pool.pk]) not in detail


@pytest.mark.parametrize("fields", [{"gone_at": timezone.now()}, {"state": "deleting"}])
def test_a_pool_gone_or_being_deleted_offers_no_actions(manager_client, batch, fields):
    pool = mirror("pool-a", **fields)

    detail = text(manager_client.get(reverse("pool_detail", args=[pool.pk])))

    assert reverse("pool_resize", args=[pool.pk]) not in detail
    assert reverse("pool_delete", args=[pool.pk]) not in detail


# --- create -----------------------------------------------------------------------------------------


def test_with_one_template_the_form_opens_prefilled_from_it(manager_client, batch, small_linux):
    response = manager_client.get(reverse("pool_create"))

    form = response.context["form"]
    assert response.templates[0].name == "pools/actions/create.html"
    assert (form["template"].value(), form["dedicated_nodes"].value(), form["low_priority_nodes"].value()) == (
        small_linux.pk, 2, 0)
    assert "standard_d2s_v3" in text(response)


def test_with_several_templates_one_is_chosen_first(manager_client, batch, small_linux):
    big = PoolTemplate.objects.create(
        name="Big pack pool", vm_size="standard_d16s_v3", image_publisher="canonical", image_offer="ubuntu-24_04-lts",
        image_sku="server", node_agent_sku_id="batch.node.ubuntu 24.04", default_dedicated_nodes=5,
        default_low_priority_nodes=3, task_slots_per_node=16, node_fill_type="pack")

    chooser = manager_client.get(reverse("pool_create"))
    form_page = manager_client.get(reverse("pool_create"), {"template": big.pk})

    assert chooser.templates[0].name == "pools/actions/choose_template.html"
    assert SMALL_LINUX in text(chooser) and "Big pack pool" in text(chooser)
    assert f'?template={big.pk}"' in text(chooser)
    form = form_page.context["form"]
    assert (form["template"].value(), form["dedicated_nodes"].value(), form["low_priority_nodes"].value()) == (
        big.pk, 5, 3)


def test_review_step_shows_the_pool_and_creates_nothing(manager_client, batch, batch_client, small_linux):
    response = manager_client.post(reverse("pool_create_confirm"), create_post(small_linux, "render-farm", 3, 1))

    page = text(response)
    assert response.templates[0].name == "pools/actions/create_confirm.html"
    for shown in ("render-farm", SMALL_LINUX, "standard_d2s_v3", "0001-com-ubuntu-server-jammy",
                  "$AZ_BATCH_NODE_ID", "up to 8 (2 per node)", "spread", "Create pool"):
        assert shown in page
    # The confirming form carries the same values, so what is confirmed is what was reviewed.
    assert re.search(r'name="pool_id" value="render-farm"', page)
    assert re.search(r'name="dedicated_nodes" value="3"', page)
    assert pool_ids(batch_client) == []


def test_confirming_creates_the_pool_the_template_describes(manager_client, batch, batch_client, small_linux):
    response = manager_client.post(reverse("pool_create_confirm"),
                                   create_post(small_linux, "render-farm", confirmed="1"), follow=True)

    assert response.redirect_chain == [(reverse("pool_list"), 302)]
    assert "Batch is creating the pool “render-farm”" in text(response)
    pool = batch_client.get_pool("render-farm")
    assert (pool.vm_size, pool.task_slots_per_node, pool.task_scheduling_policy.node_fill_type,
            pool.target_dedicated_nodes, pool.target_low_priority_nodes, pool.display_name) == (
        "standard_d2s_v3", 2, "Spread", 2, 0, SMALL_LINUX)   # as the service spells it
    assert pool.start_task.command_line == small_linux.start_task_command_line
    assert pool.start_task.wait_for_success is True
    image = pool.virtual_machine_configuration
    assert (image.image_reference.offer, image.image_reference.sku, image.node_agent_sku_id) == (
        "0001-com-ubuntu-server-jammy", "22_04-lts", "batch.node.ubuntu 22.04")


def test_the_shipped_template_start_task_prints_the_node_id(manager_client, batch, batch_client, small_linux):
    manager_client.post(reverse("pool_create_confirm"), create_post(small_linux, "hello", confirmed="1"))

    def two_idle_nodes():
        nodes = [node for node in batch_client.list_nodes("hello") if node.state == "idle"]
        return nodes if len(nodes) == 2 else None

    nodes = wait_for(two_idle_nodes, message="both nodes idle after their start task")
    for node in nodes:
        assert (node.start_task_info.state, node.start_task_info.exit_code) == ("completed", 0)
        stdout = b"".join(batch_client.download_node_file("hello", node.id, "startup/stdout.txt")).decode()
        assert stdout.strip() == f"Start task ran on node {node.id}"


def test_after_a_sync_the_pool_page_shows_each_nodes_start_task(manager_client, batch, batch_client, small_linux):
    manager_client.post(reverse("pool_create_confirm"), create_post(small_linux, "hello", confirmed="1"))
    wait_for(lambda: [n.state for n in batch_client.list_nodes("hello")] == ["idle", "idle"], message="2 idle nodes")

    sync_pools(default_account())

    pool = Pool.objects.get(pool_id="hello")
    page = text(manager_client.get(reverse("pool_detail", args=[pool.pk])))
    nodes = list(pool.nodes.all())
    assert [(n.start_task_state, n.start_task_result, n.start_task_exit_code) for n in nodes] == [
        ("completed", "success", 0)] * 2
    for node in nodes:
        row = re.search(rf'<tr id="node-{node.node_id}">.*?</tr>', page, re.DOTALL)
        assert row and "succeeded" in row.group(0)


def test_a_template_edited_after_review_is_shown_again_not_created(manager_client, batch, batch_client, small_linux):
    review = manager_client.post(reverse("pool_create_confirm"), create_post(small_linux, "render-farm"))
    version = re.search(r'name="template_version" value="([^"]+)"', text(review)).group(1)
    small_linux.vm_size = "standard_e64s_v5"
    small_linux.save()

    response = manager_client.post(reverse("pool_create_confirm"), create_post(
        small_linux, "render-farm", confirmed="1", template_version=version))

    assert "was changed after you reviewed it, so nothing was created" in text(response)
    assert "standard_e64s_v5" in text(response)
    assert pool_ids(batch_client) == []
    # Confirming what is now shown creates it.
    again = re.search(r'name="template_version" value="([^"]+)"', text(response)).group(1)
    manager_client.post(reverse("pool_create_confirm"), create_post(
        small_linux, "render-farm", confirmed="1", template_version=again))
    assert batch_client.get_pool("render-farm").vm_size == "standard_e64s_v5"


def test_start_task_resource_files_reach_batch(manager_client, batch, batch_client, small_linux):
    small_linux.start_task_resource_files = [
        {"http_url": "https://example.invalid/c/setup.sh?sv=1&sig=SECRET", "file_path": "setup.sh"}]
    small_linux.save()

    review = manager_client.post(reverse("pool_create_confirm"), create_post(small_linux, "with-files"))
    manager_client.post(reverse("pool_create_confirm"), create_post(small_linux, "with-files", 0, confirmed="1"))

    assert "https://example.invalid/c/setup.sh" in text(review) and "SECRET" not in text(review)
    files = batch_client.get_pool("with-files").start_task.resource_files
    assert [(f.http_url, f.file_path) for f in files] == [
        ("https://example.invalid/c/setup.sh?sv=1&sig=SECRET", "setup.sh")]


def test_duplicate_id_is_a_form_error_and_changes_nothing(manager_client, batch, batch_client, small_linux):
    make_pool(batch_client, "taken", nodes=1, slots=4)

    response = manager_client.post(reverse("pool_create_confirm"), create_post(small_linux, "taken", confirmed="1"))

    assert response.status_code == 200
    assert response.context["form"].errors["pool_id"] == [
        "A pool with the id “taken” already exists in Batch. Nothing was created; choose another id."]
    assert "already exists in Batch" in text(response)
    pool = batch_client.get_pool("taken")
    assert (pool.task_slots_per_node, pool.target_dedicated_nodes, pool.start_task) == (4, 1, None)


@pytest.mark.parametrize("pool_id", ["has space", "dots.not.allowed", "ünïcode", "x" * 65, ""])
def test_invalid_pool_id_is_a_form_error(manager_client, batch, batch_client, small_linux, pool_id):
    response = manager_client.post(reverse("pool_create_confirm"), create_post(small_linux, pool_id, confirmed="1"))

    assert response.status_code == 200
    assert "pool_id" in response.context["form"].errors
    assert pool_ids(batch_client) == []


@pytest.mark.parametrize("dedicated, low_priority, field", [
    (-1, 0, "dedicated_nodes"), (101, 0, "dedicated_nodes"),
    (1, 1000, "low_priority_nodes"), ("two", 0, "dedicated_nodes"),
])
def test_node_counts_out_of_range_are_form_errors(manager_client, batch, batch_client, small_linux,
                                                  dedicated, low_priority, field):
    response = manager_client.post(reverse("pool_create_confirm"),
                                   create_post(small_linux, "p", dedicated, low_priority, confirmed="1"))

    assert list(response.context["form"].errors) == [field]
    assert pool_ids(batch_client) == []


def test_change_goes_back_to_the_form_with_the_values(manager_client, batch, small_linux):
    response = manager_client.post(reverse("pool_create_confirm"), create_post(small_linux, "keep-me", 7, edit="1"))

    form = response.context["form"]
    assert response.templates[0].name == "pools/actions/create.html"
    assert not form.is_bound and form["pool_id"].value() == "keep-me" and form["dedicated_nodes"].value() == "7"


def test_a_template_deleted_meanwhile_sends_back_to_the_choice(manager_client, batch, batch_client, small_linux):
    data = create_post(small_linux, "orphan", confirmed="1")
    small_linux.delete()

    response = manager_client.post(reverse("pool_create_confirm"), data, follow=True)

    assert response.redirect_chain == [(reverse("pool_create"), 302)]
    assert "That pool template no longer exists" in text(response)
    assert pool_ids(batch_client) == []


def test_no_templates_says_who_adds_them(manager_client, batch):
    PoolTemplate.objects.all().delete()

    response = manager_client.get(reverse("pool_create"))

    assert "There are no pool templates yet" in text(response)


# --- resize -----------------------------------------------------------------------------------------


def test_resize_form_starts_from_the_current_targets(manager_client, batch):
    pool = mirror("pool-a", target_dedicated_nodes=3, target_low_priority_nodes=1)

    form = manager_client.get(reverse("pool_resize", args=[pool.pk])).context["form"]

    assert (form["dedicated_nodes"].value(), form["low_priority_nodes"].value()) == (3, 1)


def test_resize_review_shows_before_and_after_and_changes_nothing(manager_client, batch, batch_client):
    make_pool(batch_client, "pool-a", nodes=1)
    pool = mirror("pool-a", target_dedicated_nodes=1)

    response = manager_client.post(reverse("pool_resize_confirm", args=[pool.pk]),
                                   {"dedicated_nodes": 4, "low_priority_nodes": 2})

    assert response.templates[0].name == "pools/actions/resize_confirm.html"
    assert re.search(r'Dedicated nodes</th><td class="num">1</td><td class="num">4</td>', text(response))
    assert re.search(r'Spot nodes</th><td class="num">0</td><td class="num">2</td>', text(response))
    assert batch_client.get_pool("pool-a").target_dedicated_nodes == 1


def test_confirmed_resize_changes_the_targets_in_batch(manager_client, batch, batch_client):
    make_pool(batch_client, "pool-a", nodes=1)
    pool = mirror("pool-a", target_dedicated_nodes=1)

    response = manager_client.post(reverse("pool_resize_confirm", args=[pool.pk]),
                                   {"dedicated_nodes": 3, "low_priority_nodes": 2, "confirmed": "1"}, follow=True)

    assert response.redirect_chain == [(reverse("pool_detail", args=[pool.pk]), 302)]
    assert "Batch is resizing the pool “pool-a” to 3 dedicated and 2 spot nodes" in text(response)
    batch_pool = batch_client.get_pool("pool-a")
    assert (batch_pool.target_dedicated_nodes, batch_pool.target_low_priority_nodes) == (3, 2)


def test_resize_while_resizing_is_a_plain_error(manager_client, manager, slow_batch, small_linux):
    services.pool_create(user=manager, template=small_linux, pool_id="busy", dedicated_nodes=1, low_priority_nodes=0)
    pool = mirror("busy", allocation_state="resizing", target_dedicated_nodes=1)

    response = manager_client.post(reverse("pool_resize_confirm", args=[pool.pk]),
                                   {"dedicated_nodes": 5, "low_priority_nodes": 0, "confirmed": "1"})

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "The pool “busy” is still resizing; nothing was changed. Try again when it is steady."]
    assert "still resizing" in text(response)
    with BatchGateway(slow_batch.endpoint, slow_batch.account_name, slow_batch.account_key) as gateway:
        assert gateway.get_pool("busy").target_dedicated_nodes == 1


# --- delete -----------------------------------------------------------------------------------------


def test_delete_page_warns_about_unfinished_jobs_on_the_pool(manager_client, batch):
    pool = mirror("pool-a", current_dedicated_nodes=2)
    account = pool.account
    Job.objects.create(account=account, job_id="still-running", pool_id="pool-a", state=JobState.ACTIVE)
    Job.objects.create(account=account, job_id="finished", pool_id="pool-a", state=JobState.COMPLETED)
    Job.objects.create(account=account, job_id="elsewhere", pool_id="pool-b", state=JobState.ACTIVE)

    page = text(manager_client.get(reverse("pool_delete", args=[pool.pk])))

    assert "1 unfinished job</strong> uses this pool" in page
    assert "still-running" in page and "finished<" not in page and "elsewhere" not in page
    assert "(2 at the last sync)" in page


@pytest.mark.parametrize("typed", ["pool-b", "POOL-A", ""])
def test_delete_needs_the_exact_pool_id(manager_client, batch, batch_client, typed):
    make_pool(batch_client, "pool-a")
    pool = mirror("pool-a")

    response = manager_client.post(reverse("pool_delete_confirm", args=[pool.pk]), {"confirm_pool_id": typed})

    assert response.status_code == 200
    assert "confirm_pool_id" in response.context["form"].errors
    assert batch_client.get_pool("pool-a").state == "active"


def test_typing_the_id_deletes_the_pool(manager_client, batch, batch_client):
    make_pool(batch_client, "pool-a", nodes=1)
    pool = mirror("pool-a")

    response = manager_client.post(reverse("pool_delete_confirm", args=[pool.pk]), {"confirm_pool_id": "pool-a"},
                                   follow=True)

    assert response.redirect_chain == [(reverse("pool_list"), 302)]
    assert "Batch is deleting the pool “pool-a”" in text(response)
    wait_for(lambda: "pool-a" not in pool_ids(batch_client), message="pool-a gone from localbatch")


def test_deleting_a_pool_batch_no_longer_has_says_so(manager_client, batch, batch_client):
    pool = mirror("vanished")

    response = manager_client.post(reverse("pool_delete_confirm", args=[pool.pk]), {"confirm_pool_id": "vanished"},
                                   follow=True)

    assert "Batch had no pool “vanished” any more" in text(response)


# --- CSRF and escaping --------------------------------------------------------------------------------


def test_posts_without_a_csrf_token_are_refused(manager, batch, batch_client, small_linux):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(manager)
    make_pool(batch_client, "pool-a")
    pool = mirror("pool-a")

    refused = [
        strict.post(reverse("pool_create_confirm"), create_post(small_linux, "forged", confirmed="1")),
        strict.post(reverse("pool_resize_confirm", args=[pool.pk]),
                    {"dedicated_nodes": 9, "low_priority_nodes": 0, "confirmed": "1"}),
        strict.post(reverse("pool_delete_confirm", args=[pool.pk]), {"confirm_pool_id": "pool-a"}),
    ]

    assert [r.status_code for r in refused] == [403, 403, 403]
    assert pool_ids(batch_client) == ["pool-a"]
    assert batch_client.get_pool("pool-a").target_dedicated_nodes == 1


def test_the_forms_carry_the_csrf_token_that_lets_the_post_through(manager, batch, batch_client, small_linux):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(manager)
    page = text(strict.get(reverse("pool_create")))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    response = strict.post(reverse("pool_create_confirm"),
                           create_post(small_linux, "with-token", confirmed="1", csrfmiddlewaretoken=token))

    assert response.status_code == 302
    assert pool_ids(batch_client) == ["with-token"]


def test_a_pool_id_with_markup_is_shown_back_escaped(manager_client, batch, batch_client, small_linux):
    evil = '<script>alert("x")</script>'

    response = manager_client.post(reverse("pool_create_confirm"), create_post(small_linux, evil, confirmed="1"))

    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text(response)
    assert evil not in text(response)
    assert pool_ids(batch_client) == []


def test_a_template_name_with_markup_is_shown_escaped(manager_client, batch, small_linux):
    small_linux.name = '<img src=x onerror="alert(1)">'
    small_linux.save()
    PoolTemplate.objects.create(name="second", vm_size="v", image_publisher="p", image_offer="o", image_sku="s",
                                node_agent_sku_id="n")

    pages = [manager_client.get(reverse("pool_create")),
             manager_client.get(reverse("pool_create"), {"template": small_linux.pk}),
             manager_client.post(reverse("pool_create_confirm"), create_post(small_linux, "fine"))]

    for page in pages:
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text(page)
        assert "<img src=x" not in text(page)


# --- the services, called directly --------------------------------------------------------------------


def test_pool_create_refuses_a_user_without_permission(batch, batch_client, user, small_linux):
    with pytest.raises(PermissionDenied):
        services.pool_create(user=user, template=small_linux, pool_id="p", dedicated_nodes=1, low_priority_nodes=0)

    assert pool_ids(batch_client) == []


def test_pool_resize_and_delete_refuse_a_user_without_permission(batch, batch_client, user):
    make_pool(batch_client, "pool-a")
    pool = mirror("pool-a", target_dedicated_nodes=1)

    with pytest.raises(PermissionDenied):
        services.pool_resize(user=user, pool=pool, dedicated_nodes=5, low_priority_nodes=0)
    with pytest.raises(PermissionDenied):
        services.pool_delete(user=user, pool=pool)

    assert (batch_client.get_pool("pool-a").state, batch_client.get_pool("pool-a").target_dedicated_nodes) == (
        "active", 1)


def test_pool_create_as_superuser(batch, batch_client, admin_user, small_linux):
    services.pool_create(user=admin_user, template=small_linux, pool_id="by-admin", dedicated_nodes=0,
                         low_priority_nodes=3)

    pool = batch_client.get_pool("by-admin")
    assert (pool.target_dedicated_nodes, pool.target_low_priority_nodes) == (0, 3)


@pytest.mark.parametrize("pool_id", ["a b", "x" * 65, "", None, "semi;colon"])
def test_pool_create_checks_the_id(batch, batch_client, manager, small_linux, pool_id):
    with pytest.raises(ActionError) as caught:
        services.pool_create(user=manager, template=small_linux, pool_id=pool_id, dedicated_nodes=1,
                             low_priority_nodes=0)

    assert caught.value.field == "pool_id"
    assert "letters, digits, hyphens (-) and underscores (_)" in caught.value.message
    assert pool_ids(batch_client) == []


@pytest.mark.parametrize("dedicated, low_priority, field", [
    (-1, 0, "dedicated_nodes"), (101, 0, "dedicated_nodes"), (True, 0, "dedicated_nodes"),
    ("2", 0, "dedicated_nodes"), (0, 101, "low_priority_nodes"), (0, 1.5, "low_priority_nodes")])
def test_pool_create_checks_the_counts(batch, batch_client, manager, small_linux, dedicated, low_priority, field):
    with pytest.raises(ActionError) as caught:
        services.pool_create(user=manager, template=small_linux, pool_id="p", dedicated_nodes=dedicated,
                             low_priority_nodes=low_priority)

    assert caught.value.field == field
    assert pool_ids(batch_client) == []


def test_a_busy_batch_is_a_try_again_error(batch, batch_client, manager, small_linux):
    batch.app.faults = Faults(rate=1.0, status=503, retry_after=0, path_pattern="^/pools$")

    with pytest.raises(ActionError) as caught:
        services.pool_create(user=manager, template=small_linux, pool_id="p", dedicated_nodes=1, low_priority_nodes=0)

    batch.app.faults = Faults()
    assert caught.value.message == "Batch is busy or could not be reached; nothing was changed. Try again in a minute."
    assert pool_ids(batch_client) == []


def test_refused_credentials_say_to_ask_an_administrator(batch, batch_client, manager, small_linux, settings):
    settings.BATCH_ACCOUNT_KEY = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktd3Jvbmcta2V5"

    with pytest.raises(ActionError) as caught:
        services.pool_create(user=manager, template=small_linux, pool_id="p", dedicated_nodes=1, low_priority_nodes=0)

    assert "refused the portal's credentials" in caught.value.message
    assert "administrator" in caught.value.message
    assert pool_ids(batch_client) == []


def test_other_refusals_carry_batchs_reason(batch, batch_client, manager, small_linux):
    # Batch caps a start task's command line at 8192 characters; the template's admin form does not.
    small_linux.start_task_command_line = "echo " + "x" * 9000

    with pytest.raises(ActionError) as caught:
        services.pool_create(user=manager, template=small_linux, pool_id="p", dedicated_nodes=1, low_priority_nodes=0)

    assert caught.value.message.startswith("Batch refused to create the pool: ")
    # Batch's values: the property it refused and (the start of) its value.
    assert "startTask.commandLine = 'echo xxx" in caught.value.message
    assert caught.value.message.endswith("Nothing was changed; check the values and try again.")
    assert pool_ids(batch_client) == []


def test_resizing_a_pool_batch_no_longer_has(batch, manager):
    pool = mirror("vanished")

    with pytest.raises(ActionError) as caught:
        services.pool_resize(user=manager, pool=pool, dedicated_nodes=1, low_priority_nodes=0)

    assert caught.value.message.startswith("Batch has no pool “vanished” any more; nothing was changed.")


def test_resizing_a_pool_being_deleted_does_not_ask_batch(batch, batch_client, manager):
    make_pool(batch_client, "pool-a")
    pool = mirror("pool-a", state="deleting")

    with pytest.raises(ActionError) as caught:
        services.pool_resize(user=manager, pool=pool, dedicated_nodes=4, low_priority_nodes=0)

    assert "is being deleted" in caught.value.message
    assert batch_client.get_pool("pool-a").target_dedicated_nodes == 1


def test_delete_tells_whether_batch_still_had_the_pool(batch, batch_client, manager):
    make_pool(batch_client, "pool-a")

    assert services.pool_delete(user=manager, pool=mirror("pool-a")) is True
    assert services.pool_delete(user=manager, pool=mirror("never-there")) is False
    wait_for(lambda: "pool-a" not in pool_ids(batch_client), message="pool-a gone from localbatch")


def test_an_accepted_action_brings_the_pool_into_the_mirror_once_committed(batch, manager, small_linux,
                                                                         django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        services.pool_create(user=manager, template=small_linux, pool_id="fresh", dedicated_nodes=0,
                             low_priority_nodes=0)
    assert not Pool.objects.filter(pool_id="fresh").exists()  # the service itself never writes the mirror

    # Run the enqueued sync in this process instead of through the broker, to see what it does.
    previous, celery_app.conf.task_always_eager = celery_app.conf.task_always_eager, True
    try:
        for callback in callbacks:
            callback()
    finally:
        celery_app.conf.task_always_eager = previous

    assert Pool.objects.get(pool_id="fresh").vm_size == "standard_d2s_v3"


def test_a_sync_is_requested_only_after_an_accepted_action(batch, manager, small_linux,
                                                            django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as accepted:
        services.pool_create(user=manager, template=small_linux, pool_id="p", dedicated_nodes=0, low_priority_nodes=0)
    with django_capture_on_commit_callbacks() as refused:
        with pytest.raises(ActionError):
            services.pool_create(user=manager, template=small_linux, pool_id="p", dedicated_nodes=0,
                                 low_priority_nodes=0)

    assert len(accepted) == 1
    assert refused == []

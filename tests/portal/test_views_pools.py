"""The pools list and a pool's page with its node heatmap and start-task outcomes."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.models import AllocationState, NodeState
from tests.factories import JobFactory, NodeFactory, PoolFactory, UserFactory
from tests.portal.pages import text

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
POLL = 'hx-trigger="every 5s'


def test_anonymous_is_sent_to_login_from_the_pool_pages(client):
    pool = PoolFactory()
    for url in (reverse("pool_list"), reverse("pool_detail", args=[pool.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login") + "?next=")


def test_an_inactive_user_cannot_see_a_pool(client):
    pool = PoolFactory()
    client.force_login(UserFactory(is_active=False))

    assert client.get(reverse("pool_detail", args=[pool.pk])).status_code == 302


def test_pool_list_shows_pools_and_keeps_deleted_ones_as_history(signed_in):
    live = PoolFactory(pool_id="render", vm_size="standard_f8s_v2", target_dedicated_nodes=4,
                       current_dedicated_nodes=3, allocation_state=AllocationState.RESIZING)
    NodeFactory.create_batch(2, pool=live, state=NodeState.RUNNING)
    NodeFactory(pool=live, state=NodeState.STARTING)
    PoolFactory(pool_id="old-pool", gone_at=timezone.now() - timedelta(hours=3))

    page = text(signed_in.get(reverse("pool_list")))

    assert "render" in page and "standard_f8s_v2" in page
    assert "3 / 4" in page
    assert "Resizing" in page
    assert 'aria-label="2 running, 1 starting"' in page
    assert "old-pool" in page and "deleted in Batch 3 h ago" in page
    # Pools Batch still has come before the ones it deleted.
    assert page.index("render") < page.index("old-pool")
    assert POLL in page


def test_a_pool_batch_deleted_shows_no_live_node_counts(signed_in):
    gone = PoolFactory(pool_id="old-pool", gone_at=timezone.now() - timedelta(hours=3), target_dedicated_nodes=3,
                       current_dedicated_nodes=3, target_low_priority_nodes=2, current_low_priority_nodes=1)

    listed = text(signed_in.get(reverse("pool_list")))
    row = listed[listed.index('id="pool-'):listed.index("</tr>", listed.index('id="pool-'))]
    detail = text(signed_in.get(reverse("pool_detail", args=[gone.pk])))

    assert "4 / 5" not in row and "spot" not in row and "deleted in Batch" in row
    assert "4 of 5" not in detail and "3 of 3</dd>" not in detail
    assert detail.count("none, the pool is gone") == 2 and "(last seen 3 of 3)" in detail


def test_pool_list_htmx_gets_only_the_list(signed_in):
    PoolFactory(pool_id="render")

    page = text(signed_in.get(reverse("pool_list"), HTTP_HX_TARGET="pools", **HTMX))

    assert page.lstrip().startswith('<div id="pools"') and "render" in page and "<html" not in page


def test_pool_detail_404s_for_a_missing_pool(signed_in):
    assert signed_in.get(reverse("pool_detail", args=[424242])).status_code == 404


def test_pool_detail_heatmap_has_one_square_per_node_coloured_by_state(signed_in):
    pool = PoolFactory(pool_id="render")
    NodeFactory.create_batch(5, pool=pool, state=NodeState.RUNNING)
    NodeFactory.create_batch(2, pool=pool, state=NodeState.IDLE)
    NodeFactory(pool=pool, state=NodeState.START_TASK_FAILED, node_id="tvm-broken", start_task_result="failure",
                start_task_exit_code=127, start_task_failure_code="FailureExitCode",
                start_task_failure_message="setup.sh: not found")
    NodeFactory(pool=pool, node_id="tvm-left", gone_at=timezone.now())

    page = text(signed_in.get(reverse("pool_detail", args=[pool.pk])))
    cells = re.findall(r'class="cell (node-[a-z]+)( st-failed)?"', page)

    assert len(cells) == 8
    assert sorted(state for state, _ in cells).count("node-running") == 5
    assert ("node-starttaskfailed", " st-failed") in cells
    # The legend names each state present with its count.
    assert re.search(r"running <strong>5</strong>", page) and re.search(r"idle <strong>2</strong>", page)
    # The start task's outcome per node, in the table the squares link to.
    assert 'id="node-tvm-broken"' in page and 'href="#node-tvm-broken"' in page
    assert "exit 127" in page and "setup.sh: not found" in page
    assert "1 start task failed" in page
    # A node that left the pool is history, not a square.
    assert "1 node that left the pool" in page and 'href="#node-tvm-left"' not in page


def test_a_big_pool_lists_only_the_nodes_that_need_a_look_but_shows_every_square(signed_in):
    pool = PoolFactory()
    NodeFactory.create_batch(205, pool=pool, state=NodeState.RUNNING)
    NodeFactory(pool=pool, node_id="tvm-offline", state=NodeState.OFFLINE)
    NodeFactory(pool=pool, node_id="tvm-bad-start", state=NodeState.IDLE, start_task_result="failure")

    page = text(signed_in.get(reverse("pool_detail", args=[pool.pk])))

    assert page.count('class="cell ') == 207
    assert re.findall(r'<tr id="node-([^"]+)"', page) == ["tvm-bad-start", "tvm-offline"]
    assert "205 idle, running or starting nodes with a good start task are not listed" in page


def test_pool_detail_keeps_the_latest_nodes_that_left_as_history(signed_in):
    pool = PoolFactory()
    NodeFactory(pool=pool)
    left = timezone.now() - timedelta(days=1)
    for i in range(55):
        NodeFactory(pool=pool, node_id=f"left-{i:02d}", gone_at=left + timedelta(minutes=i))

    page = text(signed_in.get(reverse("pool_detail", args=[pool.pk])))

    assert "The latest 50 nodes that left the pool" in page
    assert "left-54" in page and "left-05" in page and "left-04" not in page


def test_pool_detail_lists_the_active_jobs_on_the_pool(signed_in):
    pool = PoolFactory(pool_id="render")
    JobFactory(job_id="on-this-pool", pool_id="render", task_active=3)
    JobFactory(job_id="elsewhere", pool_id="other")

    page = text(signed_in.get(reverse("pool_detail", args=[pool.pk])))

    assert "on-this-pool" in page and "elsewhere" not in page


def test_pool_detail_polls_while_the_pool_exists_and_not_after_batch_deleted_it(signed_in):
    live = PoolFactory()
    gone = PoolFactory(gone_at=timezone.now() - timedelta(minutes=5))

    live_page = text(signed_in.get(reverse("pool_detail", args=[live.pk])))
    gone_page = text(signed_in.get(reverse("pool_detail", args=[gone.pk])))

    assert POLL in live_page
    assert POLL not in gone_page
    assert "Batch deleted this pool 5 min ago" in gone_page


def test_pool_detail_htmx_gets_only_the_live_part_and_not_the_actions(signed_in):
    pool = PoolFactory(pool_id="render")
    NodeFactory(pool=pool)
    NodeFactory(pool=pool, gone_at=timezone.now())

    response = signed_in.get(reverse("pool_detail", args=[pool.pk]), HTTP_HX_TARGET="pool", **HTMX)
    page = text(response)

    assert page.lstrip().startswith('<div id="pool"')
    assert 'class="cell node-idle"' in page
    # The nodes that left sit outside the poll, so someone reading them is not interrupted.
    assert "left the pool" not in page
    assert "<html" not in page and "pools/_actions.html" not in [t.name for t in response.templates]


def test_pool_pages_leave_a_place_for_pool_actions(signed_in):
    pool = PoolFactory()

    for url in (reverse("pool_list"), reverse("pool_detail", args=[pool.pk])):
        assert "pools/_actions.html" in [t.name for t in signed_in.get(url).templates]


def test_pool_pages_escape_text_from_batch(signed_in):
    pool = PoolFactory(pool_id="<script>p</script>", display_name="<script>alert(1)</script>",
                       start_task_command_line="<script>cmd</script>")
    NodeFactory(pool=pool, node_id="<script>n</script>", start_task_result="failure",
                start_task_failure_message="<img src=x onerror=alert(1)>")

    for url in (reverse("pool_list"), reverse("pool_detail", args=[pool.pk]), reverse("dashboard")):
        page = text(signed_in.get(url))
        assert "<script>" not in page and "<img src=x" not in page


def test_pool_detail_queries_do_not_grow_with_nodes(signed_in, django_assert_max_num_queries):
    pool = PoolFactory()
    NodeFactory.create_batch(3, pool=pool)
    with django_assert_max_num_queries(10) as few:   # 8, the History section's events, the accounts
        small = signed_in.get(reverse("pool_detail", args=[pool.pk]))
    NodeFactory.create_batch(40, pool=pool, state=NodeState.RUNNING)
    with django_assert_max_num_queries(len(few)):
        big = signed_in.get(reverse("pool_detail", args=[pool.pk]))
    # An error page is cheap too: the budget counts only if the page itself was served.
    assert (small.status_code, big.status_code) == (200, 200)

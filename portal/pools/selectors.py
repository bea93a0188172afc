"""Reads of pools and their nodes: the pool list with node counts by state, and one pool with its nodes and jobs."""

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import Count, F, QuerySet

from portal import access
from portal.models import Job, JobState, Node, NodeState, Pool, TaskResult


@dataclass
class PoolSummary:
    pool: Pool
    node_states: list[tuple[str, str, int]]  # (state value, label, count), most common first
    nodes: int

    @property
    def live(self) -> bool:
        return self.pool.is_live

    @property
    def segments(self) -> list[tuple[str, str, int, int]]:
        """(state, label, count, % of the nodes, whole) of each state: the node bar's parts."""
        return [(state, label, n, round(n / self.nodes * 100) if self.nodes else 0)
                for state, label, n in self.node_states]

    @property
    def described(self) -> str:
        """The node bar in words: '6 idle, 4 running'."""
        return ", ".join(f"{n} {label}" for _, label, n in self.node_states)


NODE_STATE_LABELS = {state: str(label)[:1].lower() + str(label)[1:] for state, label in NodeState.choices}


def _node_counts(pool_ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {pk: {} for pk in pool_ids}
    if pool_ids:
        rows = (Node.objects.filter(pool_id__in=pool_ids, gone_at__isnull=True)
                .values_list("pool_id", "state").annotate(n=Count("id")).order_by())
        for pool_id, state, n in rows:
            counts[pool_id][state] = n
    return counts


def pool_summaries(pools: list[Pool]) -> list[PoolSummary]:
    counts = _node_counts([pool.pk for pool in pools])
    summaries = []
    for pool in pools:
        by_state = sorted(counts[pool.pk].items(), key=lambda item: (-item[1], item[0]))
        summaries.append(PoolSummary(
            pool=pool,
            node_states=[(state, NODE_STATE_LABELS.get(state, state), n) for state, n in by_state],
            nodes=sum(counts[pool.pk].values()),
        ))
    return summaries


def pool_list(*, user: User, account_ids: list[int] | None = None) -> list[PoolSummary]:
    """Every pool (of `account_ids`, when given: portal.accounts.selectors.account_scope), those Batch still has
    first, then the ones it deleted, kept as history."""
    visible = access.visible_account_ids(user)
    ids = visible if account_ids is None else [pk for pk in account_ids if pk in visible]
    pools = Pool.objects.filter(account_id__in=ids).select_related("account")
    return pool_summaries(list(pools.order_by(F("gone_at").desc(nulls_first=True), "pool_id")))


def pool_get(*, user: User, pk: int) -> Pool:
    return access.readable_or_404(Pool.objects.select_related("account"), user=user,
                                  account_of=lambda pool: pool.account_id, pk=pk)


GONE_NODES_SHOWN = 50
# Past this many nodes the table lists only the nodes that need a look; the heatmap still shows all.
NODE_TABLE_LIMIT = 200
HEALTHY_NODE_STATES = {NodeState.IDLE, NodeState.RUNNING, NodeState.CREATING, NodeState.STARTING,
                       NodeState.WAITING_FOR_START_TASK}


def node_needs_a_look(node: Node) -> bool:
    return node.state not in HEALTHY_NODE_STATES or node.start_task_result == TaskResult.FAILURE


@dataclass
class PoolDetail:
    pool: Pool
    nodes: list[Node]
    gone_nodes: list[Node]
    node_states: list[tuple[str, str, int]]
    start_task_failures: int
    jobs: list[Job]
    live: bool
    table_nodes: list[Node]

    @property
    def more_gone_nodes(self) -> bool:
        return len(self.gone_nodes) >= GONE_NODES_SHOWN

    @property
    def nodes_not_in_table(self) -> int:
        return len(self.nodes) - len(self.table_nodes)


def pool_detail(*, pool: Pool) -> PoolDetail:
    nodes = list(Node.objects.filter(pool=pool, gone_at__isnull=True).order_by("node_id"))
    # Nodes that left pile up over months of autoscaling; the page keeps the latest as history.
    gone = list(Node.objects.filter(pool=pool, gone_at__isnull=False)
                .order_by("-gone_at", "node_id")[:GONE_NODES_SHOWN])
    counts: dict[str, int] = {}
    for node in nodes:
        counts[node.state] = counts.get(node.state, 0) + 1
    # The legend lists every state in Batch's order, present ones with their count.
    node_states = [(state, NODE_STATE_LABELS[state], counts.get(state, 0)) for state in NodeState.values]
    jobs = list(Job.objects.live().filter(account_id=pool.account_id, pool_id=pool.pool_id)
                .order_by("-creation_time", "-pk")[:10])
    return PoolDetail(
        pool=pool, nodes=nodes, gone_nodes=gone, node_states=node_states,
        start_task_failures=sum(1 for node in nodes if node.start_task_result == TaskResult.FAILURE
                                or node.state == NodeState.START_TASK_FAILED),
        jobs=jobs, live=pool.is_live,
        table_nodes=nodes if len(nodes) <= NODE_TABLE_LIMIT else [n for n in nodes if node_needs_a_look(n)],
    )


def unfinished_jobs_on(pool: Pool) -> QuerySet[Job]:
    """The jobs still running on `pool`, which deleting it stops: live jobs, less those being deleted already."""
    return (Job.objects.live().filter(account=pool.account, pool_id=pool.pool_id)
            .exclude(state=JobState.DELETING).order_by("job_id"))

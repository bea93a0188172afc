"""factory-boy factories for users and the mirror models, so page tests write rows directly.

Times default to a task that ran for a minute and ended ten minutes ago; override what a test needs."""

from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from portal import models

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True  # the role hook adds a group; nothing on the user row changes

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def role(obj, create, extracted, **kwargs):
        """A Submitter unless told otherwise: UserFactory(role="Viewer"), or role="" for an account with no role."""
        # Lazy: tests.personas builds its people with this module's UserFactory (an import cycle at the top).
        from tests.personas import role as role_group  # noqa: PLC0415

        name = "Submitter" if extracted is None else extracted
        if create and name:
            obj.groups.add(role_group(name))


class BatchAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.BatchAccount
        django_get_or_create = ("name",)

    name = "default"
    # Where nothing answers (tests/settings.py), not localbatch's default port, where `make dev` may be listening: a
    # test that talks to Batch points the account at its own localbatch.
    account_url = "http://127.0.0.1:9"
    account_name = "localbatch"
    is_default = True
    last_synced_at = factory.LazyFunction(timezone.now)


class PoolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Pool

    account = factory.SubFactory(BatchAccountFactory)
    pool_id = factory.Sequence(lambda n: f"pool-{n}")
    state = models.PoolState.ACTIVE
    allocation_state = models.AllocationState.STEADY
    vm_size = "standard_d2s_v3"
    target_dedicated_nodes = 2
    current_dedicated_nodes = 2
    task_slots_per_node = 1
    node_fill_type = "spread"
    creation_time = factory.LazyFunction(lambda: timezone.now() - timedelta(hours=2))
    last_synced_at = factory.LazyFunction(timezone.now)


class NodeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Node

    pool = factory.SubFactory(PoolFactory)
    node_id = factory.Sequence(lambda n: f"tvm-{n:04d}")
    state = models.NodeState.IDLE
    scheduling_state = "enabled"
    start_task_state = "completed"
    start_task_result = "success"
    start_task_exit_code = 0
    last_synced_at = factory.LazyFunction(timezone.now)


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Job

    account = factory.SubFactory(BatchAccountFactory)
    job_id = factory.Sequence(lambda n: f"job-{n:04d}")
    state = models.JobState.ACTIVE
    pool_id = "pool-a"
    creation_time = factory.Sequence(lambda n: timezone.now() - timedelta(hours=1) + timedelta(seconds=n))
    last_synced_at = factory.LazyFunction(timezone.now)
    tasks_synced_at = factory.LazyFunction(timezone.now)


class TaskFactory(factory.django.DjangoModelFactory):
    """A task that succeeded; pass `state=TaskState.ACTIVE` etc. and the times that go with it."""

    class Meta:
        model = models.Task

    job = factory.SubFactory(JobFactory)
    task_id = factory.Sequence(lambda n: f"task-{n:05d}")
    state = models.TaskState.COMPLETED
    previous_state = models.TaskState.RUNNING
    command_line = "/bin/sh -c 'echo hello'"
    creation_time = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=15))
    start_time = factory.LazyAttribute(lambda t: t.creation_time + timedelta(minutes=4) if t.state in (
        models.TaskState.RUNNING, models.TaskState.COMPLETED) else None)
    end_time = factory.LazyAttribute(
        lambda t: t.start_time + timedelta(minutes=1)
        if t.start_time and t.state == models.TaskState.COMPLETED else None)
    duration_seconds = factory.LazyAttribute(
        lambda t: (t.end_time - t.start_time).total_seconds() if t.start_time and t.end_time else None)
    state_transition_time = factory.LazyAttribute(lambda t: t.end_time or t.start_time or t.creation_time)
    exit_code = factory.LazyAttribute(lambda t: 0 if t.state == models.TaskState.COMPLETED else None)
    result = factory.LazyAttribute(lambda t: models.TaskResult.SUCCESS if t.state == models.TaskState.COMPLETED else "")
    node_id = factory.LazyAttribute(lambda t: "tvm-0001" if t.start_time else "")
    pool_id = factory.LazyAttribute(lambda t: t.job.pool_id)
    last_synced_at = factory.LazyFunction(timezone.now)

    class Params:
        # TaskFactory(failed=True): completed with exit code 1 and Batch's failure info.
        failed = factory.Trait(
            exit_code=1,
            result=models.TaskResult.FAILURE,
            failure_category="usererror",
            failure_code="FailureExitCode",
            failure_message="The task process exited with an unexpected exit code",
        )

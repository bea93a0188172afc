"""`manage.py batch_sync` against a real localbatch: one pass, a summary, and a plain error when Batch is away."""

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from batchsync import locks
from batchsync.accounts import default_account
from batchsync.gateway import BatchGateway, JobSpec, PoolSpec, TaskSpec
from portal.models import Job, Pool, Task
from tests.batchsync.test_sync import UBUNTU

pytestmark = pytest.mark.django_db


@pytest.fixture
def configured(settings, localbatch):
    settings.BATCH_ACCOUNT_URL = localbatch.endpoint
    settings.BATCH_ACCOUNT_NAME = localbatch.account_name
    settings.BATCH_ACCOUNT_KEY = localbatch.account_key
    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as gateway:
        gateway.create_pool(PoolSpec(id="pool-1", vm_size="standard_d2s_v3", image=UBUNTU))
        gateway.create_job(JobSpec(id="job-1", pool_id="pool-1"))
        gateway.add_tasks("job-1", [TaskSpec(id=f"t{n}", command_line="/bin/true") for n in range(4)])
        yield gateway


def batch_sync(*args) -> str:
    out = StringIO()
    call_command("batch_sync", *args, stdout=out)
    return out.getvalue()


def test_one_pass_fills_the_mirror_and_prints_a_summary(configured):
    output = batch_sync()

    assert re.fullmatch(r"default: 1 pools, 0 nodes, 1 jobs, 4 tasks upserted \(4 listed\), 0 marked gone, "
                        r"in \d+\.\d\d s\n", output), output
    assert Pool.objects.filter(pool_id="pool-1").exists()
    assert Task.objects.filter(job__job_id="job-1").count() == 4


def test_a_pass_says_which_jobs_it_did_not_need_to_list(configured):
    batch_sync()
    # The pass after a job changed lists it once more (it stored changes last time: batchsync/sync/account.py lists
    # such a job with its counts); the one after that finds it quiet.
    assert "not listed" not in batch_sync()

    assert "; 1 unchanged jobs not listed" in batch_sync()


def test_full_marks_what_batch_deleted_as_gone(configured):
    batch_sync()
    configured.delete_task("job-1", "t2")

    output = batch_sync("--full")

    assert output.startswith("default (full): ") and "1 marked gone" in output
    assert Task.objects.get(task_id="t2").gone_at is not None


def test_a_busy_part_is_reported_as_skipped(configured):
    account = default_account()
    with locks.hold(f"account:{account.pk}:jobs"):
        output = batch_sync()

    assert "skipped, another sync was running: jobs of account default" in output
    assert not Job.objects.exists()


def test_unreachable_batch_is_a_plain_error(settings):
    settings.BATCH_ACCOUNT_URL = "http://127.0.0.1:9"   # nothing answers on the discard port

    with pytest.raises(CommandError, match=r"Account default: Batch at http://127\.0\.0\.1:9 refused or did not "
                                           r"answer .* check that Batch is reachable"):
        batch_sync("--retry-seconds", "0")


def test_an_unknown_account_is_named_with_the_known_ones(configured):
    with pytest.raises(CommandError, match="No account named 'nope'. Known accounts: default."):
        batch_sync("--account", "nope")

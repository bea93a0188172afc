"""Templates name the account they run on: a job template's submissions and a pool template's pools go to that
account (two localbatch services here, each its own account), the default account when they name none, and
nowhere when it is disabled."""

import pytest
from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential

from batchsync.submit import submit_submission
from localbatch.server import start
from portal.actions import ActionError
from portal.models import BatchAccount, JobTemplate, PoolTemplate, Submission
from portal.pools import services as pool_services
from portal.submit import services
from portal.submit.services import SubmissionError

pytestmark = pytest.mark.django_db

SECOND_KEY_VARIABLE = "SECOND_BATCH_KEY_FOR_TEST"


@pytest.fixture
def second(tmp_path, monkeypatch):
    """A second localbatch, and the portal's account for it (its key in its own variable)."""
    running = start(str(tmp_path / "second-localbatch"), node_start_seconds=0.05)
    monkeypatch.setenv(SECOND_KEY_VARIABLE, running.account_key)
    account = BatchAccount.objects.create(name="second", account_url=running.endpoint,
                                          account_name=running.account_name, key_env_var=SECOND_KEY_VARIABLE)
    client = BatchClient(running.endpoint, AzureNamedKeyCredential(running.account_name, running.account_key))
    try:
        yield account, client
    finally:
        client.close()
        running.stop()


def job_ids(client: BatchClient) -> set[str]:
    return {job.id for job in client.list_jobs()}


def pool_ids(client: BatchClient) -> set[str]:
    return {pool.id for pool in client.list_pools()}


def render_frames(account: BatchAccount | None) -> JobTemplate:
    template = JobTemplate.objects.get(slug="render-frames")
    template.account = account
    template.save(update_fields=["account"])
    return template


def test_a_template_naming_an_account_submits_there_and_one_naming_none_to_the_default(
        batch, batch_client, second, submitter):
    account, second_client = second
    template = render_frames(account)

    there = services.submission_create(user=submitter, template_version=template.current_version(),
                                       parameters={"frames": "2", "seconds_per_frame": "0"})
    submit_submission(there.pk)
    render_frames(None)
    default = services.submission_create(user=submitter, template_version=template.current_version(),
                                         parameters={"frames": "2", "seconds_per_frame": "0"})
    submit_submission(default.pk)

    there.refresh_from_db()
    assert there.account == account and there.job_id in job_ids(second_client)
    assert there.job_id not in job_ids(batch_client)
    default.refresh_from_db()
    assert default.account.is_default and default.job_id in job_ids(batch_client)
    assert default.job_id not in job_ids(second_client)


def test_a_template_on_a_disabled_account_is_refused_and_nothing_is_written(batch, second, submitter):
    account, second_client = second
    BatchAccount.objects.filter(pk=account.pk).update(enabled=False)
    template = render_frames(BatchAccount.objects.get(pk=account.pk))

    with pytest.raises(SubmissionError, match="“second”.*disabled"):
        services.submission_create(user=submitter, template_version=template.current_version(),
                                   parameters={"frames": "2", "seconds_per_frame": "0"})

    assert not Submission.objects.exists() and not job_ids(second_client)


def test_a_pool_template_naming_an_account_creates_its_pools_there(batch, batch_client, second, operator_a):
    account, second_client = second
    template = PoolTemplate.objects.first()
    template.account = account
    template.save(update_fields=["account"])

    pool_services.pool_create(user=operator_a, template=template, pool_id="elsewhere", dedicated_nodes=0,
                              low_priority_nodes=0)

    assert "elsewhere" in pool_ids(second_client) and "elsewhere" not in pool_ids(batch_client)

    BatchAccount.objects.filter(pk=account.pk).update(enabled=False)
    template.refresh_from_db()
    with pytest.raises(ActionError, match="disabled"):
        pool_services.pool_create(user=operator_a, template=template, pool_id="not-made", dedicated_nodes=0,
                                  low_priority_nodes=0)
    assert "not-made" not in pool_ids(second_client)

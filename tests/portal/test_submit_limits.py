"""What Batch would refuse is refused at the preview (submission_prepare), naming the field, with nothing written:
a command line past Batch's limit, from a long value or from one long row of a sweep. And the limit is Batch's:
localbatch, answering as the service does, takes a command line of exactly that length and refuses one more."""

import pytest
from azure.batch import models
from azure.core.exceptions import HttpResponseError

from portal.models import JobTemplate, Submission
from portal.submit import services
from portal.submit.limits import COMMAND_LINE_MAX_CHARS
from portal.submit.services import SubmissionError
from portal.submit.values import InputFile
from tests.localbatch.helpers import make_job, make_pool

pytestmark = pytest.mark.django_db
COLUMNS = "abcdefghij"


@pytest.fixture
def note_version(engineer):
    template = JobTemplate.objects.create(name="Echo a note", slug="echo-note")
    return services.job_template_version_create(user=engineer, template=template, spec={
        "pool": {"pool_id": "demo-pool"},
        "command_line": "echo {note}",
        "parameters": [{"name": "note", "type": "string", "required": True, "max_length": 200_000}],
    })


@pytest.fixture
def csv_version(engineer):
    template = JobTemplate.objects.create(name="Per sample", slug="per-sample")
    return services.job_template_version_create(user=engineer, template=template, spec={
        "pool": {"pool_id": "demo-pool"},
        "command_line": "echo " + " ".join(f"{{row.{column}}}" for column in COLUMNS),
        "parameters": [{"name": "table", "type": "file", "extensions": [".csv"], "required": True}],
        "fan_out": {"kind": "csv", "parameter": "table"},
    })


def test_a_value_that_makes_the_command_line_too_long_is_refused_at_the_preview(user, note_version):
    with pytest.raises(SubmissionError) as caught:
        services.submission_prepare(user=user, template_version=note_version, parameters={"note": "x" * 100_000})

    assert "nothing was submitted" in caught.value.message
    assert f"at most {COMMAND_LINE_MAX_CHARS:,}" in caught.value.field_errors["note"]
    assert not Submission.objects.exists()


def test_a_value_that_fits_is_accepted(user, note_version):
    prepared = services.submission_prepare(user=user, template_version=note_version, parameters={"note": "x" * 7000})
    assert prepared.preview.task_count == 1


def test_one_long_row_deep_in_a_sweep_is_found(user, csv_version):
    # Each value within the CSV's own cap (1,000 characters), yet row 500's ten of them make 9,000.
    short, long = ",".join("s" for _ in COLUMNS), ",".join("L" * 900 for _ in COLUMNS)
    text = ",".join(COLUMNS) + "\n" + "".join(short + "\n" for _ in range(499)) + long + "\n"
    table = InputFile(name="samples.csv", url="https://blob.example/samples.csv", size=len(text),
                      content=text.encode())

    with pytest.raises(SubmissionError) as caught:
        services.submission_create(user=user, template_version=csv_version, parameters={},
                                   uploaded_files={"table": [table]})

    assert "task t00500" in caught.value.field_errors["table"]
    assert not Submission.objects.exists()


def test_the_limit_is_the_one_batch_enforces(batch_client):
    make_pool(batch_client, "limit-pool", nodes=0)
    make_job(batch_client, "limit-job", "limit-pool")
    prefix = "echo "
    batch_client.create_task("limit-job", models.BatchTaskCreateOptions(
        id="at-the-limit", command_line=prefix + "x" * (COMMAND_LINE_MAX_CHARS - len(prefix))))
    with pytest.raises(HttpResponseError) as refused:
        batch_client.create_task("limit-job", models.BatchTaskCreateOptions(
            id="past-the-limit", command_line=prefix + "x" * (COMMAND_LINE_MAX_CHARS - len(prefix) + 1)))
    assert refused.value.status_code == 400 and "commandLine" in str(refused.value)

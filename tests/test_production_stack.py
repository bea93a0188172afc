"""The production stack (tests/stack.py), started for real: gunicorn, a worker for `submit`, another for `sync`,
one beat, a private Redis, localbatch and Azurite, on this test's PostgreSQL database, with production settings
(DJANGO_DEBUG off; plain HTTP). A person signs in over HTTP, uploads a file, submits a template and reads the
task's log once the job completed; and /readyz turns red when each dependency stops and green when it is back.

Every process opens the test's database, so this needs PostgreSQL, as in CI (.ci/run); with the in-memory SQLite of
a plain local run it is skipped. Locally: DATABASE_URL=postgres://postgres@127.0.0.1:5432/<a name of your own>."""

import re
import secrets

import psycopg
import pytest
import requests
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import Group
from django.db import connection

from batchsync.gateway import BatchGateway, BlobStore, PoolSpec
from portal.models import AuditEvent, JobState, JobTemplate, Submission, Task, TaskState
from tests.batchsync.test_submit_faults import database_url
from tests.batchsync.test_sync import UBUNTU
from tests.factories import UserFactory
from tests.localbatch.helpers import wait_for
from tests.portal.submit_helpers import put_blocks
from tests.stack import LOCALBATCH_KEY, LOCALBATCH_NAME, Stack, TcpRelay, grant_app_role

# The processes write committed rows the test reads; serialized_rollback keeps the shipped templates for the tests
# that run after these, which a transactional test would otherwise truncate.
# Skipped before any database set-up on SQLite: a serialized rollback there would restore rows the in-memory
# database still holds.
pytestmark = [
    pytest.mark.skipif("postgresql" not in settings.DATABASES["default"]["ENGINE"],
                       reason="needs a database the stack's processes can open (PostgreSQL, as in CI)"),
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PASSWORD = "a long production password 7"


@pytest.fixture
def shared_database():
    url = database_url()
    if url is None:
        pytest.skip("needs a database the stack's processes can open (PostgreSQL, as in CI)")
    return url


@pytest.fixture
def app_role(shared_database):
    """A role of this test's own, granted what deploy/postgres-app-role.sql grants the portal's app role: owner of
    nothing, not a superuser. Yields its database URL; dropped afterwards."""
    role, password = f"portal_app_{secrets.token_hex(4)}", secrets.token_hex(16)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER PASSWORD '{password}'")
        grant_app_role(cursor, role)
    try:
        # The owner's URL with the role's name and password in place of the owner's.
        yield re.sub(r"^(postgres(?:ql)?://)[^@]*@", rf"\g<1>{role}:{password}@", shared_database)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {role}")
            cursor.execute(f"DROP ROLE {role}")


@pytest.fixture
def stack(tmp_path, shared_database, app_role):
    running = Stack(tmp_path / "stack", app_role)
    try:
        yield running
    finally:
        running.stop()


def submitter(username: str = "prod-sue"):
    """A Submitter whose password the production processes can check (they use PBKDF2; the suite's MD5 is faster)."""
    person = UserFactory(username=username)
    hasher = PBKDF2PasswordHasher()
    person.password = hasher.encode(PASSWORD, hasher.salt())
    person.save(update_fields=["password"])
    person.groups.add(Group.objects.get(name="Submitter"))
    return person


def sign_in(base: str, username: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login/", timeout=30)
    assert page.status_code == 200, page.text[:500]
    answer = session.post(f"{base}/login/", timeout=30, allow_redirects=False,
                          data={"username": username, "password": PASSWORD, "next": "/",
                                "csrfmiddlewaretoken": csrf_token(page.text)})
    assert answer.status_code == 302 and answer.headers["Location"] == "/", answer.text[:500]
    return session


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def readiness(stack: Stack) -> tuple[int, dict]:
    response = requests.get(f"{stack.url}/readyz", timeout=30)
    return response.status_code, response.json()


def failing(stack: Stack) -> set[str]:
    _, body = readiness(stack)
    return {name for name, check in body["checks"].items() if not check["ok"]}


def prepare_dependencies(stack: Stack) -> None:
    """What an installation sets up once: the storage containers and a pool for the templates (demo-pool)."""
    with BlobStore(stack.storage_connection_string) as store:
        store.ensure_containers()
    with BatchGateway(stack.batch_url, LOCALBATCH_NAME, LOCALBATCH_KEY) as gateway:
        gateway.create_pool(PoolSpec(id="demo-pool", vm_size="standard_d2s_v3", image=UBUNTU,
                                     target_dedicated_nodes=1, task_slots_per_node=2))


def test_a_person_signs_in_submits_a_file_and_reads_the_log_on_the_production_stack(stack, shared_database):
    stack.start("redis", "localbatch", "azurite")
    prepare_dependencies(stack)
    # Migrations as the owner; the web process and the workers as the app role, which owns nothing.
    stack.manage("migrate", "--noinput", database_url=shared_database)
    stack.manage("collectstatic", "--noinput")
    submitter()
    try:
        stack.start("web", "worker-submit", "worker-sync", "beat")
        base = stack.url

        status, body = readiness(stack)
        assert status == 200 and body["ready"] is True, body
        # Production settings: no debug page, static files from WhiteNoise, sign-in required.
        missing = requests.get(f"{base}/no-such-page/", timeout=30, allow_redirects=False)
        assert missing.status_code == 404 and "URLconf" not in missing.text
        assert requests.get(f"{base}/jobs/", timeout=30, allow_redirects=False).headers["Location"].startswith(
            "/login/")
        css = re.search(r'href="(/static/[^"]+\.css)"', requests.get(f"{base}/login/", timeout=30).text)
        assert css and requests.get(base + css.group(1), timeout=30).status_code == 200

        session = sign_in(base, "prod-sue")
        headers = {"X-CSRFToken": session.cookies["csrftoken"]}
        data = b"one two three\n"
        upload = session.post(f"{base}/submit/count-words/uploads/", timeout=30, headers=headers,
                              json={"parameter": "texts", "name": "words.txt", "size": len(data)})
        assert upload.status_code == 200, upload.text[:500]
        put_blocks(upload.json()["sas_url"], data)

        version = JobTemplate.objects.get(slug="count-words").current_version()
        preview = session.post(f"{base}/submit/count-words/", timeout=30, headers=headers,
                               data={"template_version": version.pk, "texts": upload.json()["token"]})
        assert preview.status_code == 200 and "This creates 1 task" in preview.text, preview.text[-2000:]
        payload = re.search(r'name="payload" value="([^"]+)"', preview.text)
        assert payload, "no preview payload"
        confirmed = session.post(f"{base}/submit/count-words/confirm/", timeout=30, headers=headers,
                                 allow_redirects=False, data={"payload": payload.group(1), "submit": "1"})
        assert confirmed.status_code == 302, confirmed.text[:500]
        submission = Submission.objects.get()

        # The submit worker adds the job; the beat's sync brings it into the mirror, completed. A pass writes the
        # job's row before it lists the job's tasks, so the task's row may land a moment after the job's.
        task = wait_for(lambda: Task.objects.filter(job__job_id=submission.job_id, job__state=JobState.COMPLETED,
                                                    state=TaskState.COMPLETED).select_related("job").first(),
                        timeout=120, interval=1, message=f"the job and its task to complete\n{stack.logs()}")
        job = task.job
        assert task.exit_code == 0

        job_page = session.get(f"{base}/jobs/{job.pk}/", timeout=30)
        assert job_page.status_code == 200 and submission.job_id in job_page.text
        output = session.get(f"{base}/tasks/{task.pk}/output/", timeout=30)
        assert output.status_code == 200
        assert "3 inputs/words.txt" in output.text, output.text[-2000:]

        # The app role could append to the audit history (the sign-in and the submission are in it), not change it.
        assert AuditEvent.objects.filter(action="submission.create").exists()
        with psycopg.connect(stack.database_url.replace("postgres://", "postgresql://")) as app:
            for statement in ("UPDATE portal_auditevent SET action = 'x'", "DELETE FROM portal_auditevent",
                              "TRUNCATE portal_auditevent"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    app.execute(statement)
                app.rollback()
    except BaseException:
        print(stack.logs())
        raise


def test_readiness_turns_red_when_each_dependency_stops_and_green_when_it_returns(tmp_path, shared_database):
    # The web process reaches PostgreSQL through a relay the test can cut; the server itself is shared.
    port = int(shared_database.rsplit(":", 1)[1].split("/")[0])
    relay = TcpRelay(port)
    relay.start()
    stack = Stack(tmp_path / "stack", shared_database.replace(f":{port}/", f":{relay.port}/"), web_workers=1)
    try:
        stack.start("redis", "localbatch", "azurite", "web")
        # Storage answers, but the portal's containers are not there yet: not ready, and it says which.
        status, body = readiness(stack)
        assert status == 503 and body["checks"]["storage"]["error"].startswith("containers missing"), body
        prepare_dependencies(stack)
        status, body = readiness(stack)
        assert status == 200, body
        assert set(body["checks"]) == {"database", "redis", "batch:default", "storage"}

        for name, check in [("redis", "redis"), ("localbatch", "batch:default"), ("azurite", "storage")]:
            stack.stop(name)
            status, body = readiness(stack)
            assert status == 503 and failing(stack) == {check}, body
            assert body["checks"][check]["error"] == "does not answer"
            stack.start(name)
            wait_for(lambda: readiness(stack)[0] == 200, timeout=30, interval=0.5, message=f"{name} back")

        relay.stop()
        status, body = readiness(stack)
        assert status == 503 and "database" in failing(stack), body
        relay.start()
        wait_for(lambda: readiness(stack)[0] == 200, timeout=30, interval=0.5, message="the database back")
        # Nothing in it an outsider could use: no address, URL or key.
        text = requests.get(f"{stack.url}/readyz", timeout=30).text
        for secret in (str(stack.batch_port), str(stack.blob_port), str(stack.redis_port), LOCALBATCH_KEY, "127.0.0.1"):
            assert secret not in text
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()
        relay.stop()

"""/readyz in-process: open without sign-in, one check per dependency, 503 naming what is down, 200 when all answer.
The same endpoint against real processes stopped and restarted one by one: tests/test_production_stack.py."""

import pytest

from tests.portal.submit_helpers import use_azurite

pytestmark = pytest.mark.django_db


def test_readiness_names_what_does_not_answer_without_sign_in(client, settings):
    settings.READINESS_TIMEOUT_SECONDS = 0.5   # Batch and storage point where nothing answers (tests/settings.py).

    response = client.get("/readyz")

    assert response.status_code == 503 and response["Cache-Control"].startswith("max-age=0")
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["batch:default"] == {"ok": False, "ms": body["checks"]["batch:default"]["ms"],
                                               "error": "does not answer"}
    assert body["checks"]["storage"]["error"] == "does not answer"
    assert "127.0.0.1" not in response.content.decode()


def test_readiness_is_green_when_everything_answers(client, settings, batch, azurite, real_redis):
    use_azurite(azurite, settings)

    response = client.get("/readyz")

    assert response.status_code == 200, response.json()
    assert set(response.json()["checks"]) == {"database", "redis", "batch:default", "storage"}


def test_readiness_refuses_a_post(client):
    assert client.post("/readyz").status_code == 405

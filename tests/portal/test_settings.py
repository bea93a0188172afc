"""The Celery broker choice: Redis when it answers, else the filesystem broker."""

import os
import socket

import pytest

from portal.settings import celery_broker

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def closed_port() -> int:
    # Bind and release: nothing listens on this port afterwards.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_picks_redis_when_it_answers(tmp_path):
    url, options, reason = celery_broker(REDIS_URL, tmp_path / "broker")

    assert url == REDIS_URL, f"Redis must answer at {REDIS_URL} for this test: {reason}"
    assert options == {}
    assert not (tmp_path / "broker").exists()


def test_falls_back_to_the_filesystem_broker_on_a_closed_port(tmp_path):
    redis_url = f"redis://127.0.0.1:{closed_port()}/0"

    url, options, reason = celery_broker(redis_url, tmp_path / "broker")

    assert url == "filesystem://"
    assert f"no Redis answers at {redis_url}" in reason
    assert options["data_folder_in"] == options["data_folder_out"] == str(tmp_path / "broker" / "queue")
    for key in ("data_folder_in", "processed_folder", "control_folder"):
        assert os.path.isdir(options[key])


def test_filesystem_broker_carries_a_message_between_connections(tmp_path):
    kombu = pytest.importorskip("kombu")
    url, options, _ = celery_broker(f"redis://127.0.0.1:{closed_port()}/0", tmp_path / "broker")
    queue = kombu.Queue("sync", kombu.Exchange("sync"), routing_key="sync")

    with kombu.Connection(url, transport_options=options) as producer:
        producer.Producer().publish({"pk": 7}, exchange=queue.exchange, routing_key="sync", declare=[queue])
    with kombu.Connection(url, transport_options=options) as consumer:
        message = consumer.SimpleQueue(queue).get(timeout=5)

    assert message.payload == {"pk": 7}
    message.ack()

"""A Redis ack that times out still frees its prefetch slot (regsearch/messaging/redis_transport.py).

Against the local Redis: the cluster test (tests/cluster/test_faults.py::
test_broker_unreachable_from_a_worker_host) shows the same thing end to end, where namespaces exist.
"""

from __future__ import annotations

import logging
import uuid

import pytest
import redis
from kombu import Consumer, Queue

from regsearch.config import Settings
from regsearch.messaging.queue import make_celery
from regsearch.messaging.redis_transport import Channel

BROKER = "redis://127.0.0.1:6379/0"


class _TimesOut:
    def execute(self) -> None:
        raise redis.exceptions.TimeoutError("Timeout reading from socket")


def _ping() -> bool:
    try:
        return bool(redis.Redis.from_url(BROKER, socket_connect_timeout=1).ping())
    except redis.exceptions.ConnectionError:
        return False


@pytest.mark.skipif(not _ping(), reason="no Redis on 127.0.0.1:6379")
def test_an_ack_that_times_out_frees_the_prefetch_slot_and_is_logged(monkeypatch, caplog) -> None:
    app = make_celery(Settings(broker_url=BROKER))
    queue = Queue(f"regsearch-test-ack-{uuid.uuid4().hex}")
    received = []
    with app.connection_for_write() as conn:
        channel = conn.channel()
        assert isinstance(channel, Channel)
        try:
            channel.basic_qos(prefetch_size=0, prefetch_count=1)
            with Consumer(channel, queues=[queue], callbacks=[lambda body, msg: received.append(msg)],
                          accept=["json"]):
                conn.Producer(channel).publish({"trial": 1}, routing_key=queue.name, declare=[queue],
                                               serializer="json")
                conn.drain_events(timeout=5)
                assert len(received) == 1 and not channel.qos.can_consume()
                real = channel.qos._remove_from_indices
                monkeypatch.setattr(channel.qos, "_remove_from_indices", lambda tag, pipe=None: _TimesOut())
                with caplog.at_level(logging.CRITICAL, logger="test"):
                    received[0].ack_log_error(logging.getLogger("test"), conn.connection_errors)
                assert channel.qos.can_consume()  # kombu's own QoS keeps the slot taken for good
                assert "Timeout reading" in caplog.text
                real(received[0].delivery_tag).execute()  # tidy: the index entry the fault left
        finally:
            queue(channel).delete()
            channel.close()

"""kombu's Redis transport, with a failed acknowledgement that still frees its prefetch slot.

kombu's Redis ``QoS.ack`` first removes the message from the unacked index in Redis and only
then forgets the delivery locally. When Redis does not answer in time (a silent partition),
the removal raises, Celery's ``ack_log_error`` logs and swallows the error, and the delivery
stays counted against the prefetch limit for good: with ``worker_prefetch_multiplier=1`` a
worker whose every slot leaked this way never issues BRPOP again, though its connection
recovers (tests/cluster/test_faults.py::test_broker_unreachable_from_a_worker_host).

Here the local slot is released whatever Redis answered, and the error still reaches the
caller (and the log). The message left in the unacked index is restored to the queue after the
visibility timeout and delivered again; the trial's claim refuses the duplicate
(docs/operations.md), so at-least-once delivery is kept and nothing is run twice.
"""

from __future__ import annotations

from kombu.transport import redis, virtual


class QoS(redis.QoS):
    def ack(self, delivery_tag: str) -> None:
        try:
            self._remove_from_indices(delivery_tag).execute()
        finally:
            virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            if requeue:
                self.restore_by_tag(delivery_tag, leftmost=True)
            else:
                self._remove_from_indices(delivery_tag).execute()
        finally:
            virtual.QoS.ack(self, delivery_tag)


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel


TRANSPORT = f"{__name__}:Transport"

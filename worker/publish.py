"""A worker publishes the model families it offers (``regsearch.store.families``).

When the Celery worker is ready (its pool has forked), a daemon thread of the parent loads the
family registry (built-ins and the installed ``regsearch.models`` plugins: this imports torch,
after the fork, so no child inherits anything of it but the modules), writes one row per family
under the worker's node name, refreshes them every ``REFRESH_S`` and deletes them when the worker
shuts down. The torch-free API validates ``model.family`` (and a plugin's knobs, against the JSON
schema published here) with these rows.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from regsearch.config import Settings
from regsearch.domain.trainers import SOURCE as TRAINER_SOURCE
from regsearch.store import families as store
from regsearch.store.db import Database

log = logging.getLogger(__name__)


def describe_families() -> list[dict[str, Any]]:
    """``[{name, knobs (JSON schema), slots_doc, source}]`` of every family this process can build.

    ``auto``'s also has ``networks``: ``{name: {entry_point, error}}`` of the installed
    ``regsearch.networks`` entry points, each loaded (not made: that needs the data's shape), so
    the API refuses at submit a network no worker has, or one that does not load (``error``).
    """
    from regsearch.worker.families import all_families

    described = [
        {"name": name, "knobs": family.info.knobs.model_json_schema(), "slots_doc": family.info.slots_doc,
         "source": family.source}
        for name, family in all_families().items()
    ]
    for item in described:
        if item["name"] == "auto":
            try:
                from regsearch.worker.families.auto import installed_networks

                item["networks"] = installed_networks()
                for network, found in item["networks"].items():
                    if found["error"]:
                        log.warning("network %r (%s) does not load: %s", network, found["entry_point"], found["error"])
            except Exception as exc:  # noqa: BLE001 - left out: unknown, so the API does not refuse
                log.warning("could not list the installed networks: %s", exc)
    return described


def trainer_rows() -> list[dict[str, Any]]:
    """This worker's trainer plugins (``regsearch.worker.trainers``) as rows of the same table:
    ``source`` ``trainer``, the ``Options`` schema as ``knobs``, the description as ``slots_doc``."""
    from regsearch.worker.trainers import describe_trainers

    try:
        return [{"name": t["name"], "knobs": t["options"], "slots_doc": t["doc"], "source": TRAINER_SOURCE}
                for t in describe_trainers()]
    except Exception as exc:  # noqa: BLE001 - the families are still published
        log.warning("could not list the installed trainers: %s", exc)
        return []


class FamilyPublisher:
    """Publishes, refreshes and finally withdraws one worker's families (one daemon thread)."""

    def __init__(self, settings: Settings, *, refresh_s: float = store.REFRESH_S) -> None:
        self.url = settings.sqlalchemy_url
        self.refresh_s = refresh_s
        self.stop = threading.Event()
        self.worker: str | None = None
        self.thread: threading.Thread | None = None

    def start(self, worker: str) -> None:
        self.worker = worker
        self.thread = threading.Thread(target=self._run, name="regsearch-families", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.worker is not None
        families: list[dict[str, Any]] | None = None
        db = Database(self.url)
        try:
            while not self.stop.is_set():
                try:
                    if families is None:
                        families = describe_families() + trainer_rows()
                        store.publish(db, self.worker, families)
                        log.info("offering families: %s", ", ".join(f["name"] for f in families
                                                                    if f["source"] != TRAINER_SOURCE))
                        log.info("offering trainers: %s", ", ".join(["builtin"] + [
                            f["name"] for f in families if f["source"] == TRAINER_SOURCE]))
                    elif store.touch(db, self.worker) == 0:
                        store.publish(db, self.worker, families)
                except Exception as exc:  # noqa: BLE001 - the next round retries; trials go on
                    log.warning("could not publish this worker's families: %s", exc)
                finally:
                    db.dispose()  # no pooled socket for a later-forked pool process to inherit
                self.stop.wait(self.refresh_s)
        finally:
            db.dispose()

    def shutdown(self) -> None:
        self.stop.set()
        if self.worker is None:
            return
        db = Database(self.url)
        try:
            store.withdraw(db, self.worker)
        except Exception as exc:  # noqa: BLE001 - its rows age out anyway
            log.warning("could not withdraw this worker's families: %s", exc)
        finally:
            db.dispose()


def install(settings: Settings) -> FamilyPublisher:
    """Connect a publisher to this process's Celery worker signals (ready, shutdown)."""
    from celery.signals import worker_ready, worker_shutdown

    publisher = FamilyPublisher(settings)

    def on_ready(sender: Any = None, **_: Any) -> None:
        name = getattr(sender, "hostname", None) or f"{socket.gethostname()}-{os.getpid()}"
        publisher.start(str(name))

    def on_shutdown(**_: Any) -> None:
        publisher.shutdown()

    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
    return publisher

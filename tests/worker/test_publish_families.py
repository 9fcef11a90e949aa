"""A worker publishes the families it offers: rows written when ready, refreshed, withdrawn."""

from __future__ import annotations

import time

from regsearch.config import Settings
from regsearch.store import families as store
from regsearch.store.db import Database
from regsearch.worker.publish import FamilyPublisher, describe_families


def test_describe_families_gives_every_built_in_with_its_schema() -> None:
    described = {f["name"]: f for f in describe_families()}
    assert {"mlp", "cnn", "resnet", "vgg"} <= set(described)
    assert described["resnet"]["knobs"]["properties"]["depth"]["default"] == 8
    assert all(f["source"] in ("builtin", "plugin") and f["slots_doc"] for f in described.values())


def test_the_publisher_writes_refreshes_and_withdraws(db: Database) -> None:
    publisher = FamilyPublisher(Settings(database_url=db.url), refresh_s=0.2)
    publisher.start("regsearch-1@test")
    deadline = time.monotonic() + 60
    while not store.offered(db) and time.monotonic() < deadline:
        time.sleep(0.1)
    first = store.offered(db)
    assert {"mlp", "vgg"} <= set(first) and first["mlp"]["workers"] == ["regsearch-1@test"]
    time.sleep(0.6)
    assert store.offered(db)["mlp"]["seen_at"] > first["mlp"]["seen_at"], "refreshed while it runs"
    publisher.shutdown()
    assert publisher.thread is not None
    publisher.thread.join(5)
    assert store.offered(db) == {} and set(store.offered(db, live_s=None)) == set(first)


def test_auto_is_published_with_the_installed_networks(db: Database) -> None:
    from tests.example_packages import install_example

    install_example("networks", "regsearch-example-networks")
    described = {f["name"]: f for f in describe_families()}
    networks = described["auto"]["networks"]
    assert networks["vgg_seq"] == {"entry_point": "regsearch_example_networks:vgg_seq", "error": None}
    assert "networks" not in described["mlp"]
    store.publish(db, "w1@host", described.values())
    offered = store.offered(db)
    assert offered["auto"]["networks"] == networks
    assert offered["auto"]["knobs"] == described["auto"]["knobs"], "stored in knobs, taken out again"
    assert "networks" not in offered["mlp"]

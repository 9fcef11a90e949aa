"""The trial lifecycle contract, run on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import datetime as dt
import threading

import optuna
import pytest
from sqlalchemy import inspect, text

from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.spec import validate_spec
from regsearch.store import jobs as job_store
from regsearch.store import trials as trial_store
from regsearch.store.db import Database, StoreUnavailable
from regsearch.store.migrate import current_revision
from regsearch.store.studies import optuna_storage

SPEC = validate_spec({"name": "store", "dataset": {"name": "digits"}, "budget": {"n_trials": 3}})


def epoch(n: int, val_acc: float = 0.5) -> EpochMetrics:
    return EpochMetrics(epoch=n, train_loss=1.0, train_acc=0.6, val_loss=1.1, val_acc=val_acc, seconds=0.1)


def new_trial(db: Database, number: int = 0) -> tuple[str, int]:
    job = job_store.create_job(db, spec=SPEC).job
    return job.id, trial_store.add_trial(db, job_id=job.id, number=number, optuna_trial_id=number + 1, params={"placement": "act"})


def test_migrations_use_their_own_version_table(db: Database) -> None:
    from alembic.script import ScriptDirectory

    from regsearch.store.migrate import alembic_config

    assert current_revision(db.url) == ScriptDirectory.from_config(alembic_config(db.url)).get_current_head()
    optuna_storage(db.url)  # Optuna stamps its own alembic_version beside ours
    tables = set(inspect(db.engine).get_table_names())
    assert {"regsearch_jobs", "regsearch_trials", "regsearch_epochs", "regsearch_alembic_version", "alembic_version", "studies"} <= tables


def test_the_migrations_build_exactly_the_models_schema(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from regsearch.store.models import Base

    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    ours = [d for d in diff if "regsearch_" in repr(d) and "regsearch_alembic_version" not in repr(d)]
    assert ours == []


def test_a_job_comes_with_its_study_and_an_idempotency_key_returns_it(db: Database) -> None:
    first = job_store.create_job(db, spec=SPEC, idempotency_key="abc")
    again = job_store.create_job(db, spec=SPEC, idempotency_key="abc")
    assert first.created and not again.created and again.job.id == first.job.id
    names = [s.study_name for s in optuna.get_all_study_summaries(optuna_storage(db.url))]
    assert names.count(first.job.study_name) == 1 and len(names) == 1


def test_claim_is_atomic_and_exactly_one_of_many_wins(db: Database) -> None:
    _, trial_id = new_trial(db)
    claims: list[object] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        claims.append(trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu"))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(c, trial_store.Claim) for c in claims) == 1


def test_concurrent_claims_of_different_trials_never_exceed_the_jobs_parallelism(db: Database) -> None:
    spec = validate_spec({"name": "store", "dataset": {"name": "digits"}, "budget": {"n_trials": 8, "parallelism": 2}})
    job = job_store.create_job(db, spec=spec).job
    ids = [trial_store.add_trial(db, job_id=job.id, number=n, optuna_trial_id=n + 1, params={"placement": "act"})
           for n in range(8)]
    trial_store.mark_sent(db, trial_ids=ids)
    claims: dict[int, object] = {}
    barrier = threading.Barrier(len(ids))

    def race(trial_id: int) -> None:
        barrier.wait()
        claims[trial_id] = trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")

    threads = [threading.Thread(target=race, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [i for i, c in claims.items() if isinstance(c, trial_store.Claim)]
    assert len(won) == 2, claims
    assert all(isinstance(c, trial_store.Deferred) for i, c in claims.items() if i not in won)
    rows = {r.id: r for r in trial_store.job_trials(db, job_id=job.id)}
    assert {rows[i].state for i in won} == {"running"}
    assert all(rows[i].state == "queued" and rows[i].enqueued_at is None for i in ids if i not in won), "refused: unsent"


def test_epochs_upsert_by_trial_and_epoch_and_non_finite_values_become_null(db: Database) -> None:
    job_id, trial_id = new_trial(db)
    claim = trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")
    assert claim is not None
    trial_store.record_epochs(db, trial_id=trial_id, lease=claim.lease, epochs=[epoch(1, 0.4)])
    trial_store.record_epochs(db, trial_id=trial_id, lease=claim.lease, epochs=[epoch(1, 0.45), epoch(2, float("nan"))])
    found = job_store.get_trial(db, job_id=job_id, number=0)
    assert found is not None
    assert [(e.epoch, e.val_acc) for e in found[1]] == [(1, 0.45), (2, None)]
    assert trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state="complete", metrics={"val_acc": 0.45, "val_loss": float("inf")})
    row = job_store.get_trial(db, job_id=job_id, number=0)[0]  # type: ignore[index]
    assert row.metrics == {"val_acc": 0.45, "val_loss": None}


def test_a_late_result_after_reaping_is_kept_as_superseded(db: Database) -> None:
    job_id, trial_id = new_trial(db)
    claim = trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")
    assert claim is not None
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    assert trial_store.fail_stale(db, trial_id=trial_id, older_than=future, reason="worker lost")
    control = trial_store.record_epochs(db, trial_id=trial_id, lease=claim.lease, epochs=[epoch(1)])
    assert not control.owner
    assert not trial_store.finish(db, trial_id=trial_id, lease=claim.lease, state="complete", metrics={"val_acc": 0.9})
    row, epochs = job_store.get_trial(db, job_id=job_id, number=0)  # type: ignore[misc]
    assert row.state == "failed" and row.error == "worker lost" and epochs == []
    assert row.superseded_result["metrics"] == {"val_acc": 0.9}


def test_cancellation_reaches_the_running_trial(db: Database) -> None:
    job_id, trial_id = new_trial(db)
    claim = trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")
    assert claim is not None and not trial_store.beat(db, trial_id=trial_id, lease=claim.lease).cancelled
    job_store.request_cancel(db, job_id=job_id)
    assert trial_store.beat(db, trial_id=trial_id, lease=claim.lease).cancelled


def test_an_unreachable_database_raises_store_unavailable() -> None:
    db = Database("postgresql+psycopg://postgres@127.0.0.1:1/nothing")
    with pytest.raises(StoreUnavailable):
        db.ping()
    with pytest.raises(StoreUnavailable), db.session() as session:
        session.execute(text("SELECT 1"))


def test_sqlite_runs_in_wal_mode(sqlite_db: Database) -> None:
    with sqlite_db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


@pytest.mark.services
def test_fetch_all_keeps_one_connection_and_a_lost_one_is_replaced(pg_url: str) -> None:
    """The pruner's hot read: one kept connection; when the server drops it, the read fails as
    StoreUnavailable (which the callers' retry treats as transient) and the next one reconnects."""
    from sqlalchemy import create_engine, select, text


    db = Database(pg_url)
    pid = select(text("pg_backend_pid()"))
    try:
        first = db.fetch_all(pid)[0][0]
        assert db.fetch_all(pid)[0][0] == first, "the same connection, kept"
        admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        admin.dispose()
        with pytest.raises(StoreUnavailable):
            db.fetch_all(pid)
        assert db.fetch_all(pid)[0][0] != first, "a new connection after the lost one"
    finally:
        db.dispose()


@pytest.mark.services
def test_only_non_durable_sessions_commit_without_waiting_for_the_wal(pg_url: str) -> None:
    """``durable=False`` (claims, epoch rows, heartbeats) runs on connections made with
    synchronous_commit off; every other transaction keeps PostgreSQL's default, on."""
    db = Database(pg_url)
    try:
        with db.session(durable=False) as session:
            assert session.scalar(text("SHOW synchronous_commit")) == "off"
        with db.session() as session:
            assert session.scalar(text("SHOW synchronous_commit")) == "on"
        with db.read() as session:
            assert session.scalar(text("SHOW synchronous_commit")) == "on"
    finally:
        db.dispose()


@pytest.mark.services
def test_a_pool_without_checkout_pings_recovers_through_the_retry(pg_url: str) -> None:
    """The worker's database skips the checkout ping: after the server dropped its pooled
    connections (a restart), one attempt fails as transient and ``with_retry`` reconnects."""
    from sqlalchemy import create_engine

    from regsearch.store.retry import with_retry

    db = Database(pg_url, pre_ping=False)
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        job_id, trial_id = new_trial(db)
        pids = set()
        for durable in (True, False):
            with db.session(durable=durable) as session:
                pids.add(session.scalar(text("SELECT pg_backend_pid()")))
        with admin.connect() as conn:
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        attempts = []

        def claim() -> object:
            attempts.append(1)
            return trial_store.claim(db, trial_id=trial_id, worker="w", device="cpu")

        claimed = with_retry(claim, what="claiming")
        assert isinstance(claimed, trial_store.Claim) and claimed.job_id == job_id
        assert len(attempts) == 2, "the first attempt met the dropped connection, the retry a new one"
        assert with_retry(lambda: trial_store.finish(db, trial_id=trial_id, lease=claimed.lease, state="pruned"),
                          what="finishing")
    finally:
        admin.dispose()
        db.dispose()


def test_a_result_and_optunas_record_are_written_together_and_a_superseded_one_writes_neither(db: Database) -> None:
    from optuna.trial import TrialState

    storage = optuna_storage(db.url)
    job = job_store.create_job(db, spec=SPEC).job
    study_id = storage.get_study_id_from_name(job.study_name)
    ids = [storage.create_new_trial(study_id) for _ in range(2)]
    rows = [trial_store.add_trial(db, job_id=job.id, number=i, optuna_trial_id=ids[i], params={"placement": "act"})
            for i in range(2)]
    claims = [trial_store.claim(db, trial_id=r, worker="w", device="cpu") for r in rows]
    assert all(isinstance(c, trial_store.Claim) for c in claims)
    assert trial_store.finish(db, trial_id=rows[0], lease=claims[0].lease, state="complete", metrics={"val_acc": 0.8},
                              record=trial_store.OptunaOutcome(ids[0], TrialState.COMPLETE, [0.8]))
    assert (storage.get_trial(ids[0]).state, storage.get_trial(ids[0]).values) == (TrialState.COMPLETE, [0.8])
    # A late result (its lease lost) is kept aside; Optuna's record is not touched.
    assert not trial_store.finish(db, trial_id=rows[1], lease="not-the-lease", state="pruned",
                                  record=trial_store.OptunaOutcome(ids[1], TrialState.PRUNED))
    assert storage.get_trial(ids[1]).state == TrialState.RUNNING

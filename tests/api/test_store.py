"""The job table's worker operations against real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from privaudit.api.db import Database, upgrade_schema
from privaudit.api.jobs import JobParams, job_kinds, store
from privaudit.api.jobs.kinds import JobKind
from privaudit.api.keys import create_key


class _Empty(JobParams):
    pass


RESUMABLE = JobKind(
    name="store.resumable", params_model=_Empty, run=lambda c, p: {}, resumable=True
)
FRAGILE = JobKind(name="store.fragile", params_model=_Empty, run=lambda c, p: {})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        import psycopg

        base: str = request.getfixturevalue("postgres_url")
        name = f"store_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        url = base.rsplit("/", 1)[0] + f"/{name}"
    db = Database(url)
    upgrade_schema(db)
    for kind in (RESUMABLE, FRAGILE):
        job_kinds.add(kind.name, kind, replace=True)
    yield db
    for kind in (RESUMABLE, FRAGILE):
        job_kinds.unregister(kind.name)
    db.dispose()


def _tenant(database: Database) -> str:
    with database.session() as session:
        _key, row = create_key(session, tenant=f"t{uuid.uuid4().hex[:8]}")
        return row.tenant_id


def _queue(database: Database, tenant_id: str, kind: JobKind, count: int) -> list[str]:
    ids = []
    with database.write_transaction() as connection:
        for _ in range(count):
            job, created = store.submit(
                connection,
                tenant_id=tenant_id,
                kind=kind,
                params={},
                idempotency_key=None,
                max_attempts=2,
            )
            assert created
            ids.append(job.id)
    return ids


def test_concurrent_workers_claim_every_job_exactly_once(database: Database) -> None:
    ids = _queue(database, _tenant(database), RESUMABLE, 60)
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        while (job := store.claim_next(database, worker_id=f"w{index}")) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)  # none lost, none twice


def test_claims_go_oldest_first(database: Database) -> None:
    ids = _queue(database, _tenant(database), RESUMABLE, 5)
    order = [store.claim_next(database, worker_id="w") for _ in ids]
    assert [job.id for job in order if job] == ids
    assert store.claim_next(database, worker_id="w") is None


def test_a_lost_lease_cannot_write(database: Database) -> None:
    (job_id,) = _queue(database, _tenant(database), RESUMABLE, 1)
    first = store.claim_next(database, worker_id="slow")
    assert first is not None
    time.sleep(0.05)
    assert store.reap_stale(database, stale_after_s=0.01) == {job_id: "queued"}
    second = store.claim_next(database, worker_id="fast")
    assert second is not None
    assert second.attempts == 2
    # The first run wakes up: its progress and completion are refused.
    assert (
        store.report_progress(
            database, job_id=job_id, lease_id=first.lease_id, progress={"stage": "x", "done": 1}
        )
        is None
    )
    assert not store.finish(database, job_id=job_id, lease_id=first.lease_id, status="succeeded")
    assert store.heartbeat(database, {job_id: first.lease_id}) == {}
    assert store.finish(database, job_id=job_id, lease_id=second.lease_id, status="succeeded")


def test_stale_jobs_follow_their_kind(database: Database) -> None:
    tenant = _tenant(database)
    (resumable,) = _queue(database, tenant, RESUMABLE, 1)
    (fragile,) = _queue(database, tenant, FRAGILE, 1)
    assert store.claim_next(database, worker_id="w") is not None
    assert store.claim_next(database, worker_id="w") is not None
    time.sleep(0.05)
    assert store.reap_stale(database, stale_after_s=0.01) == {
        resumable: "queued",
        fragile: "failed",
    }
    # The resumable job gets one more attempt (max_attempts=2), then gives up.
    assert store.claim_next(database, worker_id="w") is not None
    time.sleep(0.05)
    assert store.reap_stale(database, stale_after_s=0.01) == {resumable: "failed"}
    with database.engine.connect() as connection:
        errors = {
            job_id: store.get_job(connection, tenant_id=tenant, job_id=job_id).error
            for job_id in (resumable, fragile)
        }
    assert "gave up after 2 attempts" in errors[resumable]["message"]  # type: ignore[index]
    assert "not resumable" in errors[fragile]["message"]  # type: ignore[index]


def test_fresh_heartbeats_keep_a_job(database: Database) -> None:
    (job_id,) = _queue(database, _tenant(database), FRAGILE, 1)
    job = store.claim_next(database, worker_id="w")
    assert job is not None
    assert store.heartbeat(database, {job_id: job.lease_id}) == {job_id: "running"}
    assert store.reap_stale(database, stale_after_s=60) == {}

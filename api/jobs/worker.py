"""The job worker: claims queued jobs, runs each in its own process, heartbeats for
them, enforces cancellation and time limits, and recovers jobs of dead workers.

One worker process supervises up to ``job_concurrency`` job processes. A job process
writes its own progress and result; the supervisor only leases, heartbeats and
cleans up. Because every job runs in its own process (forked from a clean
``forkserver``), a crash, a cancellation that the job ignores, or a timeout can
always be enforced by killing the process, and nothing a job does can take the
worker down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privaudit.api.db import Database
from privaudit.api.jobs import store
from privaudit.api.jobs._process import (
    BUILTIN_JOB_MODULES,
    die_with_parent,
    load_job_modules,
)
from privaudit.api.jobs.kinds import JobContext, job_kinds
from privaudit.api.settings import Settings
from privaudit.errors import JobCancelledError, PrivauditError
from privaudit.files import write_atomically

__all__ = ["Worker", "run_job_process", "run_worker"]

log = logging.getLogger("privaudit.worker")


@dataclass
class _Run:
    claimed: store.ClaimedJob
    process: multiprocessing.process.BaseProcess
    started: float = field(default_factory=time.monotonic)
    cancel_seen: float | None = None


class Worker:
    """Supervises job processes for one worker; see the module docstring."""

    def __init__(self, settings: Settings, *, worker_id: str | None = None) -> None:
        self.settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.database = Database(settings.resolved_database_url)
        self.database.start_checkpointer()
        self.stop_event = threading.Event()
        self.running: dict[str, _Run] = {}
        # Job processes fork from a server process that has already imported the worker
        # code, the built-in job kinds and the job plugins: a job then starts in
        # milliseconds, not in the seconds of CPU that a fresh interpreter needs for its
        # imports (the membership audit kind imports scipy, pydantic models, ...).
        self._spawn = multiprocessing.get_context("forkserver")
        self._spawn.set_forkserver_preload([__name__, *BUILTIN_JOB_MODULES, *settings.job_plugins])
        self._settings_json = settings.model_dump(mode="json")

    def run(self) -> None:
        """Work until :attr:`stop_event` is set; then give running jobs back."""
        interval = self.settings.poll_interval_s
        last_beat = last_reap = 0.0
        reap_every = min(self.settings.stale_after_s / 2, 10.0)
        log.info("worker %s started", self.worker_id)
        try:
            self._warm_up()
            while not self.stop_event.is_set():
                now = time.monotonic()
                if now - last_reap >= reap_every:
                    for job_id, status in store.reap_stale(
                        self.database, stale_after_s=self.settings.stale_after_s
                    ).items():
                        log.warning("recovered stale job %s -> %s", job_id, status)
                    last_reap = now
                self._collect_exited()
                if now - last_beat >= self.settings.heartbeat_interval_s:
                    self._heartbeat()
                    last_beat = now
                started = self._start_new()
                if not started:
                    self._wait(interval)
        finally:
            self._shutdown()
            self.database.dispose()

    def _warm_up(self) -> None:
        """Start the fork server, and let it import the job kinds, before claiming a job.

        Otherwise the first job's ``process.start()`` would wait for those imports
        (seconds on a busy host) while the worker holds the job's lease without
        heartbeating it, and the job could be taken for stale.
        """
        process = self._spawn.Process(target=_forkserver_ready, name="privaudit-warm-up")
        with _main_script_hidden():
            process.start()
        process.join()

    def _wait(self, timeout: float) -> None:
        """Sleep until a job process exits (its slot frees at once) or ``timeout``."""
        sentinels = [run.process.sentinel for run in self.running.values()]
        if sentinels:
            multiprocessing.connection.wait(sentinels, timeout=timeout)
        else:
            self.stop_event.wait(timeout)

    def _start_new(self) -> bool:
        started = False
        while len(self.running) < self.settings.job_concurrency and not self.stop_event.is_set():
            claimed = store.claim_next(self.database, worker_id=self.worker_id)
            if claimed is None:
                break
            process = self._spawn.Process(
                target=run_job_process,
                args=(claimed.id, claimed.lease_id, self._settings_json),
                name=f"privaudit-job-{claimed.id[:8]}",
                daemon=False,
            )
            with _main_script_hidden():
                process.start()
            self.running[claimed.id] = _Run(claimed, process)
            log.info("job %s (%s) started, attempt %d", claimed.id, claimed.kind, claimed.attempts)
            started = True
        return started

    def _collect_exited(self) -> None:
        for job_id, run in list(self.running.items()):
            if run.process.is_alive():
                continue
            run.process.join()
            code = run.process.exitcode
            # A job process that finished its job already released the lease, so this
            # is a no-op then; otherwise it crashed or was killed.
            status = store.release(
                self.database,
                job_id=job_id,
                lease_id=run.claimed.lease_id,
                reason=f"its process exited unexpectedly (exit code {code})",
            )
            if status is not None:
                log.warning("job %s process exited with %s -> %s", job_id, code, status)
            del self.running[job_id]

    def _heartbeat(self) -> None:
        leases = {job_id: run.claimed.lease_id for job_id, run in self.running.items()}
        statuses = store.heartbeat(self.database, leases)
        now = time.monotonic()
        for job_id, run in list(self.running.items()):
            status = statuses.get(job_id)
            if status is None:
                log.warning("lost the lease of job %s; stopping its process", job_id)
                self._kill(run)
                del self.running[job_id]
            elif status == "cancelling":
                run.cancel_seen = run.cancel_seen or now
                if now - run.cancel_seen > self.settings.cancel_grace_s:
                    self._kill(run)
                    store.release(
                        self.database,
                        job_id=job_id,
                        lease_id=run.claimed.lease_id,
                        reason="it did not stop by itself within the cancel grace period",
                    )
                    del self.running[job_id]
            elif now - run.started > self.settings.job_timeout_s:
                self._kill(run)
                store.finish(
                    self.database,
                    job_id=job_id,
                    lease_id=run.claimed.lease_id,
                    status="failed",
                    error={
                        "code": "limit_exceeded",
                        "message": f"the job ran longer than the limit of "
                        f"{self.settings.job_timeout_s:g} s (PRIVAUDIT_JOB_TIMEOUT_S)",
                    },
                )
                del self.running[job_id]

    @staticmethod
    def _kill(run: _Run) -> None:
        if run.process.is_alive():
            run.process.kill()
        run.process.join(timeout=10)

    def _shutdown(self) -> None:
        for job_id, run in list(self.running.items()):
            self._kill(run)
            status = store.release(
                self.database,
                job_id=job_id,
                lease_id=run.claimed.lease_id,
                reason="the worker was shut down while it ran",
            )
            log.info("job %s given back at shutdown -> %s", job_id, status)
        self.running.clear()


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Within this block, processes started with ``forkserver`` do not re-run this
    process's main script.

    multiprocessing runs the parent's main script again in every child it starts (as
    ``__mp_main__``) when that script is a file: under ``privaudit serve``, the
    ``privaudit`` console script. That costs each job process the script's imports, for
    nothing: job targets live in importable modules. Python 3.11's fork server ignores
    a ``"__main__"`` preload (it never receives the path), so the path is hidden from
    the preparation data instead, while the process starts.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _forkserver_ready() -> None:
    """The warm-up process: nothing to do once the fork server could start it."""


def run_worker(settings_json: dict[str, Any], *, install_signals: bool = True) -> None:
    """Entry point of a worker process (``privaudit worker`` or spawned by ``serve``)."""
    settings = Settings.model_validate(settings_json)
    if settings.job_nice:
        # On a small host, requests go before jobs: the worker, its fork server and every
        # job process it starts inherit this niceness.
        os.nice(settings.job_nice)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    load_job_modules(settings.job_plugins)
    worker = Worker(settings)
    if install_signals:

        def stop(_signum: int, _frame: object) -> None:
            worker.stop_event.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    worker.run()


def run_job_process(job_id: str, lease_id: str, settings_json: dict[str, Any]) -> None:
    """Entry point of a job process: run one leased job to a terminal status."""
    die_with_parent()
    settings = Settings.model_validate(settings_json)
    database = Database(settings.resolved_database_url, pooled=False)
    try:
        _run_job(database, settings, job_id, lease_id)
    finally:
        database.dispose()


def _run_job(database: Database, settings: Settings, job_id: str, lease_id: str) -> None:
    def finish(status: str, error: dict[str, Any] | None = None, ref: str | None = None) -> None:
        store.finish(
            database, job_id=job_id, lease_id=lease_id, status=status, error=error, result_ref=ref
        )

    work_dir: Path | None = None
    try:
        load_job_modules(settings.job_plugins)
        row = _load_claim(database, job_id, lease_id)
        if row is None:
            return  # the lease was lost before we started: nothing is ours to do
        tenant_id, kind_name, params, attempts = row
        kind = job_kinds.get(kind_name)
        work_dir = settings.artifacts_dir / tenant_id / job_id
        work_dir.mkdir(parents=True, exist_ok=True)

        def sink(progress: dict[str, Any] | None) -> bool:
            status = store.report_progress(
                database, job_id=job_id, lease_id=lease_id, progress=progress
            )
            return status != "running"

        context = JobContext(
            job_id=job_id, tenant_id=tenant_id, attempt=attempts, work_dir=work_dir, _sink=sink
        )
        parsed = kind.params_model.model_validate_json(json.dumps(params))
        result = kind.run(context, parsed)
        ref = _write_result(settings.artifacts_dir, work_dir, result or {})
        finish("succeeded", ref=ref)
    except JobCancelledError as error:
        finish("cancelled", {"code": error.code, "message": error.message})
    except PrivauditError as error:
        finish("failed", {"code": error.code, "message": error.message, **_jsonable(error.details)})
    except Exception as error:
        log.exception("job %s failed", job_id)
        finish(
            "failed",
            {"code": "internal_error", "message": f"{type(error).__name__}: {error}"},
        )
        if work_dir is not None:
            with (work_dir / "error.log").open("a") as handle:
                handle.write(traceback.format_exc())


def _load_claim(
    database: Database, job_id: str, lease_id: str
) -> tuple[str, str, dict[str, Any], int] | None:
    from sqlalchemy import select

    from privaudit.api.models import Job

    with database.engine.connect() as connection:
        row = connection.execute(
            select(Job.tenant_id, Job.kind, Job.params, Job.attempts).where(
                Job.id == job_id, Job.lease_id == lease_id
            )
        ).first()
    return None if row is None else (row.tenant_id, row.kind, row.params, row.attempts)


def _write_result(root: Path, work_dir: Path, result: dict[str, Any]) -> str:
    """Write the result atomically; return its path relative to the artifacts root."""
    target = work_dir / "result.json"
    write_atomically(target, json.dumps(result, allow_nan=False, default=_json_default).encode())
    return target.relative_to(root).as_posix()


def _json_default(value: object) -> object:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"job result holds a {type(value).__name__}, which is not JSON")


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(details)
    except TypeError:
        return {}
    return {key: value for key, value in details.items() if key not in {"code", "message"}}

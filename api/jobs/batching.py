"""Group commit for job submissions.

Each submission is one small INSERT, and on a small machine the transaction around it
(a pooled connection, ``BEGIN``, ``COMMIT``, the writer lock) costs more than the
insert itself. :class:`SubmissionWriter` owns one thread that takes every pending
submission off a queue and commits them together in one transaction, so under load a
commit carries many jobs, and request handlers never block a thread while waiting:
they await a future. A job is acknowledged (202) only after its transaction
committed.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

from privaudit.api.db import Database
from privaudit.api.jobs import store
from privaudit.api.jobs.kinds import JobKind
from privaudit.errors import PrivauditError

__all__ = ["SubmissionWriter"]

log = logging.getLogger("privaudit.api")


@dataclass
class _Pending:
    arguments: dict[str, Any]
    future: asyncio.Future[tuple[store.JobRow, bool]]
    loop: asyncio.AbstractEventLoop


class SubmissionWriter:
    """Commit job submissions in batches from one thread.

    Parameters
    ----------
    database
        Where jobs are written.
    max_batch
        Most submissions committed in one transaction.
    """

    def __init__(self, database: Database, *, max_batch: int = 128) -> None:
        self.database = database
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="submission-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    async def submit(
        self,
        *,
        tenant_id: str,
        kind: JobKind,
        params: dict[str, Any],
        idempotency_key: str | None,
        max_attempts: int,
    ) -> tuple[store.JobRow, bool]:
        """Queue one submission and wait until it is committed (see :func:`store.submit`)."""
        if self._thread is None:
            raise RuntimeError("the submission writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[store.JobRow, bool]] = loop.create_future()
        arguments = {
            "tenant_id": tenant_id,
            "kind": kind,
            "params": params,
            "idempotency_key": idempotency_key,
            "max_attempts": max_attempts,
        }
        self._queue.put(_Pending(arguments, future, loop))
        return await future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            try:
                self._commit(batch)
            except Exception:
                # A database error spoils the whole transaction: retry one by one, so
                # only the submission that causes it fails.
                log.exception("batched submission failed; retrying %d one by one", len(batch))
                for pending in batch:
                    try:
                        self._commit([pending])
                    except Exception as failure:
                        self._resolve(pending, None, failure)

    def _commit(self, batch: list[_Pending]) -> None:
        outcomes: list[tuple[_Pending, tuple[store.JobRow, bool] | None, Exception | None]] = []
        with self.database.write_transaction() as connection:
            for pending in batch:
                try:
                    outcomes.append((pending, store.submit(connection, **pending.arguments), None))
                except PrivauditError as error:  # e.g. a reused idempotency key: no write
                    outcomes.append((pending, None, error))
        for pending, result, refusal in outcomes:
            self._resolve(pending, result, refusal)

    @staticmethod
    def _resolve(
        pending: _Pending, result: tuple[store.JobRow, bool] | None, error: Exception | None
    ) -> None:
        def settle() -> None:
            if pending.future.done():  # the client went away
                return
            if error is not None:
                pending.future.set_exception(error)
            else:
                assert result is not None
                pending.future.set_result(result)

        pending.loop.call_soon_threadsafe(settle)

"""Vector collections in the database, and their pre-encoded shards in memory.

A collection's vectors are stored per ingested batch (ids, and the vectors as
little-endian float64, row-major), so a restarted service serves them again. The
pre-encoded shard (a :class:`~privaudit.crypto.vector_search.DataParty`) is rebuilt
from the batches on the first search after a start or an ingest, and kept in a
per-process :class:`ShardCache` bounded by the memory the shards take. Public contexts
are stored per tenant by their SHA-256, and the queries of each API key on each
collection are counted in the database, so a query budget survives restarts.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from privaudit.api.db import Database, utcnow
from privaudit.api.models import VectorBatch, VectorCollection, VectorContext, VectorQueryCount
from privaudit.crypto.vector_search import (
    ContextInfo,
    DataParty,
    ScoreNoise,
    SearchParameters,
    check_context,
    shard_memory_bytes,
)
from privaudit.errors import BudgetExhaustedError, NotFoundError

__all__ = [
    "VECTOR_DTYPE",
    "Shard",
    "ShardCache",
    "build_party",
    "charge_query",
    "check_budget",
    "collection_bytes",
    "load_collection",
    "load_context",
    "noise_of",
    "parameters_of",
    "queries_used",
    "store_context",
]

VECTOR_DTYPE = np.dtype("<f8")
"""How stored vectors are laid out: JSON numbers are doubles, kept exactly."""


def load_collection(
    connection: Connection, tenant_id: str, collection_id: str, *, lock: bool = False
) -> Any:
    """The tenant's collection row; NotFoundError for a missing or foreign one."""
    query = select(VectorCollection).where(
        VectorCollection.id == collection_id, VectorCollection.tenant_id == tenant_id
    )
    row = connection.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFoundError(f"no vector collection {collection_id!r} in this tenant")
    return row


def parameters_of(row: Any) -> SearchParameters:
    """The CKKS parameters a collection was created with."""
    return SearchParameters.from_dict(row.params)


def noise_of(row: Any) -> ScoreNoise | None:
    """The score noise a collection adds, if any."""
    return ScoreNoise(**row.score_noise) if row.score_noise else None


def build_party(database: Database, row: Any, *, max_context_bytes: int) -> tuple[int, DataParty]:
    """Rebuild a collection's shard from its stored batches: (batches read, party).

    The batches are read in one transaction, so the count matches the vectors.
    """
    with database.engine.connect() as connection, connection.begin():
        batches = connection.execute(
            select(VectorBatch.ids, VectorBatch.vectors)
            .where(VectorBatch.collection_id == row.id)
            .order_by(VectorBatch.id)
        ).all()
    party = DataParty(
        party_id=row.id,
        dimension=row.dimension,
        metric=row.metric,
        params=parameters_of(row),
        max_queries_per_querier=None,  # counted per API key in the database
        score_noise=noise_of(row),
        rng=None,  # release randomness (ChaCha20) for the noise
        max_context_bytes=max_context_bytes,
    )
    if batches:
        ids = [item for batch in batches for item in batch.ids]
        vectors = np.concatenate(
            [np.frombuffer(batch.vectors, dtype=VECTOR_DTYPE) for batch in batches]
        ).reshape(len(ids), row.dimension)
        party.ingest(vectors, ids)
    return len(batches), party


@dataclass
class Shard:
    """A cached collection shard: the party, and a lock around its context cache.

    Searches run concurrently on one party; registering a context changes the
    party's context cache, so it takes ``lock``.
    """

    version: int
    size_bytes: int
    party: DataParty
    lock: threading.Lock = field(default_factory=threading.Lock)


class ShardCache:
    """Pre-encoded shards of recently searched collections, bounded by their memory.

    Parameters
    ----------
    max_bytes
        Memory the cached shards may take together (their
        :func:`~privaudit.crypto.vector_search.shard_memory_bytes`); the least
        recently used are dropped first, but the one just built is always kept.

    Notes
    -----
    An entry is valid for one version of its collection (its number of batches): an
    ingest makes the next search rebuild the shard. Only one thread builds a given
    collection at a time; others wait for its result instead of building it again.
    A shard in use by a search stays alive until that search ends, even if dropped.
    """

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Shard] = OrderedDict()
        self._lock = threading.Lock()
        self._build_locks = [threading.Lock() for _ in range(32)]

    def get(
        self,
        collection_id: str,
        version: int,
        *,
        size_bytes: int,
        build: Callable[[], tuple[int, DataParty]],
    ) -> Shard:
        """The shard of ``collection_id`` at ``version``, built by ``build`` if needed."""
        shard = self._lookup(collection_id, version)
        if shard is not None:
            return shard
        stripe = zlib.crc32(collection_id.encode()) % len(self._build_locks)
        with self._build_locks[stripe]:
            shard = self._lookup(collection_id, version)
            if shard is not None:
                return shard
            built_version, party = build()
            shard = Shard(built_version, size_bytes, party)
            with self._lock:
                self._entries[collection_id] = shard
                self._entries.move_to_end(collection_id)
                while len(self._entries) > 1 and self.size_bytes > self.max_bytes:
                    self._entries.popitem(last=False)
        return shard

    def _lookup(self, collection_id: str, version: int) -> Shard | None:
        with self._lock:
            shard = self._entries.get(collection_id)
            if shard is None or shard.version != version:
                return None
            self._entries.move_to_end(collection_id)
            return shard

    def discard(self, collection_id: str) -> None:
        """Forget a collection (it was deleted)."""
        with self._lock:
            self._entries.pop(collection_id, None)

    @property
    def size_bytes(self) -> int:
        """Memory the cached shards take (by :func:`shard_memory_bytes`)."""
        return sum(entry.size_bytes for entry in self._entries.values())


def collection_bytes(row: Any, size: int | None = None) -> int:
    """Memory a collection's shard takes when ``size`` (default: its size) vectors."""
    count = row.size if size is None else size
    return shard_memory_bytes(count, row.dimension, parameters_of(row))


# --- public contexts ------------------------------------------------------------------


def store_context(
    database: Database, tenant_id: str, body: bytes, *, max_bytes: int, max_contexts: int
) -> tuple[ContextInfo, bool]:
    """Check a context and keep it for the tenant: (what it is, whether it is new).

    A tenant keeps at most ``max_contexts``; registering another drops the oldest
    (a querier that used it is told to register it again).
    """
    info = check_context(body, max_bytes=max_bytes)
    try:
        return info, _insert_context(database, tenant_id, info, body, max_contexts)
    except IntegrityError:  # a concurrent request registered the same context first
        return info, False


def _insert_context(
    database: Database, tenant_id: str, info: ContextInfo, body: bytes, max_contexts: int
) -> bool:
    with database.write_transaction() as connection:
        known = connection.execute(
            select(VectorContext.id).where(
                VectorContext.tenant_id == tenant_id, VectorContext.id == info.context_id
            )
        ).first()
        if known is not None:
            # Registering again renews it: the oldest-first eviction spares it longer.
            connection.execute(
                update(VectorContext)
                .where(VectorContext.tenant_id == tenant_id, VectorContext.id == info.context_id)
                .values(created_at=utcnow())
            )
            return False
        connection.execute(
            insert(VectorContext).values(
                tenant_id=tenant_id,
                id=info.context_id,
                kernel=info.kernel,
                dimension=info.dimension,
                body=bytes(body),
                created_at=utcnow(),
            )
        )
        kept = (
            select(VectorContext.id)
            .where(VectorContext.tenant_id == tenant_id)
            .order_by(VectorContext.created_at.desc(), VectorContext.id)
            .limit(max_contexts)
        )
        connection.execute(
            delete(VectorContext).where(
                VectorContext.tenant_id == tenant_id,
                VectorContext.id.not_in(kept.scalar_subquery()),
            )
        )
    return True


def load_context(database: Database, tenant_id: str, context_id: str) -> bytes:
    """A registered context's bytes; NotFoundError telling the client to register it."""
    with database.engine.connect() as connection:
        body = connection.execute(
            select(VectorContext.body).where(
                VectorContext.tenant_id == tenant_id, VectorContext.id == context_id
            )
        ).scalar_one_or_none()
    if body is None:
        raise NotFoundError(
            f"unknown public context {context_id!r}: register it first with "
            "POST /v1/vector/contexts (contexts are kept per tenant, oldest dropped first)",
            context_id=context_id,
        )
    return bytes(body)


# --- query budgets --------------------------------------------------------------------


def queries_used(connection: Connection, collection_id: str, key_id: str) -> int:
    """Queries ``key_id`` has made on the collection."""
    used = connection.execute(
        select(VectorQueryCount.used).where(
            VectorQueryCount.collection_id == collection_id, VectorQueryCount.key_id == key_id
        )
    ).scalar_one_or_none()
    return int(used or 0)


def _exhausted(row: Any, key_id: str) -> BudgetExhaustedError:
    return BudgetExhaustedError(
        f"this API key has used its {row.max_queries_per_key} queries on collection "
        f"{row.id!r}; each query reveals every score of the collection, so the budget "
        "does not refill (the collection's owner sets it at creation)",
        key_id=key_id,
        limit=row.max_queries_per_key,
    )


def check_budget(connection: Connection, row: Any, key_id: str) -> None:
    """Refuse a query before any work when the key's budget is spent."""
    limit = row.max_queries_per_key
    if limit is not None and queries_used(connection, row.id, key_id) >= limit:
        raise _exhausted(row, key_id)


def charge_query(database: Database, row: Any, key_id: str) -> int:
    """Count one query of ``key_id`` atomically; BudgetExhaustedError if none is left.

    Called after the answer is computed and before it is returned, so concurrent
    queries never release more answers than the budget allows. Returns the count.
    """
    limit = row.max_queries_per_key
    match = (VectorQueryCount.collection_id == row.id) & (VectorQueryCount.key_id == key_id)
    for _attempt in range(2):
        try:
            with database.write_transaction() as connection:
                condition = match if limit is None else match & (VectorQueryCount.used < limit)
                changed = connection.execute(
                    update(VectorQueryCount)
                    .where(condition)
                    .values(used=VectorQueryCount.used + 1)
                    .returning(VectorQueryCount.used)
                ).scalar_one_or_none()
                if changed is not None:
                    return int(changed)
                exists = connection.execute(
                    select(func.count()).select_from(VectorQueryCount).where(match)
                ).scalar_one()
                if exists:
                    raise _exhausted(row, key_id)
                connection.execute(
                    insert(VectorQueryCount).values(collection_id=row.id, key_id=key_id, used=1)
                )
                return 1
        except IntegrityError:  # another request inserted the first count meanwhile
            continue
    # Both inserts failed: the collection itself is gone (its row is the foreign key).
    raise NotFoundError(f"vector collection {row.id!r} was deleted while the query ran")

"""Continual-release streams: create a counter, append items, read its private running sums.

A stream is one counter of :mod:`privaudit.mechanisms.continual` with a fixed horizon
``T`` and privacy parameters; every item appended gets a release, the private sum of
the items so far. The counter's state (the exact sums still in use and the noise
already released through them, :class:`~privaudit.mechanisms.continual.CounterState`)
is stored with the stream, and each batch writes its releases, its idempotency key and
the new state in one transaction that holds the stream's row (``FOR UPDATE`` on
PostgreSQL, the write lock on SQLite) and applies only to the row version it read.
Hence:

* a restart continues the same stream: no node that has influenced a release ever gets
  new noise (two independent noisy views of one sum would leak it);
* a batch is counted once: a retry with the same ``Idempotency-Key`` gets the releases
  first given; the same key with other items is a conflict;
* two concurrent batches cannot both take the same positions.

A batch is validated whole (every item a finite number in [0, 1], at most
``stream_max_items_per_batch`` of them) before anything is applied, and a stream
refuses a batch that would pass its horizon, saying how many items still fit. The
stored state is as sensitive as the items and is never sent to a client.
"""

import hashlib
import json
import logging
import math
import uuid
from datetime import datetime
from types import SimpleNamespace
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from privaudit.api.db import Database, immediate_transaction, utcnow
from privaudit.api.deps import DatabaseDep, SettingsDep, require_scope
from privaudit.api.keys import Principal, register_scope
from privaudit.api.models import Stream, StreamBatch, StreamRelease
from privaudit.api.routes._responses import problems
from privaudit.api.routes._tenancy import load_owned
from privaudit.api.routing import JSONSchemaRoute
from privaudit.api.schemas import StrictRequest
from privaudit.errors import (
    ConflictError,
    LimitExceededError,
    ParameterError,
    PrivauditError,
)
from privaudit.mechanisms.continual import ContinualCounter
from privaudit.mechanisms.continual._base import MAX_HORIZON
from privaudit.registry import mechanisms

__all__ = ["COUNTERS", "router"]

log = logging.getLogger("privaudit.api.streams")

register_scope("streams:write", "create continual-release streams and append items")
register_scope("streams:read", "read continual-release streams and their releases")

router = APIRouter(
    prefix="/v1/streams",
    tags=["streams"],
    responses=problems(401, 403, 413, 422, 500),
    route_class=JSONSchemaRoute,
)

Reader = Annotated[Principal, Depends(require_scope("streams:read"))]
Writer = Annotated[Principal, Depends(require_scope("streams:write"))]

MAX_ITEMS_PER_BATCH = 100_000  # the schema's bound; stream_max_items_per_batch may be lower
DEFAULT_RELEASE_PAGE = 100

COUNTERS: dict[str, type[ContinualCounter]] = {
    name: cls
    for name in mechanisms.names()
    if isinstance(cls := mechanisms.get(name), type) and issubclass(cls, ContinualCounter)
}
"""The mechanisms a stream may use, by registry name."""

MechanismName = Literal[tuple(sorted(COUNTERS))]  # type: ignore[valid-type]

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[\x21-\x7e]{1,255}$",
        description="Names the batch: a retry with the same key gets the same releases and "
        "counts nothing twice.",
    ),
]


class StreamCreate(StrictRequest):
    """Start a stream: a counter, its horizon and exactly one noise choice."""

    mechanism: MechanismName = Field(  # type: ignore[valid-type]
        description="continual.tree (the binary mechanism), continual.honaker (the tree "
        "with Honaker's online estimator), continual.sqrt_toeplitz (square-root "
        "factorization: the smallest variance, O(T) state) or continual.blt (a buffered "
        "fit of it: within 1% of that variance, O(1) state); see docs/continual.md."
    )
    horizon: int = Field(
        ge=1,
        le=MAX_HORIZON,
        description="T, how many items the stream may ever hold; the guarantee covers all "
        "T releases, fixed now.",
    )
    epsilon: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Discrete Laplace noise: the T releases together are ε-DP.",
    )
    noise_multiplier: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="σ, discrete Gaussian noise: the T releases together are ρ-zCDP with "
        "ρ = 1/(2σ²).",
    )


class StreamItems(StrictRequest):
    """Items to append, in order."""

    items: list[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] = Field(
        min_length=1,
        max_length=MAX_ITEMS_PER_BATCH,
        description="Each a finite number in [0, 1]; one bad item rejects the batch.",
    )


class ReleaseOut(BaseModel):
    t: int = Field(description="The item's position, 1-based.")
    value: float = Field(description="The private running sum after item t.")
    standard_error: float = Field(
        description="The exact standard deviation of the release's noise (data-independent)."
    )


class StreamLinks(BaseModel):
    self: str
    items: str


class StreamOut(BaseModel):
    """A stream: its parameters, guarantee, error, progress and a page of releases."""

    id: str
    mechanism: str
    horizon: int
    epsilon: float | None
    noise_multiplier: float | None
    guarantee: dict[str, Any] = Field(
        description="The privacy guarantee of all T releases together (ε-DP or ρ-zCDP)."
    )
    sensitivity: float
    sensitivity_norm: Literal["l1", "l2"]
    grid_bits: int = Field(description="Items are snapped to multiples of 2^-grid_bits.")
    max_variance: float = Field(description="The largest release variance over t = 1..T.")
    max_standard_error: float
    items: int = Field(description="Items appended so far.")
    remaining: int = Field(description="Items that still fit before the horizon.")
    batches: int
    releases: list[ReleaseOut] = Field(description="Releases with t > after, oldest first.")
    next_after: int | None = Field(
        description="Pass as ?after= for the next page of releases; null on the last page."
    )
    created_at: datetime
    updated_at: datetime
    links: StreamLinks


class StreamBatchOut(BaseModel):
    stream_id: str
    duplicate: bool = Field(description="True when this Idempotency-Key was already applied.")
    first_t: int = Field(description="The position of the batch's first item.")
    releases: list[ReleaseOut] = Field(description="One release per item of the batch.")
    items: int = Field(description="Items in the stream now.")
    remaining: int = Field(description="Items that still fit before the horizon now.")


def _counter_class(name: str) -> type[ContinualCounter]:
    try:
        return COUNTERS[name]
    except KeyError:
        raise ParameterError(
            f"mechanism {name!r} is not a continual counter; choose one of {sorted(COUNTERS)}"
        ) from None


def _largest_horizon(cls: type[ContinualCounter], max_numbers: int, max_horizon: int) -> int:
    """The largest T whose state stays within ``max_numbers`` (bounds grow with T)."""
    low, high = 0, max_horizon
    while low < high:
        middle = (low + high + 1) // 2
        if cls.state_size_bound(middle) <= max_numbers:
            low = middle
        else:
            high = middle - 1
    return low


def _analytics(row: Any) -> ContinualCounter:
    """A fresh counter of the stream's parameters, for its data-independent properties."""
    cls = _counter_class(row.mechanism)
    return cls(T=row.horizon, epsilon=row.epsilon, noise_multiplier=row.noise_multiplier)


def _restore(row: Any) -> ContinualCounter:
    """The stream's counter as stored: the same released noise, new noise from the CSPRNG."""
    try:
        return ContinualCounter.from_state(json.loads(row.state), draw_ahead=1)
    except (ParameterError, ValueError) as error:
        # The message may quote stored numbers (exact sums): log it, do not return it.
        log.error("stream %s: stored state cannot be restored: %s", row.id, error)
        raise PrivauditError(
            f"the stored state of stream {row.id} cannot be restored by this version of "
            "privaudit (the server log says why); the stream cannot continue"
        ) from None


def _dump_state(counter: ContinualCounter) -> str:
    return json.dumps(counter.state().to_dict(), allow_nan=False, separators=(",", ":"))


def _load(connection: Connection, tenant_id: str, stream_id: str, *, lock: bool = False) -> Any:
    return load_owned(connection, Stream, tenant_id, stream_id, what="stream", lock=lock)


def _releases(
    connection: Connection, counter: ContinualCounter, stream_id: str, after: int, limit: int
) -> list[ReleaseOut]:
    rows = connection.execute(
        select(StreamRelease.t, StreamRelease.value)
        .where(StreamRelease.stream_id == stream_id, StreamRelease.t > after)
        .order_by(StreamRelease.t)
        .limit(limit)
    ).all()
    return [
        ReleaseOut(t=t, value=value, standard_error=math.sqrt(counter.variance(t)))
        for t, value in rows
    ]


def _stream_out(
    row: Any, counter: ContinualCounter, releases: list[ReleaseOut], next_after: int | None
) -> StreamOut:
    base = f"/v1/streams/{row.id}"
    max_variance = counter.max_variance()
    return StreamOut(
        id=row.id,
        mechanism=row.mechanism,
        horizon=row.horizon,
        epsilon=row.epsilon,
        noise_multiplier=row.noise_multiplier,
        guarantee=counter.guarantee.to_dict(),
        sensitivity=counter.sensitivity,
        sensitivity_norm=counter.sensitivity_norm,
        grid_bits=counter.grid_bits,
        max_variance=max_variance,
        max_standard_error=math.sqrt(max_variance),
        items=row.items,
        remaining=row.horizon - row.items,
        batches=row.batches,
        releases=releases,
        next_after=next_after,
        created_at=row.created_at,
        updated_at=row.updated_at,
        links=StreamLinks(self=base, items=f"{base}/items"),
    )


@router.post("", status_code=201, response_model=StreamOut)
def create_stream(
    body: StreamCreate, principal: Writer, database: DatabaseDep, settings: SettingsDep
) -> Response:
    """Create a stream; its privacy guarantee covers all ``horizon`` releases, fixed now."""
    cls = _counter_class(body.mechanism)
    if body.horizon > settings.stream_max_horizon:
        raise LimitExceededError(
            f"horizon {body.horizon} is above this service's limit of "
            f"{settings.stream_max_horizon} items per stream",
            limit=settings.stream_max_horizon,
        )
    numbers = cls.state_size_bound(body.horizon)
    if numbers > settings.stream_max_state_numbers:
        largest = _largest_horizon(
            cls, settings.stream_max_state_numbers, settings.stream_max_horizon
        )
        raise LimitExceededError(
            f"a {body.mechanism} stream of horizon {body.horizon} keeps up to {numbers} "
            f"numbers of state; this service stores at most {settings.stream_max_state_numbers} "
            f"per stream. Use a horizon of at most {largest}, or continual.blt (O(1) "
            "state), continual.tree or continual.honaker (O(log T) state).",
            limit=settings.stream_max_state_numbers,
            largest_horizon=largest,
        )
    counter = cls(
        T=body.horizon, epsilon=body.epsilon, noise_multiplier=body.noise_multiplier, draw_ahead=1
    )
    now = utcnow()
    values = {
        "id": uuid.uuid4().hex,
        "tenant_id": principal.tenant_id,
        "mechanism": body.mechanism,
        "horizon": counter.T,
        "epsilon": counter.epsilon,
        "noise_multiplier": counter.noise_multiplier,
        "items": 0,
        "batches": 0,
        "version": 0,
        "state": _dump_state(counter),
        "created_at": now,
        "updated_at": now,
    }
    out = _stream_out(SimpleNamespace(**values), counter, [], None)  # fails before storing
    with database.write_transaction() as connection:
        connection.execute(insert(Stream).values(**values))
    return Response(
        out.model_dump_json(),
        status_code=201,
        media_type="application/json",
        headers={"Location": out.links.self},
    )


@router.get("/{stream_id}", response_model=StreamOut, responses=problems(404))
def get_stream(
    stream_id: str,
    principal: Reader,
    database: DatabaseDep,
    settings: SettingsDep,
    after: Annotated[
        int, Query(ge=0, le=MAX_HORIZON, description="Return releases with t > after.")
    ] = 0,
    limit: Annotated[
        int,
        Query(
            ge=0,
            le=1000,
            description="Most releases returned (capped at the server's max_page_size).",
        ),
    ] = DEFAULT_RELEASE_PAGE,
) -> Response:
    """A stream's parameters, guarantee, per-step error and a page of its releases."""
    limit = min(limit, settings.max_page_size)
    with database.engine.connect() as connection:
        row = _load(connection, principal.tenant_id, stream_id)
        counter = _analytics(row)
        # One more than the page: whether another page follows, whatever was appended
        # between the two reads.
        releases = _releases(connection, counter, stream_id, after, limit + 1)
    more = len(releases) > limit
    releases = releases[:limit]
    next_after = (releases[-1].t if releases else after) if more else None
    return Response(
        _stream_out(row, counter, releases, next_after).model_dump_json(),
        media_type="application/json",
    )


@router.post("/{stream_id}/items", response_model=StreamBatchOut, responses=problems(404, 409))
def append_items(
    stream_id: str,
    body: StreamItems,
    principal: Writer,
    database: DatabaseDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Append items and return their releases; validated whole, applied atomically, once."""
    n = len(body.items)
    if n > settings.stream_max_items_per_batch:
        raise LimitExceededError(
            f"a batch holds at most {settings.stream_max_items_per_batch} items; this one has "
            f"{n}. Split it into batches, each with its own Idempotency-Key.",
            limit=settings.stream_max_items_per_batch,
        )
    items = [float(x) for x in body.items]
    digest = hashlib.sha256(json.dumps(items).encode()).hexdigest()
    try:
        out = _append(database, principal.tenant_id, stream_id, idempotency_key, items, digest)
    except IntegrityError:
        # Only if the row lock did not serialise the writers: the key or the positions
        # were taken meanwhile; a retry with the same key finds out which.
        raise ConflictError(
            "another batch of this stream was applied at the same time; retry with the same "
            "Idempotency-Key"
        ) from None
    return Response(out.model_dump_json(), media_type="application/json")


def _append(
    database: Database, tenant_id: str, stream_id: str, key: str, items: list[float], digest: str
) -> StreamBatchOut:
    n = len(items)
    with immediate_transaction(database, durable=True) as connection:
        row = _load(connection, tenant_id, stream_id, lock=True)
        earlier = connection.execute(
            select(StreamBatch.items_sha256, StreamBatch.first_t, StreamBatch.n).where(
                StreamBatch.stream_id == stream_id, StreamBatch.idempotency_key == key
            )
        ).first()
        if earlier is not None:
            if earlier.items_sha256 != digest:
                raise ConflictError(
                    f"Idempotency-Key {key!r} was used for another batch of this stream "
                    f"({earlier.n} items from t={earlier.first_t}); use a new key for a new "
                    "batch",
                    first_t=earlier.first_t,
                )
            counter = _analytics(row)
            releases = _releases(connection, counter, stream_id, earlier.first_t - 1, earlier.n)
            return StreamBatchOut(
                stream_id=stream_id,
                duplicate=True,
                first_t=earlier.first_t,
                releases=releases,
                items=row.items,
                remaining=row.horizon - row.items,
            )
        remaining = row.horizon - row.items
        if n > remaining:
            raise LimitExceededError(
                f"this stream's horizon is T={row.horizon} items and it holds {row.items}: "
                f"{remaining} more fit, and this batch has {n}. Send at most {remaining}, or "
                "create a new stream (with its own privacy budget) for more.",
                horizon=row.horizon,
                items=row.items,
                remaining=remaining,
            )
        counter = _restore(row)
        values = counter.push_many(items)
        first_t = row.items + 1
        now = utcnow()
        connection.execute(
            insert(StreamBatch).values(
                stream_id=stream_id,
                idempotency_key=key,
                items_sha256=digest,
                first_t=first_t,
                n=n,
                created_at=now,
            )
        )
        connection.execute(
            insert(StreamRelease),
            [
                {"stream_id": stream_id, "t": first_t + index, "value": value}
                for index, value in enumerate(values.tolist())
            ],
        )
        updated = connection.execute(
            update(Stream)
            .where(Stream.id == stream_id, Stream.version == row.version)
            .values(
                state=_dump_state(counter),
                items=row.items + n,
                batches=row.batches + 1,
                version=row.version + 1,
                updated_at=now,
            )
        )
        if updated.rowcount != 1:  # the row lock makes this unreachable; never apply blind
            raise ConflictError(
                "the stream changed while this batch was applied; retry with the same "
                "Idempotency-Key"
            )
    return StreamBatchOut(
        stream_id=stream_id,
        duplicate=False,
        first_t=first_t,
        releases=[
            ReleaseOut(t=t, value=value, standard_error=math.sqrt(counter.variance(t)))
            for t, value in zip(range(first_t, first_t + n), values.tolist(), strict=True)
        ],
        items=row.items + n,
        remaining=row.horizon - row.items - n,
    )

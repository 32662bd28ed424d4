"""Continual-release streams: create a mechanism, append items or records, read its releases.

A stream is one mechanism of :mod:`privaudit.mechanisms.continual` with a fixed horizon
``T`` and privacy parameters: a counter (items in [0, 1]; every item gets the private
sum of the items so far) or ``continual.max_sum`` / ``continual.sum_select`` (records in
``{0,1}^d``; every record gets the private largest column sum, or the index of a column
close to it). The mechanism's state (the exact sums still in use and the noise already
drawn that future releases depend on,
:class:`~privaudit.mechanisms.continual.CounterState` or
:class:`~privaudit.mechanisms.continual.SelectionState`) is stored with the stream, and
each batch writes its releases, its idempotency key and the new state in one
transaction that holds the stream's row (``FOR UPDATE`` on PostgreSQL, the write lock
on SQLite) and applies only to the row version it read.
Hence:

* a restart continues the same stream: no node that has influenced a release ever gets
  new noise (two independent noisy views of one sum would leak it);
* a batch is counted once: a retry with the same ``Idempotency-Key`` gets the releases
  first given; the same key with other items is a conflict;
* two concurrent batches cannot both take the same positions.

A batch is validated whole (every item a finite number in [0, 1], or every record a
list of ``d`` zeros and ones; at most ``stream_max_items_per_batch`` of them and
``stream_max_cells_per_batch`` record cells) before anything is applied, and a stream
refuses a batch that would pass its horizon, saying how many items still fit. The
stored state is as sensitive as the items and is never sent to a client.

The sparse-vector strategy of MaxSum/SumSelect has a refresh budget ``K``; it runs out
only on the failure event of probability at most ``beta``. With ``on_exhausted="hold"``
the stream keeps releasing its last answer. With ``"raise"`` (default) the batch in
which it runs out is answered ``409 Conflict`` (the stream's state, not the request,
stops it, and no retry will succeed; 429 would invite one): the records before the one
at which it ran out keep their releases (in the problem's ``releases``), that record is
counted (its round of AboveThreshold fired: that is what it released) and gets none,
the records after it are not applied, and all of this is stored under the batch's
Idempotency-Key, so a retry gets the same answer. Later batches get the same 409 and
apply nothing.
"""

import hashlib
import json
import logging
import math
import uuid
from datetime import datetime
from types import SimpleNamespace
from typing import Annotated, Any, Literal, Self

import numpy as np
from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, Field, model_validator
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
from privaudit.api.settings import Settings
from privaudit.errors import (
    BudgetExhaustedError,
    ConflictError,
    DataError,
    LimitExceededError,
    ParameterError,
    PrivauditError,
)
from privaudit.mechanisms.continual import ContinualCounter, MaxSum, SumSelect
from privaudit.mechanisms.continual._base import MAX_HORIZON
from privaudit.mechanisms.continual._selection import MAX_COLUMNS
from privaudit.registry import mechanisms

__all__ = ["COUNTERS", "SELECTIONS", "router"]

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
"""The counters a stream may use, by registry name."""

SELECTIONS: dict[str, type[MaxSum] | type[SumSelect]] = {
    MaxSum.name: MaxSum,
    SumSelect.name: SumSelect,
}
"""The mechanisms over records in {0,1}^d a stream may use, by registry name."""

MechanismName = Literal[tuple(sorted(COUNTERS) + sorted(SELECTIONS))]  # type: ignore[valid-type]
Selection = MaxSum | SumSelect
Mechanism = ContinualCounter | Selection
_SELECTION_FIELDS = ("d", "delta", "strategy", "beta", "on_exhausted")

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
        description="Counters of items in [0, 1]: continual.tree (the binary mechanism), "
        "continual.honaker (the tree with Honaker's online estimator), "
        "continual.sqrt_toeplitz (square-root factorization: the smallest variance, O(T) "
        "state) or continual.blt (a buffered fit of it: within 1% of that variance, O(1) "
        "state). Over records in {0,1}^d: continual.max_sum (the largest column sum) or "
        "continual.sum_select (a column whose sum is close to it). See docs/continual.md."
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
        description="Counters: discrete Laplace noise, the T releases together are ε-DP. "
        "max_sum / sum_select (required): the budget of all T releases, ε-DP, or "
        "(ε, δ)-DP through zCDP with delta.",
    )
    noise_multiplier: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="Counters only: σ, discrete Gaussian noise; the T releases together "
        "are ρ-zCDP with ρ = 1/(2σ²).",
    )
    d: int | None = Field(
        default=None,
        ge=1,
        le=MAX_COLUMNS,
        description="max_sum / sum_select (required): the number of columns of a record "
        "(at most the service's stream_max_columns).",
    )
    delta: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        allow_inf_nan=False,
        description="max_sum / sum_select: with epsilon, (ε, δ)-DP through zCDP; omit "
        "for pure ε-DP.",
    )
    strategy: Literal["auto", "counters", "sparse-vector"] | None = Field(
        default=None,
        description="max_sum / sum_select: per-column tree counters, sparse-vector "
        "recomputation, or auto (default: the smaller stated error bound).",
    )
    beta: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        allow_inf_nan=False,
        description="max_sum / sum_select: the design failure probability (default 0.05).",
    )
    on_exhausted: Literal["raise", "hold"] | None = Field(
        default=None,
        description="max_sum / sum_select, sparse vector: if the refresh budget runs out, "
        "refuse further records (raise, default: 409) or keep releasing the last answer.",
    )


class StreamItems(StrictRequest):
    """Items (counter streams) or records (max_sum / sum_select streams) to append, in order."""

    items: list[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ITEMS_PER_BATCH,
        description="Counter streams: each a finite number in [0, 1]; one bad item rejects "
        "the batch.",
    )
    records: (
        list[Annotated[list[Annotated[int, Field(ge=0, le=1)]], Field(max_length=MAX_COLUMNS)]]
        | None
    ) = Field(
        default=None,
        min_length=1,
        max_length=MAX_ITEMS_PER_BATCH,
        description="max_sum / sum_select streams: each a list of d zeros and ones; one "
        "bad record rejects the batch.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.items is None) == (self.records is None):
            raise ValueError(
                "send exactly one of items (counter streams) or records (continual.max_sum "
                "and continual.sum_select streams)"
            )
        return self


class ReleaseOut(BaseModel):
    t: int = Field(description="The item's position, 1-based.")
    value: int | float = Field(
        description="The private running sum after item t (counters), the private largest "
        "column sum (max_sum) or the selected column's index (sum_select)."
    )
    standard_error: float | None = Field(
        description="Counters: the exact standard deviation of the release's noise "
        "(data-independent); null for max_sum / sum_select (see error_bound)."
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
    sensitivity: float | None = Field(description="Counters; null otherwise.")
    sensitivity_norm: Literal["l1", "l2"] | None
    grid_bits: int | None = Field(
        description="Counters: items are snapped to multiples of 2^-grid_bits."
    )
    max_variance: float | None = Field(
        description="Counters: the largest release variance over t = 1..T."
    )
    max_standard_error: float | None
    d: int | None = Field(description="max_sum / sum_select: columns of a record.")
    delta: float | None = Field(description="max_sum / sum_select: δ (0: pure ε-DP).")
    strategy: str | None = Field(
        description="max_sum / sum_select: the strategy in use (counters or sparse-vector)."
    )
    beta: float | None = Field(description="max_sum / sum_select: the design β.")
    on_exhausted: str | None
    error_bound: float | None = Field(
        description="max_sum / sum_select: with probability >= 1 - beta, every release is "
        "within this of M(t) (max_sum) or selects a column within it of M(t) (sum_select)."
    )
    refreshes: int | None = Field(description="Sparse vector: refreshes made so far.")
    max_refreshes: int | None = Field(description="Sparse vector: K, the refresh budget.")
    budget_exhausted: bool | None = Field(
        description="Sparse vector: whether the refresh budget ran out."
    )
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
    refreshes: int | None = Field(default=None, description="Sparse vector: refreshes so far.")
    max_refreshes: int | None = Field(default=None, description="Sparse vector: K.")


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


def _analytics(row: Any) -> Mechanism:
    """The stream's mechanism, for what it publishes: a fresh counter of the stream's
    parameters (its properties are data-independent), or the restored MaxSum/SumSelect
    (its refresh count is progress)."""
    if row.mechanism in SELECTIONS:
        return _restore(row)
    cls = _counter_class(row.mechanism)
    return cls(T=row.horizon, epsilon=row.epsilon, noise_multiplier=row.noise_multiplier)


def _restore(row: Any) -> Mechanism:
    """The stream's mechanism as stored: the same released noise, new noise from the CSPRNG."""
    try:
        state = json.loads(row.state)
        selection = SELECTIONS.get(row.mechanism)
        if selection is not None:
            return selection.from_state(state, draw_ahead=1)
        return ContinualCounter.from_state(state, draw_ahead=1)
    except (ParameterError, ValueError) as error:
        # The message may quote stored numbers (exact sums): log it, do not return it.
        log.error("stream %s: stored state cannot be restored: %s", row.id, error)
        raise PrivauditError(
            f"the stored state of stream {row.id} cannot be restored by this version of "
            "privaudit (the server log says why); the stream cannot continue"
        ) from None


def _dump_state(mechanism: Mechanism) -> str:
    return json.dumps(mechanism.state().to_dict(), allow_nan=False, separators=(",", ":"))


def _load(connection: Connection, tenant_id: str, stream_id: str, *, lock: bool = False) -> Any:
    return load_owned(connection, Stream, tenant_id, stream_id, what="stream", lock=lock)


def _release(mechanism: Mechanism, t: int, value: float) -> ReleaseOut:
    if isinstance(mechanism, ContinualCounter):
        return ReleaseOut(t=t, value=value, standard_error=math.sqrt(mechanism.variance(t)))
    return ReleaseOut(
        t=t, value=int(value) if isinstance(mechanism, SumSelect) else value, standard_error=None
    )


def _releases(
    connection: Connection, mechanism: Mechanism, stream_id: str, after: int, limit: int
) -> list[ReleaseOut]:
    rows = connection.execute(
        select(StreamRelease.t, StreamRelease.value)
        .where(StreamRelease.stream_id == stream_id, StreamRelease.t > after)
        .order_by(StreamRelease.t)
        .limit(limit)
    ).all()
    return [_release(mechanism, t, value) for t, value in rows]


def _stream_out(
    row: Any, mechanism: Mechanism, releases: list[ReleaseOut], next_after: int | None
) -> StreamOut:
    base = f"/v1/streams/{row.id}"
    described: dict[str, Any] = dict.fromkeys(StreamOut.model_fields)
    if isinstance(mechanism, ContinualCounter):
        max_variance = mechanism.max_variance()
        described.update(
            sensitivity=mechanism.sensitivity,
            sensitivity_norm=mechanism.sensitivity_norm,
            grid_bits=mechanism.grid_bits,
            max_variance=max_variance,
            max_standard_error=math.sqrt(max_variance),
        )
    else:
        described.update(
            d=mechanism.d,
            delta=mechanism.delta,
            strategy=mechanism.strategy,
            beta=mechanism.beta,
            on_exhausted=mechanism.on_exhausted,
            error_bound=mechanism.error_bound(mechanism.beta),
            refreshes=mechanism.refreshes,
            max_refreshes=mechanism.max_refreshes,
            budget_exhausted=mechanism.budget_exhausted,
        )
    described.update(
        id=row.id,
        mechanism=row.mechanism,
        horizon=row.horizon,
        epsilon=row.epsilon,
        noise_multiplier=row.noise_multiplier,
        guarantee=mechanism.guarantee.to_dict(),
        items=row.items,
        remaining=row.horizon - row.items,
        batches=row.batches,
        releases=releases,
        next_after=next_after,
        created_at=row.created_at,
        updated_at=row.updated_at,
        links=StreamLinks(self=base, items=f"{base}/items"),
    )
    return StreamOut(**described)


def _counter(body: StreamCreate, settings: Settings) -> ContinualCounter:
    """A new counter for ``body``, within the service's limits."""
    cls = _counter_class(body.mechanism)
    misplaced = [name for name in _SELECTION_FIELDS if getattr(body, name) is not None]
    if misplaced:
        raise ParameterError(
            f"{', '.join(misplaced)} do not apply to {body.mechanism} (a counter of items in "
            "[0, 1]: give epsilon or noise_multiplier); they are for continual.max_sum and "
            "continual.sum_select",
            parameter=misplaced[0],
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
    return cls(
        T=body.horizon, epsilon=body.epsilon, noise_multiplier=body.noise_multiplier, draw_ahead=1
    )


def _selection(body: StreamCreate, settings: Settings) -> Selection:
    """A new MaxSum or SumSelect for ``body``, within the service's limits."""
    if body.noise_multiplier is not None:
        raise ParameterError(
            f"noise_multiplier does not apply to {body.mechanism}: give epsilon (pure ε-DP) "
            "or epsilon and delta ((ε, δ)-DP through zCDP)",
            parameter="noise_multiplier",
        )
    for name, meaning in (("epsilon", "the privacy budget"), ("d", "the number of columns")):
        if getattr(body, name) is None:
            raise ParameterError(f"{body.mechanism} needs {name} ({meaning})", parameter=name)
    assert body.d is not None and body.epsilon is not None
    if body.d > settings.stream_max_columns:
        raise LimitExceededError(
            f"d={body.d} columns is above this service's limit of "
            f"{settings.stream_max_columns} per stream",
            limit=settings.stream_max_columns,
        )
    mechanism = SELECTIONS[body.mechanism](
        d=body.d,
        horizon=body.horizon,
        epsilon=body.epsilon,
        delta=body.delta or 0.0,
        strategy=body.strategy or "auto",
        beta=body.beta or 0.05,
        on_exhausted=body.on_exhausted or "raise",
        draw_ahead=1,
    )
    numbers = mechanism.state_size_bound()
    if numbers > settings.stream_max_state_numbers:
        raise LimitExceededError(
            f"a {body.mechanism} stream of d={body.d} columns with the {mechanism.strategy} "
            f"strategy keeps up to {numbers} numbers of state; this service stores at most "
            f"{settings.stream_max_state_numbers} per stream. Use fewer columns or "
            "strategy=sparse-vector (d + 4 numbers).",
            limit=settings.stream_max_state_numbers,
        )
    return mechanism


@router.post("", status_code=201, response_model=StreamOut)
def create_stream(
    body: StreamCreate, principal: Writer, database: DatabaseDep, settings: SettingsDep
) -> Response:
    """Create a stream; its privacy guarantee covers all ``horizon`` releases, fixed now."""
    if body.horizon > settings.stream_max_horizon:
        raise LimitExceededError(
            f"horizon {body.horizon} is above this service's limit of "
            f"{settings.stream_max_horizon} items per stream",
            limit=settings.stream_max_horizon,
        )
    mechanism: Mechanism = (
        _selection(body, settings) if body.mechanism in SELECTIONS else _counter(body, settings)
    )
    now = utcnow()
    values = {
        "id": uuid.uuid4().hex,
        "tenant_id": principal.tenant_id,
        "mechanism": body.mechanism,
        "horizon": body.horizon,
        "epsilon": mechanism.epsilon,
        "noise_multiplier": body.noise_multiplier,
        "items": 0,
        "batches": 0,
        "version": 0,
        "state": _dump_state(mechanism),
        "created_at": now,
        "updated_at": now,
    }
    out = _stream_out(SimpleNamespace(**values), mechanism, [], None)  # fails before storing
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
    """A stream's parameters, guarantee, error and a page of its releases."""
    limit = min(limit, settings.max_page_size)
    with database.engine.connect() as connection:
        row = _load(connection, principal.tenant_id, stream_id)
        mechanism = _analytics(row)
        # One more than the page: whether another page follows, whatever was appended
        # between the two reads.
        releases = _releases(connection, mechanism, stream_id, after, limit + 1)
    more = len(releases) > limit
    releases = releases[:limit]
    next_after = (releases[-1].t if releases else after) if more else None
    return Response(
        _stream_out(row, mechanism, releases, next_after).model_dump_json(),
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
    """Append items (or records) and return their releases; validated whole, applied
    atomically, once."""
    batch: list[float] | list[list[int]]
    if body.records is not None:
        batch = body.records
        digest_of: Any = {"records": batch}
        cells = sum(len(record) for record in batch)
        if cells > settings.stream_max_cells_per_batch:
            raise LimitExceededError(
                f"a batch holds at most {settings.stream_max_cells_per_batch} record cells; "
                f"this one has {cells}. Split it into batches, each with its own "
                "Idempotency-Key.",
                limit=settings.stream_max_cells_per_batch,
            )
    else:
        assert body.items is not None
        batch = digest_of = [float(x) for x in body.items]
    n = len(batch)
    if n > settings.stream_max_items_per_batch:
        raise LimitExceededError(
            f"a batch holds at most {settings.stream_max_items_per_batch} items; this one has "
            f"{n}. Split it into batches, each with its own Idempotency-Key.",
            limit=settings.stream_max_items_per_batch,
        )
    digest = hashlib.sha256(json.dumps(digest_of).encode()).hexdigest()
    try:
        out = _append(database, principal.tenant_id, stream_id, idempotency_key, batch, digest)
    except IntegrityError:
        # Only if the row lock did not serialise the writers: the key or the positions
        # were taken meanwhile; a retry with the same key finds out which.
        raise ConflictError(
            "another batch of this stream was applied at the same time; retry with the same "
            "Idempotency-Key"
        ) from None
    if isinstance(out, ConflictError):  # stored, then refused: see the module docstring
        raise out
    return Response(out.model_dump_json(), media_type="application/json")


def _check_kind(row: Any, batch: list[float] | list[list[int]], mechanism: Mechanism) -> None:
    """Refuse items for a records stream and the reverse; records of the wrong length."""
    records = bool(batch) and isinstance(batch[0], list)
    if isinstance(mechanism, ContinualCounter):
        if records:
            raise ParameterError(
                f"a {row.mechanism} stream takes items (numbers in [0, 1]), not records",
                parameter="records",
            )
        return
    if not records:
        raise ParameterError(
            f"a {row.mechanism} stream takes records (lists of d={mechanism.d} zeros and "
            "ones), not items",
            parameter="items",
        )
    for index, record in enumerate(batch):
        assert isinstance(record, list)
        if len(record) != mechanism.d:
            raise DataError(
                f"records.{index} has {len(record)} values; this stream's records have "
                f"d={mechanism.d} (one 0 or 1 per column). Nothing was applied.",
                record=index,
                d=mechanism.d,
            )


def _exhausted(
    mechanism: Selection, applied: int, first_t: int, releases: list[ReleaseOut]
) -> ConflictError:
    """The 409 of a batch in which the refresh budget ran out (``applied`` records)."""
    last = first_t + applied - 1
    return ConflictError(
        f"the refresh budget (K={mechanism.max_refreshes}) of this stream ran out at record "
        f"t={last}: the noise went beyond what the schedule was sized for (probability <= "
        f"beta={mechanism.beta:g}), so nothing more is released. This batch's records "
        f"before t={last} were applied (their releases are in 'releases'), the one at "
        f"t={last} was counted without a release, and the rest were not applied. Create "
        "a new stream (with its own privacy budget) for more records.",
        reason="refresh_budget_exhausted",
        applied=applied,
        refreshes=mechanism.refreshes,
        max_refreshes=mechanism.max_refreshes,
        releases=[release.model_dump() for release in releases],
    )


def _append(
    database: Database,
    tenant_id: str,
    stream_id: str,
    key: str,
    batch: list[float] | list[list[int]],
    digest: str,
) -> StreamBatchOut | ConflictError:
    n = len(batch)
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
            mechanism = _analytics(row)
            releases = _releases(connection, mechanism, stream_id, earlier.first_t - 1, earlier.n)
            if not isinstance(mechanism, ContinualCounter) and len(releases) < earlier.n:
                # The batch in which the budget ran out (its last record has no release).
                return _exhausted(mechanism, earlier.n, earlier.first_t, releases)
            return _batch_out(row, mechanism, earlier.first_t, releases, 0, duplicate=True)
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
        mechanism = _restore(row)
        _check_kind(row, batch, mechanism)
        ran_out = False
        try:
            values = mechanism.push_many(np.asarray(batch)).tolist()
        except BudgetExhaustedError as error:
            assert not isinstance(mechanism, ContinualCounter)
            if mechanism.t == row.items:  # it ran out before this batch: nothing applied
                raise ConflictError(
                    f"the refresh budget (K={mechanism.max_refreshes}) of this stream ran out "
                    f"at record t={row.items}, so it releases nothing more and nothing of "
                    "this batch was applied; create a new stream (with its own privacy "
                    "budget) for more records",
                    reason="refresh_budget_exhausted",
                    applied=0,
                    refreshes=mechanism.refreshes,
                    max_refreshes=mechanism.max_refreshes,
                ) from None
            values, ran_out = list(error.details["releases"]), True
        applied = mechanism.t - row.items
        first_t = row.items + 1
        now = utcnow()
        connection.execute(
            insert(StreamBatch).values(
                stream_id=stream_id,
                idempotency_key=key,
                items_sha256=digest,
                first_t=first_t,
                n=applied,
                created_at=now,
            )
        )
        if values:
            connection.execute(
                insert(StreamRelease),
                [
                    {"stream_id": stream_id, "t": first_t + index, "value": value}
                    for index, value in enumerate(values)
                ],
            )
        updated = connection.execute(
            update(Stream)
            .where(Stream.id == stream_id, Stream.version == row.version)
            .values(
                state=_dump_state(mechanism),
                items=row.items + applied,
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
    releases = [_release(mechanism, first_t + i, value) for i, value in enumerate(values)]
    if ran_out:
        assert not isinstance(mechanism, ContinualCounter)
        return _exhausted(mechanism, applied, first_t, releases)
    return _batch_out(row, mechanism, first_t, releases, applied, duplicate=False)


def _batch_out(
    row: Any,
    mechanism: Mechanism,
    first_t: int,
    releases: list[ReleaseOut],
    applied: int,
    *,
    duplicate: bool,
) -> StreamBatchOut:
    items = row.items + applied
    selection = mechanism if isinstance(mechanism, MaxSum | SumSelect) else None
    return StreamBatchOut(
        stream_id=row.id,
        duplicate=duplicate,
        first_t=first_t,
        releases=releases,
        items=items,
        remaining=row.horizon - items,
        refreshes=None if selection is None else selection.refreshes,
        max_refreshes=None if selection is None else selection.max_refreshes,
    )

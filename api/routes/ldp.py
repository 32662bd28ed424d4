"""LDP collection sessions: create a session, post report batches, read the estimate.

Clients randomize locally (``privaudit.api.client.LDPCollector``) and post batches in
the binary wire format (:mod:`privaudit.mechanisms.ldp._wire`). A batch is decoded
and validated whole before anything is written, so one bad report rejects the batch
(422) and nothing is applied. Each batch carries an ``Idempotency-Key``: the batch
row and the session's statistics are updated in one transaction, so a retry after a
crash or a lost response is recognised and never counted twice.
"""

import inspect
import uuid
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

import privaudit.mechanisms.ldp  # noqa: F401  (registers every protocol)
from privaudit.api.db import Database, utcnow
from privaudit.api.deps import DatabaseDep, SettingsDep, require_scope
from privaudit.api.keys import Principal, register_scope
from privaudit.api.models import LdpBatch, LdpSession
from privaudit.api.routes._responses import problems
from privaudit.api.routes._tenancy import load_owned
from privaudit.api.routing import JSONSchemaRoute
from privaudit.api.schemas import StrictRequest
from privaudit.errors import ConflictError, DataError, NotFoundError, ParameterError
from privaudit.mechanisms.ldp import FrequencyOracle
from privaudit.mechanisms.ldp._engine import MIN_EPSILON, PostProcess, frequency_oracle_names
from privaudit.registry import mechanisms

register_scope("ldp:write", "create LDP collection sessions and post report batches")
register_scope("ldp:read", "read LDP sessions and their estimates")

router = APIRouter(
    prefix="/v1/ldp",
    tags=["ldp"],
    responses=problems(401, 403, 413, 422, 500),
    route_class=JSONSchemaRoute,
)

Reader = Annotated[Principal, Depends(require_scope("ldp:read"))]
Writer = Annotated[Principal, Depends(require_scope("ldp:write"))]

MAX_DOMAIN = 1 << 17
MAX_STATISTICS = 1 << 20  # counts a session keeps (some protocols pad the domain)
# The automatic MSS moduli search costs seconds of CPU above this domain (a client-
# controlled cost): larger domains must pass moduli (choose_moduli runs offline).
MSS_AUTO_MODULI_MAX_DOMAIN = 1 << 16
REPORTS_MEDIA_TYPE = "application/vnd.privaudit.reports"


ProtocolName = Literal[tuple(frequency_oracle_names())]  # type: ignore[valid-type]


def _option_names() -> list[str]:
    names: set[str] = set()
    for protocol in frequency_oracle_names():
        names |= set(inspect.signature(mechanisms.get(protocol)).parameters) - {"k", "epsilon"}
    return sorted(names)


# Every option any protocol takes, so unknown keys fail the schema itself; which
# options a protocol accepts, and their ranges (a subset size below k, a prime q,
# coprime moduli), are checked when the protocol is built.
ProtocolOptions = create_model(  # type: ignore[call-overload]
    "ProtocolOptions",
    __config__=ConfigDict(extra="forbid"),
    __doc__="Protocol-specific options (see docs/ldp.md); each protocol takes a subset.",
    **{name: (Any, None) for name in _option_names()},
)


class LdpSessionCreate(StrictRequest):
    """Start collecting reports of one protocol."""

    protocol: ProtocolName = Field(  # type: ignore[valid-type]
        description="A frequency oracle (see docs/ldp.md)."
    )
    k: int = Field(ge=2, le=MAX_DOMAIN, description="Domain size; values are 0..k-1.")
    epsilon: float = Field(ge=MIN_EPSILON, le=50)
    params: ProtocolOptions = Field(
        default_factory=ProtocolOptions, description="Protocol-specific options."
    )


class ReportField(BaseModel):
    name: str
    columns: int
    low: int
    high: int


class LdpSessionLinks(BaseModel):
    self: str
    reports: str
    estimate: str


class LdpSessionOut(BaseModel):
    """A session's public parameters: everything a client needs to randomize."""

    id: str
    protocol: str
    k: int
    epsilon: float
    params: dict[str, Any]
    fingerprint: str
    bits_per_report: float
    guarantee: dict[str, Any]
    report_fields: list[ReportField]
    report_media_type: str
    n: int
    batches: int
    links: LdpSessionLinks


class LdpBatchOut(BaseModel):
    session_id: str
    accepted: int = Field(description="Reports in this batch.")
    duplicate: bool = Field(description="True when this Idempotency-Key was already applied.")
    n: int = Field(description="Reports in the session after this batch.")
    batches: int


class LdpEstimateOut(BaseModel):
    session_id: str
    protocol: str
    n: int
    postprocess: str | None
    frequencies: list[float]
    standard_errors: list[float] = Field(
        description="Closed-form standard errors of the unbiased estimate at the estimated "
        "frequencies (clipped to [0, 1])."
    )


def build_oracle(protocol: str, k: int, epsilon: float, params: dict[str, Any]) -> FrequencyOracle:
    """The protocol object a session describes (raises ParameterError when invalid)."""
    try:
        cls = mechanisms.get(protocol)
    except NotFoundError as error:
        raise ParameterError(f"protocol: {error.message}") from None
    if not (isinstance(cls, type) and issubclass(cls, FrequencyOracle)):
        raise ParameterError(f"protocol {protocol!r} is not a frequency oracle")
    accepted = set(inspect.signature(cls).parameters) - {"k", "epsilon"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ParameterError(
            f"params {unknown} are not options of {protocol}; it takes {sorted(accepted) or 'none'}"
        )
    try:
        oracle: FrequencyOracle = cls(k=k, epsilon=epsilon, **params)
        return oracle
    except (TypeError, ValueError) as error:
        raise ParameterError(f"params: {error}") from None


def _session_out(row: Any, oracle: FrequencyOracle) -> LdpSessionOut:
    base = f"/v1/ldp/sessions/{row.id}"
    return LdpSessionOut(
        id=row.id,
        protocol=row.protocol,
        k=row.k,
        epsilon=row.epsilon,
        params=row.params,
        fingerprint=row.fingerprint,
        bits_per_report=oracle.bits_per_report(),
        guarantee=oracle.guarantee.to_dict(),
        report_fields=[ReportField(**vars(field)) for field in oracle.report_schema()],
        report_media_type=REPORTS_MEDIA_TYPE,
        n=row.n,
        batches=row.batches,
        links=LdpSessionLinks(self=base, reports=f"{base}/reports", estimate=f"{base}/estimate"),
    )


def _load(connection: Connection, tenant_id: str, session_id: str, *, lock: bool = False) -> Any:
    return load_owned(connection, LdpSession, tenant_id, session_id, what="LDP session", lock=lock)


def _oracle_of(row: Any) -> FrequencyOracle:
    return build_oracle(row.protocol, row.k, row.epsilon, row.params)


@router.post("/sessions", status_code=201, response_model=LdpSessionOut)
def create_session(body: LdpSessionCreate, principal: Writer, database: DatabaseDep) -> Response:
    """Create a collection session; the answer holds the public parameters clients need."""
    options = body.params.model_dump(exclude_unset=True)
    if body.protocol == "mss" and "moduli" not in options and body.k > MSS_AUTO_MODULI_MAX_DOMAIN:
        raise ParameterError(
            f"k={body.k}: the service chooses MSS moduli automatically only up to "
            f"k={MSS_AUTO_MODULI_MAX_DOMAIN}; choose them offline with "
            "privaudit.mechanisms.ldp.choose_moduli(k, epsilon) and pass params.moduli",
            parameter="params.moduli",
        )
    oracle = build_oracle(body.protocol, body.k, body.epsilon, options)
    if oracle._statistics_size() > MAX_STATISTICS:
        raise ParameterError(
            f"{oracle.name} keeps {oracle._statistics_size()} counts for k={oracle.k} at "
            f"epsilon={oracle.epsilon}; a session may keep at most {MAX_STATISTICS}. "
            "Choose another protocol or parameter."
        )
    now = utcnow()
    session_id = uuid.uuid4().hex
    values = {
        "id": session_id,
        "tenant_id": principal.tenant_id,
        "protocol": oracle.name,
        "k": oracle.k,
        "epsilon": oracle.epsilon,
        "params": oracle.public_params(),
        "fingerprint": oracle.fingerprint(),
        "statistics": np.zeros(oracle._statistics_size(), dtype="<i8").tobytes(),
        "n": 0,
        "batches": 0,
        "created_at": now,
        "updated_at": now,
    }
    with database.write_transaction() as connection:
        connection.execute(insert(LdpSession).values(**values))
        row = _load(connection, principal.tenant_id, session_id)
    out = _session_out(row, oracle)
    return Response(
        out.model_dump_json(),
        status_code=201,
        media_type="application/json",
        headers={"Location": out.links.self},
    )


@router.get("/sessions/{session_id}", response_model=LdpSessionOut, responses=problems(404))
def get_session(session_id: str, principal: Reader, database: DatabaseDep) -> Response:
    """A session's public parameters and how many reports it holds."""
    with database.engine.connect() as connection:
        row = _load(connection, principal.tenant_id, session_id)
    return Response(
        _session_out(row, _oracle_of(row)).model_dump_json(), media_type="application/json"
    )


@router.post(
    "/sessions/{session_id}/reports",
    response_model=LdpBatchOut,
    responses=problems(404, 409),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                REPORTS_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def post_reports(
    session_id: str,
    request: Request,
    principal: Writer,
    database: DatabaseDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str,
        Header(
            alias="Idempotency-Key",
            pattern=r"^[\x21-\x7e]{1,255}$",
            description="Names the batch: a retry with the same key is not counted twice.",
        ),
    ],
) -> Response:
    """Add a batch of reports (wire format); validated whole, applied atomically."""
    body = await request.body()
    out = await run_in_threadpool(
        _apply_batch,
        database,
        principal.tenant_id,
        session_id,
        idempotency_key,
        body,
        settings.ldp_max_reports_per_batch,
    )
    return Response(out.model_dump_json(), media_type="application/json")


def _apply_batch(
    database: Database,
    tenant_id: str,
    session_id: str,
    key: str,
    body: bytes,
    max_reports: int,
) -> LdpBatchOut:
    with database.engine.connect() as connection:
        row = _load(connection, tenant_id, session_id)
    oracle = _oracle_of(row)
    # Decode, validate and reduce outside the transaction: a bad batch writes nothing.
    reports = oracle.decode(body, max_reports=max_reports)
    if reports.n == 0:
        raise DataError("the batch holds no reports")
    addition = oracle.statistics(reports)
    try:
        with database.write_transaction() as connection:
            connection.execute(
                insert(LdpBatch).values(
                    session_id=session_id, idempotency_key=key, n=reports.n, created_at=utcnow()
                )
            )
            current = _load(connection, tenant_id, session_id, lock=True)
            statistics = np.frombuffer(current.statistics, dtype="<i8") + addition
            connection.execute(
                update(LdpSession)
                .where(LdpSession.id == session_id)
                .values(
                    statistics=statistics.astype("<i8").tobytes(),
                    n=LdpSession.n + reports.n,
                    batches=LdpSession.batches + 1,
                    updated_at=utcnow(),
                )
            )
            after = _load(connection, tenant_id, session_id)
    except IntegrityError:
        with database.engine.connect() as connection:
            earlier = connection.execute(
                select(LdpBatch.n).where(
                    LdpBatch.session_id == session_id, LdpBatch.idempotency_key == key
                )
            ).scalar_one()
            after = _load(connection, tenant_id, session_id)
        if earlier != reports.n:
            raise ConflictError(
                f"Idempotency-Key {key!r} was used for a batch of {earlier} reports; this one "
                f"has {reports.n}. Use a new key for a new batch."
            ) from None
        return LdpBatchOut(
            session_id=session_id,
            accepted=reports.n,
            duplicate=True,
            n=after.n,
            batches=after.batches,
        )
    return LdpBatchOut(
        session_id=session_id,
        accepted=reports.n,
        duplicate=False,
        n=after.n,
        batches=after.batches,
    )


@router.get(
    "/sessions/{session_id}/estimate", response_model=LdpEstimateOut, responses=problems(404, 409)
)
def get_estimate(
    session_id: str,
    principal: Reader,
    database: DatabaseDep,
    postprocess: Annotated[
        str | None, Query(pattern="^(clip|simplex)$", description="Biased post-processing.")
    ] = None,
) -> Response:
    """Frequencies (unbiased unless post-processed) with closed-form standard errors."""
    with database.engine.connect() as connection:
        row = _load(connection, principal.tenant_id, session_id)
    if row.n == 0:
        raise ConflictError("the session holds no reports yet; post a batch first")
    oracle = _oracle_of(row)
    statistics = np.frombuffer(row.statistics, dtype="<i8").copy()
    how: PostProcess = postprocess  # type: ignore[assignment]
    raw = oracle._estimate_from_statistics(statistics, row.n, None)
    frequencies = raw if how is None else oracle._estimate_from_statistics(statistics, row.n, how)
    errors = oracle.standard_errors(row.n, raw)
    out = LdpEstimateOut(
        session_id=session_id,
        protocol=row.protocol,
        n=row.n,
        postprocess=postprocess,
        frequencies=frequencies.tolist(),
        standard_errors=errors.tolist(),
    )
    return Response(out.model_dump_json(), media_type="application/json")

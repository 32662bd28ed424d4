"""Encrypted vector search, party side: collections, public contexts, encrypted queries.

A data party creates a collection and posts its vectors in batches (JSON; validated
whole, stored atomically, ids unique). A querier registers its public CKKS context once
(binary, :mod:`privaudit.crypto.vector_search._wire`; kept per tenant by SHA-256) and
then posts encrypted queries (binary) that name the context by its hash; the answer is
the encrypted scores of every vector of the collection (binary). The service never sees
a secret key or a plaintext query. Each API key may make ``max_queries_per_key``
queries on a collection (counted in the database). See docs/vector_search.md.
"""

import base64
import binascii
import uuid
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from privaudit.api.db import Database, utcnow
from privaudit.api.deps import DatabaseDep, SettingsDep, require_scope
from privaudit.api.keys import Principal, register_scope
from privaudit.api.models import VectorBatch, VectorCollection, VectorId
from privaudit.api.routes._responses import problems
from privaudit.api.routing import JSONSchemaRoute
from privaudit.api.schemas import StrictRequest
from privaudit.api.settings import Settings
from privaudit.api.vectors import (
    VECTOR_DTYPE,
    ShardCache,
    build_party,
    charge_query,
    check_budget,
    collection_bytes,
    load_collection,
    load_context,
    noise_of,
    queries_used,
    store_context,
)
from privaudit.crypto.vector_search import (
    MAX_QUERY_BYTES,
    EncryptedQuery,
    SearchParameters,
    check_vectors,
)
from privaudit.errors import ConflictError, DataError, LimitExceededError, ParameterError

register_scope("vector:write", "create vector collections, add vectors to them, delete them")
register_scope(
    "vector:search",
    "register public contexts and search vector collections with encrypted queries "
    "(each key has its own query budget per collection)",
)

router = APIRouter(
    prefix="/v1/vector",
    tags=["vector"],
    responses=problems(401, 403, 413, 422, 500),
    route_class=JSONSchemaRoute,
)

Writer = Annotated[Principal, Depends(require_scope("vector:write"))]
Searcher = Annotated[Principal, Depends(require_scope("vector:search"))]
Reader = Annotated[Principal, Depends(require_scope("vector:search", "vector:write"))]

CONTEXT_MEDIA_TYPE = "application/vnd.privaudit.vector-context"
QUERY_MEDIA_TYPE = "application/vnd.privaudit.vector-query"
SCORES_MEDIA_TYPE = "application/vnd.privaudit.vector-scores"
MAX_ID_LENGTH = 64
MAX_DIMENSION = 4096  # the slots of the default parameters (N = 8192)
_BINARY = {"schema": {"type": "string", "format": "binary"}}


def _binary_body(media_type: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {media_type: _BINARY, "application/octet-stream": _BINARY},
        }
    }


class ScoreNoiseIn(StrictRequest):
    """Gaussian noise on every returned score (see docs/vector_search.md#leakage)."""

    sigma: float = Field(
        ge=1e-6,
        le=1e6,
        description="Standard deviation of the noise (below 1e-6 it would drown in the "
        "CKKS error of about 1e-7 and promise a meaningless guarantee).",
    )
    vector_norm_bound: float = Field(
        default=1.0,
        gt=0,
        le=128,
        description="Largest norm of a stored vector (inner_product, squared_l2; longer "
        "vectors are refused at ingest). Cosine vectors are normalised.",
    )
    query_norm_bound: float = Field(
        default=1.0, gt=0, le=128, description="Largest query norm the guarantee assumes."
    )


class CollectionCreate(StrictRequest):
    """A new, empty collection; add vectors with POST .../vectors."""

    name: str = Field(default="", max_length=128, description="A label for people.")
    dimension: int = Field(ge=1, le=MAX_DIMENSION, description="Dimension of every vector.")
    metric: Literal["cosine", "inner_product", "squared_l2"] = Field(
        default="cosine",
        description="cosine (vectors and queries normalised), inner_product, or squared_l2.",
    )
    max_queries_per_key: int | None = Field(
        default=None,
        ge=1,
        le=2**53,
        description="Queries each API key may make on the collection (each reveals every "
        "score). Omitted: the service default; null: unlimited.",
    )
    score_noise: ScoreNoiseIn | None = Field(
        default=None, description="Optional noise on the scores, with a zCDP guarantee."
    )


class CollectionLinks(BaseModel):
    self: str
    vectors: str
    search: str
    contexts: str


class CollectionOut(BaseModel):
    """A collection: what a querier needs to build its key (dimension, metric, params)."""

    id: str
    name: str
    dimension: int
    metric: str
    params: dict[str, Any] = Field(description="CKKS parameters contexts must use.")
    size: int = Field(description="Vectors in the collection.")
    batches: int
    max_queries_per_key: int | None
    score_noise: dict[str, Any] | None
    queries_used: int = Field(description="Queries the calling API key has made.")
    guarantee: dict[str, Any] | None = Field(
        description="zCDP guarantee of the collection's vectors against the calling key "
        "so far (only with score noise, after a query)."
    )
    query_media_type: str
    links: CollectionLinks


class VectorBatchIn(StrictRequest):
    """Vectors with their ids (validated whole: one bad vector refuses the batch).

    Give the vectors either as JSON numbers (``vectors``) or, several times faster to
    encode and parse, as ``vectors_base64``: the standard base64 of the vectors as
    little-endian float64, row after row.
    """

    ids: list[Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]] = Field(
        min_length=1, description="One unique id per vector."
    )
    vectors: list[list[float]] | None = Field(
        default=None, min_length=1, description="Rows of the collection's dimension."
    )
    vectors_base64: str | None = Field(
        default=None,
        min_length=1,
        description="The rows as little-endian float64, row-major, in standard base64.",
    )

    @model_validator(mode="after")
    def _one_encoding(self) -> "VectorBatchIn":
        if (self.vectors is None) == (self.vectors_base64 is None):
            raise ValueError("give the vectors as exactly one of vectors and vectors_base64")
        return self

    def matrix(self, dimension: int) -> np.ndarray:
        """The batch as an ``(n, dimension)`` float64 array (DataError if it is not one)."""
        count = len(self.ids)
        if self.vectors_base64 is not None:
            try:
                raw = base64.b64decode(self.vectors_base64, validate=True)
            except binascii.Error:
                raise DataError("vectors_base64 is not valid base64") from None
            if len(raw) != count * dimension * VECTOR_DTYPE.itemsize:
                raise DataError(
                    f"vectors_base64 holds {len(raw):,} bytes; {count} ids of dimension "
                    f"{dimension} need {count * dimension * VECTOR_DTYPE.itemsize:,} "
                    "(little-endian float64, row-major)"
                )
            return np.frombuffer(raw, dtype=VECTOR_DTYPE).reshape(count, dimension)
        assert self.vectors is not None
        if len(self.vectors) != count:
            raise DataError(f"{len(self.vectors)} vectors need as many ids; got {count}")
        lengths = [len(vector) for vector in self.vectors]
        if min(lengths) != dimension or max(lengths) != dimension:
            raise DataError(
                f"every vector must have the collection's dimension {dimension}; "
                f"got lengths from {min(lengths)} to {max(lengths)}"
            )
        return np.asarray(self.vectors, dtype=VECTOR_DTYPE)


class VectorBatchOut(BaseModel):
    collection_id: str
    accepted: int = Field(description="Vectors in this batch.")
    duplicate: bool = Field(description="True when this Idempotency-Key was already applied.")
    size: int = Field(description="Vectors in the collection after this batch.")
    batches: int


class ContextOut(BaseModel):
    context_id: str = Field(description="SHA-256 (hex) of the context; queries name it.")
    kernel: str
    dimension: int
    params: dict[str, Any]
    size_bytes: int
    new: bool = Field(description="False when the tenant had registered it already.")


def _collection_out(row: Any, used: int) -> CollectionOut:
    base = f"/v1/vector/collections/{row.id}"
    noise = noise_of(row)
    return CollectionOut(
        id=row.id,
        name=row.name,
        dimension=row.dimension,
        metric=row.metric,
        params=row.params,
        size=row.size,
        batches=row.batches,
        max_queries_per_key=row.max_queries_per_key,
        score_noise=row.score_noise,
        queries_used=used,
        guarantee=noise.guarantee(row.metric, queries=used).to_dict() if noise and used else None,
        query_media_type=QUERY_MEDIA_TYPE,
        links=CollectionLinks(
            self=base,
            vectors=f"{base}/vectors",
            search=f"{base}/search",
            contexts="/v1/vector/contexts",
        ),
    )


def _json(model: BaseModel, status_code: int = 200, **headers: str) -> Response:
    return Response(
        model.model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


async def _read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    too_large = HTTPException(
        413,
        detail=f"the {what} exceeds the limit of {limit:,} bytes for this endpoint",
        headers={"Connection": "close"},
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


# --- collections ----------------------------------------------------------------------


@router.post("/collections", status_code=201, response_model=CollectionOut)
def create_collection(
    body: CollectionCreate, principal: Writer, database: DatabaseDep, settings: SettingsDep
) -> Response:
    """Create an empty collection; the answer holds the parameters queriers need."""
    if body.dimension > settings.vector_max_dimension:
        raise ParameterError(
            f"dimension {body.dimension} exceeds this service's limit of "
            f"{settings.vector_max_dimension} (PRIVAUDIT_VECTOR_MAX_DIMENSION)",
            parameter="dimension",
        )
    limit = (
        body.max_queries_per_key
        if "max_queries_per_key" in body.model_fields_set
        else settings.vector_default_max_queries
    )
    now = utcnow()
    collection_id = uuid.uuid4().hex
    values = {
        "id": collection_id,
        "tenant_id": principal.tenant_id,
        "name": body.name,
        "dimension": body.dimension,
        "metric": body.metric,
        "params": SearchParameters().to_dict(),
        "score_noise": body.score_noise.model_dump() if body.score_noise else None,
        "max_queries_per_key": limit,
        "size": 0,
        "batches": 0,
        "created_at": now,
        "updated_at": now,
    }
    with database.write_transaction() as connection:
        connection.execute(insert(VectorCollection).values(**values))
        row = load_collection(connection, principal.tenant_id, collection_id)
    out = _collection_out(row, 0)
    return _json(out, 201, Location=out.links.self)


@router.get("/collections/{collection_id}", response_model=CollectionOut, responses=problems(404))
def get_collection(collection_id: str, principal: Reader, database: DatabaseDep) -> Response:
    """A collection's parameters, its size, and the calling key's queries so far."""
    with database.engine.connect() as connection:
        row = load_collection(connection, principal.tenant_id, collection_id)
        used = queries_used(connection, row.id, principal.key_id)
    return _json(_collection_out(row, used))


@router.delete("/collections/{collection_id}", status_code=204, responses=problems(404))
def delete_collection(
    collection_id: str, request: Request, principal: Writer, database: DatabaseDep
) -> Response:
    """Delete a collection, its vectors and its query counts."""
    with database.write_transaction() as connection:
        row = load_collection(connection, principal.tenant_id, collection_id)
        connection.execute(delete(VectorCollection).where(VectorCollection.id == row.id))
    request.app.state.vector_shards.discard(collection_id)
    return Response(status_code=204)


@router.post(
    "/collections/{collection_id}/vectors",
    response_model=VectorBatchOut,
    responses=problems(404, 409),
)
async def add_vectors(
    collection_id: str,
    body: VectorBatchIn,
    principal: Writer,
    database: DatabaseDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=r"^[\x21-\x7e]{1,255}$",
            description="Names the batch: a retry with the same key is applied once.",
        ),
    ] = None,
) -> Response:
    """Add a batch of vectors with ids; validated whole, stored atomically."""
    out = await run_in_threadpool(
        _add_vectors,
        database,
        settings,
        principal.tenant_id,
        collection_id,
        idempotency_key or uuid.uuid4().hex,
        body,
    )
    return _json(out)


class _ReplayError(Exception):
    pass


class _TakenIdsError(Exception):
    pass


def _add_vectors(
    database: Database,
    settings: Settings,
    tenant_id: str,
    collection_id: str,
    key: str,
    body: VectorBatchIn,
) -> VectorBatchOut:
    count = len(body.ids)
    if count > settings.vector_max_batch_vectors:
        raise LimitExceededError(
            f"the batch holds {count:,} vectors; at most {settings.vector_max_batch_vectors:,} "
            "are accepted per batch (PRIVAUDIT_VECTOR_MAX_BATCH_VECTORS): send several batches",
            limit=settings.vector_max_batch_vectors,
        )
    if len(set(body.ids)) != count:
        raise DataError("the batch repeats an id; ids must be unique within a collection")
    with database.engine.connect() as connection:
        row = load_collection(connection, tenant_id, collection_id)
    # Validate whole before anything is written; the vectors are stored as given.
    vectors = body.matrix(row.dimension)
    check_vectors(vectors, dimension=row.dimension, metric=row.metric, score_noise=noise_of(row))
    try:
        with database.write_transaction() as connection:
            current = load_collection(connection, tenant_id, collection_id, lock=True)
            _check_room(settings, current, count)
            try:
                connection.execute(
                    insert(VectorBatch).values(
                        collection_id=collection_id,
                        idempotency_key=key,
                        n=count,
                        ids=body.ids,
                        vectors=vectors.tobytes(),
                        created_at=utcnow(),
                    )
                )
            except IntegrityError:
                raise _ReplayError from None
            try:
                connection.execute(
                    insert(VectorId),
                    [{"collection_id": collection_id, "vector_id": item} for item in body.ids],
                )
            except IntegrityError:
                raise _TakenIdsError from None
            connection.execute(
                update(VectorCollection)
                .where(VectorCollection.id == collection_id)
                .values(
                    size=VectorCollection.size + count,
                    batches=VectorCollection.batches + 1,
                    updated_at=utcnow(),
                )
            )
            after = load_collection(connection, tenant_id, collection_id)
    except _ReplayError:
        return _replayed(database, tenant_id, collection_id, key, body.ids)
    except _TakenIdsError:
        raise ConflictError(
            f"ids already in the collection: {_taken(database, collection_id, body.ids)}; "
            "ids must be unique within a collection",
            collection_id=collection_id,
        ) from None
    return VectorBatchOut(
        collection_id=collection_id,
        accepted=count,
        duplicate=False,
        size=after.size,
        batches=after.batches,
    )


def _check_room(settings: Settings, row: Any, count: int) -> None:
    size = row.size + count
    if size > settings.vector_max_collection_vectors:
        raise LimitExceededError(
            f"the collection would hold {size:,} vectors; at most "
            f"{settings.vector_max_collection_vectors:,} are allowed "
            "(PRIVAUDIT_VECTOR_MAX_COLLECTION_VECTORS)",
            limit=settings.vector_max_collection_vectors,
        )
    memory = collection_bytes(row, size)
    if memory > settings.vector_cache_bytes:
        raise LimitExceededError(
            f"the collection would need {memory / 2**20:,.0f} MiB pre-encoded, more than "
            f"the {settings.vector_cache_bytes / 2**20:,.0f} MiB this service keeps "
            "(PRIVAUDIT_VECTOR_CACHE_BYTES): split it into smaller collections",
            limit=settings.vector_cache_bytes,
        )


def _replayed(
    database: Database, tenant_id: str, collection_id: str, key: str, ids: list[str]
) -> VectorBatchOut:
    with database.engine.connect() as connection:
        earlier = connection.execute(
            select(VectorBatch.ids).where(
                VectorBatch.collection_id == collection_id, VectorBatch.idempotency_key == key
            )
        ).scalar_one()
        row = load_collection(connection, tenant_id, collection_id)
    if list(earlier) != list(ids):
        raise ConflictError(
            f"Idempotency-Key {key!r} was used for another batch ({len(earlier)} vectors); "
            "use a new key for a new batch"
        )
    return VectorBatchOut(
        collection_id=collection_id,
        accepted=len(ids),
        duplicate=True,
        size=row.size,
        batches=row.batches,
    )


def _taken(database: Database, collection_id: str, ids: list[str]) -> str:
    found: list[str] = []
    with database.engine.connect() as connection:
        for start in range(0, len(ids), 500):
            found += connection.execute(
                select(VectorId.vector_id).where(
                    VectorId.collection_id == collection_id,
                    VectorId.vector_id.in_(ids[start : start + 500]),
                )
            ).scalars()
            if len(found) >= 5:
                break
    return ", ".join(repr(item) for item in found[:5]) + (" ..." if len(found) > 5 else "")


# --- contexts and search --------------------------------------------------------------


@router.post(
    "/contexts",
    response_model=ContextOut,
    responses={201: {"model": ContextOut, "description": "Registered"}},
    openapi_extra=_binary_body(CONTEXT_MEDIA_TYPE),
)
async def register_context(
    request: Request, principal: Searcher, database: DatabaseDep, settings: SettingsDep
) -> Response:
    """Register a querier's public context (binary; parameters and Galois keys, no
    secret key), once per session: queries then name it by its SHA-256."""
    body = await _read_body(request, settings.vector_max_context_bytes, "public context")
    info, new = await run_in_threadpool(
        store_context,
        database,
        principal.tenant_id,
        body,
        max_bytes=settings.vector_max_context_bytes,
        max_contexts=settings.vector_max_contexts,
    )
    out = ContextOut(
        context_id=info.context_id,
        kernel=info.kernel,
        dimension=info.dimension,
        params=info.params.to_dict(),
        size_bytes=info.size_bytes,
        new=new,
    )
    return _json(out, 201 if new else 200)


@router.post(
    "/collections/{collection_id}/search",
    response_class=Response,
    responses={
        200: {
            "description": "The encrypted scores of every vector (binary frame).",
            "content": {SCORES_MEDIA_TYPE: _BINARY},
        },
        **problems(404, 409, 429),
    },
    openapi_extra=_binary_body(QUERY_MEDIA_TYPE),
)
async def search(
    collection_id: str,
    request: Request,
    principal: Searcher,
    database: DatabaseDep,
    settings: SettingsDep,
) -> Response:
    """Score an encrypted query (binary) against every vector; answer the encrypted
    scores (binary). The query names its public context, registered before."""
    body = await _read_body(request, MAX_QUERY_BYTES, "encrypted query")
    answer = await run_in_threadpool(
        _search,
        request.app.state.vector_shards,
        database,
        settings,
        principal,
        collection_id,
        body,
    )
    return Response(answer, media_type=SCORES_MEDIA_TYPE)


def _search(
    shards: ShardCache,
    database: Database,
    settings: Settings,
    principal: Principal,
    collection_id: str,
    body: bytes,
) -> bytes:
    query = EncryptedQuery.from_bytes(body)
    with database.engine.connect() as connection:
        row = load_collection(connection, principal.tenant_id, collection_id)
        check_budget(connection, row, principal.key_id)
    if row.size == 0:
        raise ConflictError("the collection holds no vectors yet; add some first")
    shard = shards.get(
        row.id,
        row.batches,
        size_bytes=collection_bytes(row),
        build=lambda: build_party(
            database, row, max_context_bytes=settings.vector_max_context_bytes
        ),
    )
    if not shard.party.has_context(query.context_id):
        context = load_context(database, principal.tenant_id, query.context_id)
        with shard.lock:
            shard.party.register_context(context)
    answer = shard.party.search(query, querier_id=principal.key_id)
    charge_query(database, row, principal.key_id)
    return answer.to_bytes()

"""Python clients of encrypted vector search over HTTP.

* :class:`VectorCollection`: the data party's side: create a collection on its
  service and add vectors in batches (each under its own idempotency key, so a retry
  is never stored twice).
* :class:`VectorParty`: one collection of one service seen by a querier; it implements
  :class:`~privaudit.crypto.vector_search.PartyEndpoint`, so
  :class:`~privaudit.crypto.vector_search.FederatedSearch` fans out over HTTP.
* :class:`FederatedSearchClient`: a querier's session over several parties: it makes
  the key pair from the parties' published parameters, registers the public context
  once per party, and merges the global top-k. The secret key never leaves it.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from privaudit.api.client import ServiceClient, ServiceError, http_client, problem_of
from privaudit.api.routes.vector import CONTEXT_MEDIA_TYPE, QUERY_MEDIA_TYPE
from privaudit.crypto.vector_search import (
    EncryptedQuery,
    FederatedSearch,
    Hit,
    Querier,
    SearchParameters,
)
from privaudit.errors import ParameterError

__all__ = ["FederatedSearchClient", "VectorCollection", "VectorParty"]


class VectorCollection(ServiceClient):
    """A data party's collection on its own service.

    Parameters
    ----------
    base_url, api_key
        The service and a key with the ``vector:write`` scope.
    collection_id
        An existing collection; see :meth:`create` to make one.

    Examples
    --------
    >>> collection = VectorCollection.create(  # doctest: +SKIP
    ...     base_url="http://127.0.0.1:8000", api_key=key, dimension=384, name="notes"
    ... )
    >>> collection.add(vectors, ids=[f"note-{i}" for i in range(len(vectors))])  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        collection_id: str,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.collection_id = collection_id
        self._http = http_client(base_url, api_key, timeout_s=timeout_s, transport=transport)

    @classmethod
    def create(
        cls,
        *,
        base_url: str,
        api_key: str,
        dimension: int,
        metric: str = "cosine",
        name: str = "",
        score_noise: dict[str, float] | None = None,
        **options: Any,
    ) -> VectorCollection:
        """Create an empty collection and return a client of it.

        ``max_queries_per_key`` may be given among ``options`` (``None``: unlimited;
        omitted: the service's default); ``timeout_s`` and ``transport`` are passed on.
        """
        body: dict[str, Any] = {"name": name, "dimension": dimension, "metric": metric}
        if score_noise is not None:
            body["score_noise"] = score_noise
        if "max_queries_per_key" in options:
            body["max_queries_per_key"] = options.pop("max_queries_per_key")
        with http_client(
            base_url,
            api_key,
            timeout_s=options.get("timeout_s", 60.0),
            transport=options.get("transport"),
        ) as http:
            response = http.post("/v1/vector/collections", json=body)
        if response.status_code != 201:
            raise ServiceError(response.status_code, problem_of(response))
        return cls(
            base_url=base_url, api_key=api_key, collection_id=response.json()["id"], **options
        )

    def info(self) -> dict[str, Any]:
        """The collection as the service describes it (size, parameters, ...)."""
        return self._json("GET", f"/v1/vector/collections/{self.collection_id}")

    def add(
        self,
        vectors: Any,
        *,
        ids: Sequence[str],
        batch_size: int = 1000,
        batch_prefix: str | None = None,
    ) -> int:
        """Post ``vectors`` with their ``ids`` in batches; returns the collection's size.

        ``batch_prefix`` names the batches (``prefix-0``, ``prefix-1``, ...): add the
        same vectors again with the same prefix after a failure, and the batches the
        service already stored are recognised, not stored twice.
        """
        array = np.asarray(vectors, dtype=np.float64)
        if array.ndim != 2 or array.shape[0] != len(ids):
            raise ParameterError(
                f"give an (n, d) array and n ids; got shape {array.shape} and {len(ids)} ids"
            )
        prefix = batch_prefix or uuid.uuid4().hex
        size = 0
        for index, start in enumerate(range(0, len(ids), batch_size)):
            response = self._request(
                "POST",
                f"/v1/vector/collections/{self.collection_id}/vectors",
                json={
                    "ids": [str(item) for item in ids[start : start + batch_size]],
                    "vectors_base64": base64.b64encode(
                        array[start : start + batch_size].astype("<f8").tobytes()
                    ).decode("ascii"),
                },
                headers={"Idempotency-Key": f"{prefix}-{index}"},
            )
            size = int(response.json()["size"])
        return size

    def delete(self) -> None:
        """Delete the collection and its vectors."""
        self._request("DELETE", f"/v1/vector/collections/{self.collection_id}")


class VectorParty(ServiceClient):
    """One collection of one service, as a querier's
    :class:`~privaudit.crypto.vector_search.PartyEndpoint`.

    Parameters
    ----------
    base_url, api_key
        The party's service and a key with the ``vector:search`` scope there. The
        service counts queries per API key: that key is the querier's identity.
    collection_id
        The collection to search.
    party_id
        How hits name this party (default: the collection id).

    Notes
    -----
    :meth:`register_context` uploads the public context once; :meth:`search` sends
    only the encrypted query, which names the context by its SHA-256. If the service
    no longer knows the context (it restarted on a new database, or dropped it for
    newer ones), the party registers it again and retries once.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        collection_id: str,
        party_id: str | None = None,
        timeout_s: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.collection_id = collection_id
        self.party_id = party_id or collection_id
        self._http = http_client(base_url, api_key, timeout_s=timeout_s, transport=transport)
        self._context: bytes | None = None
        self.bytes_resent_ = 0  # context bytes sent again after the service forgot them
        try:
            self.collection: dict[str, Any] = self.info()
        except BaseException:
            self._http.close()
            raise

    def info(self) -> dict[str, Any]:
        """The collection as the service describes it (and this key's queries so far)."""
        return self._json("GET", f"/v1/vector/collections/{self.collection_id}")

    def register_context(self, context: bytes) -> str:
        """Upload the querier's public context; returns its id (SHA-256 hex)."""
        answer = self._json(
            "POST",
            "/v1/vector/contexts",
            content=bytes(context),
            headers={"Content-Type": CONTEXT_MEDIA_TYPE},
        )
        self._context = bytes(context)
        return str(answer["context_id"])

    def search(self, query: Any, *, querier_id: str = "", context: bytes | None = None) -> bytes:
        """The encrypted scores (wire bytes) of every vector for one encrypted query.

        ``querier_id`` is ignored: the service knows the querier by its API key.
        """
        if context is not None:
            self.register_context(context)
        blob = query.to_bytes() if isinstance(query, EncryptedQuery) else bytes(query)
        response = self._post_query(blob)
        if response.status_code == 404 and self._context is not None:
            problem = problem_of(response)
            if "context_id" in problem:
                self.register_context(self._context)
                self.bytes_resent_ += len(self._context)
                response = self._post_query(blob)
        if response.status_code >= 400:
            raise ServiceError(response.status_code, problem_of(response))
        return response.content

    def _post_query(self, blob: bytes) -> httpx.Response:
        return self._http.post(
            f"/v1/vector/collections/{self.collection_id}/search",
            content=blob,
            headers={"Content-Type": QUERY_MEDIA_TYPE},
        )


class FederatedSearchClient:
    """A querier's encrypted search over collections of several services.

    Parameters
    ----------
    parties
        :class:`VectorParty` objects (one per service and collection); their
        collections must agree on dimension, metric and CKKS parameters.
    kernel
        ``"bsgs"`` (default) or ``"tenseal-mm"`` (a service accepts its ~19 MB
        contexts only if its ``vector_max_context_bytes`` allows).

    Attributes
    ----------
    querier
        The :class:`~privaudit.crypto.vector_search.Querier` holding the secret key.
    bytes_sent_, bytes_received_
        Bytes of contexts, queries and answers so far (HTTP headers aside).

    Examples
    --------
    >>> parties = [  # doctest: +SKIP
    ...     VectorParty(base_url=url, api_key=key, collection_id=cid, party_id=name)
    ...     for name, url, key, cid in services
    ... ]
    >>> with FederatedSearchClient(parties=parties) as client:  # doctest: +SKIP
    ...     hits = client.search(query, k=10)
    """

    def __init__(self, *, parties: Sequence[VectorParty], kernel: str = "bsgs") -> None:
        if not parties:
            raise ParameterError("give at least one party")
        described = {
            (
                party.collection["dimension"],
                party.collection["metric"],
                repr(party.collection["params"]),
            )
            for party in parties
        }
        if len(described) != 1:
            raise ParameterError(
                "the collections differ in dimension, metric or parameters: "
                + "; ".join(
                    f"{party.party_id}: d={party.collection['dimension']}, "
                    f"{party.collection['metric']}"
                    for party in parties
                )
            )
        first = parties[0].collection
        self.parties = list(parties)
        self.querier = Querier(
            dimension=first["dimension"],
            metric=first["metric"],
            params=SearchParameters.from_dict(first["params"]),
            kernel=kernel,  # type: ignore[arg-type]
        )
        self._federation = FederatedSearch(
            querier=self.querier, parties=self.parties, querier_id="api-key"
        )

    def search(self, vector: Any, *, k: int = 10) -> list[Hit]:
        """The global top-``k`` over every party for one query vector."""
        return self._federation.search(vector, k=k)

    @property
    def bytes_sent_(self) -> int:
        resent = sum(party.bytes_resent_ for party in self.parties)
        return self._federation.bytes_sent_ + resent

    @property
    def bytes_received_(self) -> int:
        return self._federation.bytes_received_

    def close(self) -> None:
        for party in self.parties:
            party.close()

    def __enter__(self) -> FederatedSearchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

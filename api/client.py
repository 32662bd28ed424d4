"""Python clients of the privaudit service.

:class:`LDPCollector` is the client side of an LDP collection session: it builds the
session's protocol from the public parameters the server publishes, randomizes the
users' values locally (secure randomness by default: raw values never leave the
machine), and posts the reports in batches, each under its own idempotency key, so a
retry after a timeout or a server restart is never counted twice.
:class:`StreamClient` appends items to a continual-release stream the same way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Self, TypedDict, Unpack

import httpx
import numpy as np
import numpy.typing as npt

from privaudit.api.routes.ldp import REPORTS_MEDIA_TYPE, build_oracle
from privaudit.errors import PrivauditError
from privaudit.mechanisms.ldp import FrequencyOracle
from privaudit.randomness import RandomSource

__all__ = [
    "ClientOptions",
    "LDPCollector",
    "ServiceClient",
    "ServiceError",
    "StreamClient",
    "create_resource",
    "http_client",
    "problem_of",
]


class ServiceError(PrivauditError):
    """The service answered with a problem document; ``status`` and ``problem`` hold it."""

    code = "service_error"
    title = "Service error"

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(
            f"{status} {problem.get('code', '')}: {problem.get('detail', problem)}",
            status=status,
        )
        self.status = status
        self.problem = problem


class ClientOptions(TypedDict, total=False):
    """How a client talks to the service (keyword arguments of the stream client)."""

    retries: int
    """Attempts per batch on transport errors and 5xx answers (default 5)."""
    timeout_s: float
    """Seconds before a request times out (default 60)."""
    transport: httpx.BaseTransport | None
    """An httpx transport (tests, proxies); the default one when omitted."""


class ServiceClient:
    """Base of the clients: one HTTP connection pool with the API key, closed on exit."""

    _http: httpx.Client
    retries: int = 5

    def _retrying(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send a request that is safe to repeat (it carries an idempotency key),
        retried with backoff on transport errors and 5xx answers."""
        delay = 0.2
        for attempt in range(self.retries):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError:
                if attempt == self.retries - 1:
                    raise
            else:
                if response.is_success:
                    result: dict[str, Any] = response.json()
                    return result
                if response.status_code < 500 or attempt == self.retries - 1:
                    raise ServiceError(response.status_code, problem_of(response))
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request; a problem answer (status >= 400) raises :class:`ServiceError`."""
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ServiceError(response.status_code, problem_of(response))
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._request(method, path, **kwargs).json()
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LDPCollector(ServiceClient):
    """Collect LDP reports into one session of a privaudit service.

    Parameters
    ----------
    base_url, api_key
        The service and a key with the ``ldp:write`` (and ``ldp:read``) scopes.
    session_id
        An existing session; see :meth:`create` to start one.
    retries
        Attempts per batch on transport errors and 5xx answers (same idempotency key).

    Examples
    --------
    >>> collector = LDPCollector.create(  # doctest: +SKIP
    ...     base_url="http://127.0.0.1:8000", api_key=key, protocol="ss", k=1024, epsilon=1.0
    ... )
    >>> collector.submit(values)  # doctest: +SKIP
    >>> collector.estimate()["frequencies"]  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        session_id: str,
        retries: int = 5,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.session_id = session_id
        self.retries = retries
        self._http = http_client(base_url, api_key, timeout_s=timeout_s, transport=transport)
        try:
            self.session = self._json("GET", f"/v1/ldp/sessions/{session_id}")
            self.oracle: FrequencyOracle = build_oracle(
                self.session["protocol"],
                self.session["k"],
                self.session["epsilon"],
                self.session["params"],
            )
        except BaseException:
            self._http.close()
            raise
        if self.oracle.fingerprint() != self.session["fingerprint"]:
            self._http.close()
            raise ServiceError(
                409,
                {
                    "code": "conflict",
                    "detail": "this privaudit version builds the session's protocol differently "
                    f"({self.oracle.fingerprint()} vs {self.session['fingerprint']})",
                },
            )

    @classmethod
    def create(
        cls,
        *,
        base_url: str,
        api_key: str,
        protocol: str,
        k: int,
        epsilon: float,
        params: dict[str, Any] | None = None,
        **options: Any,
    ) -> LDPCollector:
        """Create a session on the service and return a collector for it."""
        body = {"protocol": protocol, "k": k, "epsilon": epsilon, "params": params or {}}
        created = create_resource(base_url, api_key, "/v1/ldp/sessions", body, options)
        return cls(base_url=base_url, api_key=api_key, session_id=created["id"], **options)

    def submit(
        self,
        values: npt.ArrayLike,
        *,
        batch_size: int = 100_000,
        rng: RandomSource = None,
        batch_prefix: str | None = None,
    ) -> int:
        """Randomize ``values`` locally and post them in batches; returns the session's n.

        ``batch_prefix`` names the batches (``prefix-0``, ``prefix-1``, ...): submit the
        same values again with the same prefix after a failure, and batches the server
        already applied are recognised, not counted twice.
        """
        array = np.asarray(values)
        prefix = batch_prefix or uuid.uuid4().hex
        total = int(self.session["n"])
        for index, start in enumerate(range(0, array.size, batch_size)):
            reports = self.oracle.randomize(array[start : start + batch_size], rng=rng)
            outcome = self.post_batch(self.oracle.encode(reports), key=f"{prefix}-{index}")
            total = int(outcome["n"])
        return total

    def post_batch(self, data: bytes, *, key: str) -> dict[str, Any]:
        """Post one encoded batch under ``key``, retrying transport errors and 5xx."""
        return self._retrying(
            "POST",
            f"/v1/ldp/sessions/{self.session_id}/reports",
            content=data,
            headers={"Content-Type": REPORTS_MEDIA_TYPE, "Idempotency-Key": key},
        )

    def estimate(self, *, postprocess: str | None = None) -> dict[str, Any]:
        """The session's current estimate (frequencies, standard errors, n)."""
        params = {"postprocess": postprocess} if postprocess else None
        return self._json("GET", f"/v1/ldp/sessions/{self.session_id}/estimate", params=params)


class StreamClient(ServiceClient):
    """Append items (or records) to one continual-release stream of a privaudit service.

    The service keeps the mechanism and its noise; the client sends items in batches
    and gets one release per item: the private running sum (counters), or for
    ``continual.max_sum`` / ``continual.sum_select`` streams, whose items are records in
    ``{0,1}^d`` (:meth:`append_records`, :meth:`push_records`), the private largest
    column sum or the selected column. Each batch carries an idempotency key, and a
    batch that fails with a transport error or a 5xx answer is sent again under the
    same key, so an item is never counted twice and a retried batch gets back the
    releases first computed for it (never fresh noise).

    Parameters
    ----------
    base_url, api_key
        The service and a key with the ``streams:write`` and ``streams:read`` scopes.
    stream_id
        An existing stream; see :meth:`create` to start one.
    **options
        ``retries`` (attempts per batch on transport errors and 5xx answers, under the
        same idempotency key), ``timeout_s``, ``transport``: see :class:`ClientOptions`.

    Examples
    --------
    >>> stream = StreamClient.create(  # doctest: +SKIP
    ...     base_url="http://127.0.0.1:8000", api_key=key,
    ...     mechanism="continual.honaker", horizon=1024, noise_multiplier=2.0,
    ... )
    >>> stream.push_many([1.0, 0.0, 0.5])  # doctest: +SKIP
    [1.83, -0.41, 2.27]
    >>> top = StreamClient.create(  # doctest: +SKIP
    ...     base_url="http://127.0.0.1:8000", api_key=key,
    ...     mechanism="continual.sum_select", horizon=1024, d=3, epsilon=1.0, delta=1e-6,
    ... )
    >>> top.push_records([[1, 0, 0], [1, 1, 0]])  # doctest: +SKIP
    [0, 0]
    """

    def __init__(
        self, *, base_url: str, api_key: str, stream_id: str, **options: Unpack[ClientOptions]
    ) -> None:
        self.retries = options.get("retries", 5)
        self._http = http_client(
            base_url,
            api_key,
            timeout_s=options.get("timeout_s", 60.0),
            transport=options.get("transport"),
        )
        self.stream_id = stream_id
        try:
            self.stream = self.info(limit=0)
        except BaseException:
            self._http.close()
            raise

    @classmethod
    def create(
        cls,
        *,
        base_url: str,
        api_key: str,
        mechanism: str,
        horizon: int,
        epsilon: float | None = None,
        noise_multiplier: float | None = None,
        d: int | None = None,
        delta: float | None = None,
        strategy: str | None = None,
        beta: float | None = None,
        on_exhausted: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> StreamClient:
        """Create a stream on the service and return a client for it.

        Counters take ``epsilon`` or ``noise_multiplier``; ``continual.max_sum`` and
        ``continual.sum_select`` take ``d``, ``epsilon``, and optionally ``delta``,
        ``strategy``, ``beta`` and ``on_exhausted``. Parameters left ``None`` are not sent.
        """
        given = {
            "epsilon": epsilon,
            "noise_multiplier": noise_multiplier,
            "d": d,
            "delta": delta,
            "strategy": strategy,
            "beta": beta,
            "on_exhausted": on_exhausted,
        }
        body: dict[str, Any] = {"mechanism": mechanism, "horizon": horizon}
        body.update((name, value) for name, value in given.items() if value is not None)
        created = create_resource(base_url, api_key, "/v1/streams", body, options)
        return cls(base_url=base_url, api_key=api_key, stream_id=created["id"], **options)

    def append(self, items: npt.ArrayLike, *, key: str | None = None) -> dict[str, Any]:
        """Append one batch under ``key`` (a fresh one by default); the service's answer,
        with ``releases`` (one ``{t, value, standard_error}`` per item) and ``duplicate``."""
        values = np.asarray(items, dtype=float).ravel().tolist()
        return self._send({"items": values}, key)

    def append_records(self, records: npt.ArrayLike, *, key: str | None = None) -> dict[str, Any]:
        """Append one batch of records (``n × d`` zeros and ones) under ``key``; the
        service's answer, with ``releases`` (one ``{t, value}`` per record), and
        ``refreshes`` / ``max_refreshes`` for the sparse-vector strategy."""
        rows = np.asarray(records, dtype=np.int64)
        return self._send({"records": rows.reshape(rows.shape[0], -1).tolist()}, key)

    def push_many(
        self, items: npt.ArrayLike, *, batch_size: int = 1000, batch_prefix: str | None = None
    ) -> list[float]:
        """Append ``items`` in batches; return their releases, in order.

        ``batch_prefix`` names the batches (``prefix-0``, ``prefix-1``, ...): send the
        same items again with the same prefix after a failure, and the batches the
        service already applied answer with their first releases instead of counting
        twice.
        """
        values = np.asarray(items, dtype=float).ravel()
        return self._push(self.append, values, batch_size, batch_prefix)

    def push_records(
        self, records: npt.ArrayLike, *, batch_size: int = 1000, batch_prefix: str | None = None
    ) -> list[float | int]:
        """Append the rows of ``records`` in batches (as :meth:`push_many` does items);
        return their releases, in order: max sums (max_sum) or column indices
        (sum_select)."""
        rows = np.asarray(records, dtype=np.int64)
        return self._push(self.append_records, rows, batch_size, batch_prefix)

    def _push(
        self,
        append: Callable[..., dict[str, Any]],
        values: np.ndarray,
        batch_size: int,
        batch_prefix: str | None,
    ) -> list[Any]:
        prefix = batch_prefix or uuid.uuid4().hex
        releases: list[Any] = []
        for index, start in enumerate(range(0, len(values), batch_size)):
            batch = append(values[start : start + batch_size], key=f"{prefix}-{index}")
            releases.extend(release["value"] for release in batch["releases"])
        return releases

    def _send(self, body: dict[str, Any], key: str | None) -> dict[str, Any]:
        return self._retrying(
            "POST",
            f"/v1/streams/{self.stream_id}/items",
            json=body,
            headers={"Idempotency-Key": key or uuid.uuid4().hex},
        )

    def info(self, *, after: int = 0, limit: int | None = None) -> dict[str, Any]:
        """The stream now: parameters, guarantee, error, items, and releases with t > after."""
        params: dict[str, int] = {"after": after}
        if limit is not None:
            params["limit"] = limit
        return self._json("GET", f"/v1/streams/{self.stream_id}", params=params)

    def releases(self) -> list[dict[str, Any]]:
        """Every release so far (``{t, value, standard_error}``), reading page by page."""
        found: list[dict[str, Any]] = []
        after: int | None = 0
        while after is not None:
            page = self.info(after=after, limit=1000)
            found.extend(page["releases"])
            after = page["next_after"]
        return found


def create_resource(
    base_url: str, api_key: str, path: str, body: dict[str, Any], options: Mapping[str, Any]
) -> dict[str, Any]:
    """POST a new resource once (creating is not idempotent: no retries); its JSON.

    ``options`` are a client's keyword options; ``timeout_s`` and ``transport`` apply.
    """
    with http_client(
        base_url,
        api_key,
        timeout_s=options.get("timeout_s", 60.0),
        transport=options.get("transport"),
    ) as client:
        response = client.post(path, json=body)
    if response.status_code >= 400:
        raise ServiceError(response.status_code, problem_of(response))
    result: dict[str, Any] = response.json()
    return result


def http_client(
    base_url: str,
    api_key: str,
    *,
    timeout_s: float = 60.0,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An HTTP client of the service that sends ``api_key`` with every request."""
    return httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=timeout_s,
        transport=transport,
    )


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem document of an error response (or its text, if it is not JSON)."""
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:500]}
    return body if isinstance(body, dict) else {"detail": body}

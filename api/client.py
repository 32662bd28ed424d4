"""Python clients of the privaudit service.

:class:`LDPCollector` is the client side of an LDP collection session: it builds the
session's protocol from the public parameters the server publishes, randomizes the
users' values locally (secure randomness by default: raw values never leave the
machine), and posts the reports in batches, each under its own idempotency key, so a
retry after a timeout or a server restart is never counted twice.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Self

import httpx
import numpy as np
import numpy.typing as npt

from privaudit.api.routes.ldp import REPORTS_MEDIA_TYPE, build_oracle
from privaudit.errors import PrivauditError
from privaudit.mechanisms.ldp import FrequencyOracle
from privaudit.randomness import RandomSource

__all__ = ["LDPCollector", "ServiceClient", "ServiceError", "http_client", "problem_of"]


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


class ServiceClient:
    """Base of the clients: one HTTP connection pool with the API key, closed on exit."""

    _http: httpx.Client

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
        with http_client(
            base_url,
            api_key,
            timeout_s=options.get("timeout_s", 60.0),
            transport=options.get("transport"),
        ) as http:
            response = http.post(
                "/v1/ldp/sessions",
                json={"protocol": protocol, "k": k, "epsilon": epsilon, "params": params or {}},
            )
        if response.status_code != 201:
            raise ServiceError(response.status_code, problem_of(response))
        return cls(base_url=base_url, api_key=api_key, session_id=response.json()["id"], **options)

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
        delay = 0.2
        for attempt in range(self.retries):
            try:
                response = self._http.post(
                    f"/v1/ldp/sessions/{self.session_id}/reports",
                    content=data,
                    headers={"Content-Type": REPORTS_MEDIA_TYPE, "Idempotency-Key": key},
                )
            except httpx.TransportError:
                if attempt == self.retries - 1:
                    raise
            else:
                if response.status_code == 200:
                    result: dict[str, Any] = response.json()
                    return result
                if response.status_code < 500 or attempt == self.retries - 1:
                    raise ServiceError(response.status_code, problem_of(response))
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def estimate(self, *, postprocess: str | None = None) -> dict[str, Any]:
        """The session's current estimate (frequencies, standard errors, n)."""
        params = {"postprocess": postprocess} if postprocess else None
        return self._json("GET", f"/v1/ldp/sessions/{self.session_id}/estimate", params=params)


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

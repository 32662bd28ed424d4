"""A model behind an HTTP prediction endpoint, as an oracle (black-box audits).

This is the only module that makes outbound requests. Sending requests to a URL a
client chose is server-side request forgery waiting to happen, so every request goes
through the operator's :class:`EndpointPolicy`:

* **Host allow-list.** The URL's host must be on ``allowed_hosts`` (exact names or IP
  literals, or ``*.example.com`` for subdomains).
* **Address policy.** The host is resolved once, and *every* address it resolves to
  must be public: private (10/8, 172.16/12, 192.168/16, fc00::/7), loopback,
  link-local (169.254/16, fe80::/10, where cloud metadata services live), shared
  (100.64/10), multicast, reserved, unspecified and documentation ranges are refused,
  and IPv4 addresses embedded in IPv6 (``::ffff:10.0.0.1``, NAT64, 6to4) are judged
  as the IPv4 address they carry. The operator can allow specific networks
  (``allowed_networks=["10.1.2.0/24"]``), never all of them by default.
* **Pinning.** Requests go to the checked address, with the original name in the
  ``Host`` header and as the TLS server name (certificates are still verified against
  the name), so a second DNS answer cannot rebind the name to an internal address.
* **No redirects, no proxies from the environment, https only** unless the operator
  allows plain http.
* **Bounds.** Per-request and per-call time limits, a bound on the response size
  (checked while it streams in), and the oracle's query budget.

The wire format is JSON. Request: ``{"inputs": [[...], ...]}`` (one row per example,
flattened features). Response: ``{"probabilities": [[...], ...]}`` (or
``{"logits": ...}`` for an oracle declared with ``output="logits"``), one row per
input; other members are ignored.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from privaudit.attacks.oracles._base import Oracle, OutputKind, check_output_kind
from privaudit.errors import (
    DataError,
    EndpointError,
    LimitExceededError,
    MissingDependencyError,
    ParameterError,
    PermissionDeniedError,
)

__all__ = [
    "EndpointOracle",
    "EndpointPolicy",
    "address_block_reason",
    "resolve_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_RETRY_STATUSES = (429, 503)
_FORBIDDEN_HEADERS = frozenset(("host", "content-length", "transfer-encoding", "connection"))
_ERROR_EXCERPT = 200


def _httpx() -> Any:
    try:
        import httpx
    except ImportError as error:
        raise MissingDependencyError(
            "querying a prediction endpoint needs httpx; run: pip install 'privaudit[audit]'"
        ) from error
    return httpx


def address_block_reason(address: str | IPAddress) -> str | None:
    """Why ``address`` may not be queried by default, or ``None`` for a public address.

    Examples
    --------
    >>> [address_block_reason(a) for a in ("10.0.0.1", "169.254.169.254", "8.8.8.8")]
    ['private', 'link-local', None]
    >>> address_block_reason("::ffff:127.0.0.1")
    'loopback'
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped
        if embedded is None and any(ip in network for network in _NAT64):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None:
            embedded = ip.sixtofour
        if embedded is not None:
            return address_block_reason(embedded)
        if ip.teredo is not None:
            return "teredo tunnel"
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("shared address space", isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("not globally routable", not ip.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise EndpointError(f"cannot resolve the endpoint host {host!r}: {error}") from None
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in answers:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    return found


def _normalise_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


@dataclass(frozen=True, kw_only=True)
class EndpointPolicy:
    """The operator's rules for outbound prediction requests.

    Parameters
    ----------
    allowed_hosts
        Host names or IP literals that may be queried; ``"*.example.com"`` allows
        every subdomain of ``example.com`` (not ``example.com`` itself). Empty
        refuses every endpoint.
    allowed_networks
        Networks (CIDR) whose addresses may be queried although they are private,
        loopback, link-local or otherwise not public, such as ``"10.1.2.0/24"`` for
        models served on the operator's own network or ``"127.0.0.1/32"`` for a
        local test server.
    allow_http
        Allow plain ``http://`` URLs (default: https only).
    request_timeout_s, connect_timeout_s
        Limits of one request and of opening its connection.
    max_response_bytes
        The largest response body read.
    max_retries
        How often a batch answered 429 or 503 with a ``Retry-After`` that fits in
        the call's time limit is sent again.
    ca_bundle
        A PEM file of certificate authorities to trust instead of the system's, for
        endpoints behind a private CA. Certificates are always verified.
    """

    allowed_hosts: tuple[str, ...]
    allowed_networks: tuple[str, ...] = ()
    allow_http: bool = False
    request_timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    max_response_bytes: int = 16 * 2**20
    max_retries: int = 2
    ca_bundle: str | None = None
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for name in ("allowed_hosts", "allowed_networks"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise ParameterError(
                    f"{name} must be a list of strings; got {value!r}", parameter=name
                )
            object.__setattr__(self, name, tuple(str(item) for item in value))
        object.__setattr__(
            self, "allowed_hosts", tuple(_normalise_host(h) for h in self.allowed_hosts)
        )
        networks = []
        for text in self.allowed_networks:
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ParameterError(
                    f"allowed_networks: {text!r} is not a network in CIDR form such as "
                    "'10.1.2.0/24' or 'fd00::/8'",
                    parameter="allowed_networks",
                ) from None
        object.__setattr__(self, "_networks", tuple(networks))
        for name in ("request_timeout_s", "connect_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ParameterError(f"{name} must be > 0 seconds; got {value!r}", parameter=name)
        for name, low in (("max_response_bytes", 1), ("max_retries", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ParameterError(
                    f"{name} must be an integer >= {low}; got {value!r}", parameter=name
                )

    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` is on the allow-list."""
        name = _normalise_host(host)
        for entry in self.allowed_hosts:
            if entry.startswith("*."):
                if name.endswith(entry[1:]) and len(name) > len(entry) - 1:
                    return True
            elif name == entry:
                return True
        return False

    def check_address(self, address: IPAddress, *, host: str) -> None:
        """Refuse ``address`` unless it is public or inside ``allowed_networks``.

        Raises
        ------
        PermissionDeniedError
            With the address, the reason and how the operator can allow it.
        """
        reason = address_block_reason(address)
        if reason is None:
            return
        if any(address.version == net.version and address in net for net in self._networks):
            return
        raise PermissionDeniedError(
            f"the endpoint host {host!r} resolves to {address}, a {reason} address; "
            "privaudit does not send requests to non-public addresses (they reach internal "
            "services and cloud metadata). Use a public endpoint, or, if you operate this "
            "service and the model is served on your own network, allow that network "
            f"explicitly: EndpointPolicy(allowed_networks=['{address}/"
            f"{address.max_prefixlen}'])",
            host=host,
            address=str(address),
            reason=reason,
        )


class EndpointOracle(Oracle):
    """Query a model served at an HTTP(S) URL, within the operator's policy.

    Parameters
    ----------
    url
        The endpoint that answers ``POST {"inputs": [...]}``.
    policy
        The operator's :class:`EndpointPolicy`.
    output
        The response member to read: ``"probabilities"`` (default) or ``"logits"``.
    headers
        Extra request headers, such as the endpoint's own ``Authorization``.
    query_budget, batch_size, timeout_s
        See :class:`~privaudit.attacks.oracles.Oracle`.

    Raises
    ------
    ParameterError
        If the URL is malformed, has credentials in it, or uses a refused scheme.
    PermissionDeniedError
        If the host is not on the allow-list, or resolves to a refused address.
    EndpointError
        If the host cannot be resolved.

    Attributes
    ----------
    address
        The checked address every request is sent to (the pin).
    """

    kind = "endpoint"

    def __init__(
        self,
        *,
        url: str,
        policy: EndpointPolicy,
        output: OutputKind = "probabilities",
        headers: Mapping[str, str] | None = None,
        query_budget: int | None = None,
        batch_size: int = 256,
        timeout_s: float | None = 600.0,
    ) -> None:
        super().__init__(query_budget=query_budget, batch_size=batch_size, timeout_s=timeout_s)
        httpx = _httpx()
        if not isinstance(policy, EndpointPolicy):
            raise ParameterError("policy must be an EndpointPolicy", parameter="policy")
        self.policy = policy
        self.output = check_output_kind(output)
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as error:
            raise ParameterError(
                f"url {url!r} is not a valid URL: {error}", parameter="url"
            ) from None
        schemes = ("https", "http") if policy.allow_http else ("https",)
        if parsed.scheme not in schemes:
            raise ParameterError(
                f"url must use {' or '.join(schemes)}; got {parsed.scheme or 'no'} scheme in "
                f"{url!r}" + ("" if policy.allow_http else " (plain http needs allow_http)"),
                parameter="url",
            )
        if parsed.userinfo:
            raise ParameterError(
                "url must not carry credentials (user:password@); send them in headers",
                parameter="url",
            )
        host = parsed.raw_host.decode("ascii")
        if not host:
            raise ParameterError(f"url {url!r} has no host", parameter="url")
        if not policy.host_allowed(host):
            raise PermissionDeniedError(
                f"the endpoint host {host!r} is not on this service's allow-list "
                f"({', '.join(policy.allowed_hosts) or 'empty'}); ask the operator to add it",
                host=host,
            )
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = resolve_host(host.strip("[]"), port)
        if not addresses:
            raise EndpointError(f"the endpoint host {host!r} resolved to no address")
        for address in addresses:  # every answer, so a mixed answer cannot slip through
            policy.check_address(address, host=host)
        self.url = str(parsed)
        self.host = host
        self.address = addresses[0]
        extra = dict(headers or {})
        clash = sorted(name for name in extra if name.lower() in _FORBIDDEN_HEADERS)
        if clash:
            raise ParameterError(
                f"headers may not set {', '.join(clash)}; privaudit sets them",
                parameter="headers",
            )
        self._target = parsed.copy_with(host=str(self.address))
        self._headers = {
            **extra,
            "Host": parsed.netloc.decode("ascii"),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._extensions = {"sni_hostname": host} if parsed.scheme == "https" else {}
        verify: ssl.SSLContext | bool = True
        if policy.ca_bundle is not None:
            try:
                verify = ssl.create_default_context(cafile=policy.ca_bundle)
            except (OSError, ssl.SSLError) as error:
                raise ParameterError(
                    f"ca_bundle {policy.ca_bundle!r} is not a readable PEM file: {error}",
                    parameter="ca_bundle",
                ) from None
        self._client = httpx.Client(
            verify=verify,
            follow_redirects=False,
            trust_env=False,  # no proxies or netrc from the environment
            timeout=httpx.Timeout(policy.request_timeout_s, connect=policy.connect_timeout_s),
        )

    def close(self) -> None:
        self._client.close()

    def _predict_batch(self, batch: np.ndarray, *, deadline: float | None) -> np.ndarray:
        body = json.dumps({"inputs": batch.reshape(batch.shape[0], -1).tolist()}).encode()
        for attempt in range(self.policy.max_retries + 1):
            status, payload, retry_after = self._post(body, deadline)
            if status == 200:
                return self._parse(payload, batch.shape[0])
            retry = status in _RETRY_STATUSES and attempt < self.policy.max_retries
            if (
                retry
                and retry_after is not None
                and (deadline is None or time.monotonic() + retry_after < deadline)
            ):
                time.sleep(retry_after)
                continue
            if 300 <= status < 400:
                raise EndpointError(
                    f"the endpoint {self.url} answered a redirect ({status}); redirects are not "
                    "followed (they could lead to an internal address): use the final URL",
                    status=status,
                )
            excerpt = payload[:_ERROR_EXCERPT].decode("utf-8", "replace")
            raise EndpointError(
                f"the endpoint {self.url} answered HTTP {status}: {excerpt!r}", status=status
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, body: bytes, deadline: float | None) -> tuple[int, bytes, float | None]:
        httpx = _httpx()
        timeout = self.policy.request_timeout_s
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                self._timed_out()
        limit = self.policy.max_response_bytes
        try:
            with self._client.stream(
                "POST",
                self._target,
                content=body,
                headers=self._headers,
                extensions=self._extensions,
                timeout=httpx.Timeout(timeout, connect=min(timeout, self.policy.connect_timeout_s)),
            ) as response:
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    self._too_large(int(declared))
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_raw():
                    size += len(chunk)
                    if size > limit:
                        self._too_large(size)
                    if deadline is not None and time.monotonic() > deadline:
                        self._timed_out()
                    chunks.append(chunk)
                retry_after = response.headers.get("retry-after", "")
                wait = float(retry_after) if retry_after.isdigit() else None
                return response.status_code, b"".join(chunks), wait
        except httpx.TimeoutException:
            self._timed_out()
        except httpx.HTTPError as error:
            raise EndpointError(
                f"the endpoint {self.url} could not be reached: {type(error).__name__}: {error}"
            ) from None

    def _timed_out(self) -> NoReturn:
        raise LimitExceededError(
            f"the endpoint {self.url} did not answer within the time limit (request "
            f"{self.policy.request_timeout_s:g} s, call {self.timeout_s} s); query fewer examples "
            "per call, or make the endpoint faster",
            limit="timeout_s",
        )

    def _too_large(self, size: int) -> NoReturn:
        raise LimitExceededError(
            f"the endpoint {self.url} answered more than {self.policy.max_response_bytes} bytes "
            f"({size} so far); lower batch_size or raise max_response_bytes",
            limit="max_response_bytes",
        )

    def _parse(self, payload: bytes, n: int) -> np.ndarray:
        try:
            document = json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            raise DataError(
                f"the endpoint {self.url} answered something that is not JSON: "
                f"{payload[:_ERROR_EXCERPT]!r}"
            ) from None
        key = self.output
        rows = document.get(key) if isinstance(document, dict) else None
        if not _is_matrix(rows):
            raise DataError(
                f"the endpoint {self.url} must answer a JSON object whose {key!r} member is a "
                f"list of {n} rows of numbers, one per input; got "
                f"{_describe(document, key)}"
            )
        return np.asarray(rows, dtype=np.float64)


def _is_matrix(rows: Any) -> bool:
    return (
        isinstance(rows, list)
        and all(isinstance(row, list) for row in rows)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for row in rows for v in row)
        and len({len(row) for row in rows}) <= 1
    )


def _describe(document: Any, key: str) -> str:
    if not isinstance(document, dict):
        return f"a JSON {type(document).__name__}"
    if key not in document:
        return f"an object with members {sorted(document)[:10]}"
    return f"{key!r} = {json.dumps(document[key])[:_ERROR_EXCERPT]}"

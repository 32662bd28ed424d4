"""EndpointOracle against a real HTTP server on loopback, and the address policy.

The server is Python's ``http.server`` in a thread, bound to 127.0.0.1: reaching it
needs the operator's explicit allowance of the loopback network, which is itself
what these tests check.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trustme
from scipy.special import softmax

from privaudit.attacks.oracles import (
    EndpointOracle,
    EndpointPolicy,
    _endpoint,
    address_block_reason,
)
from privaudit.errors import (
    BudgetExhaustedError,
    DataError,
    EndpointError,
    LimitExceededError,
    ParameterError,
    PermissionDeniedError,
)

WEIGHTS = np.linspace(-1, 1, 12).reshape(4, 3)


class Model(BaseHTTPRequestHandler):
    """POST answers by path: /predict, /logits, /slow, /redirect, /huge, /chunked,
    /error, /schema, /text, /throttle."""

    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.path, self.headers.get("Host"), dict(self.headers)))
        inputs = np.asarray(json.loads(body)["inputs"], dtype=float)
        path = self.path
        if path == "/throttle" and sum(p == "/throttle" for p, *_ in self.server.requests) == 1:
            return self._send(429, b"slow down", {"Retry-After": "0"})
        if path == "/slow":
            time.sleep(1.5)
        if path == "/redirect":
            return self._send(302, b"", {"Location": "http://169.254.169.254/latest/meta-data"})
        if path == "/error":
            return self._send(500, b"model crashed: CUDA out of memory")
        if path == "/huge":
            return self._send(200, b" " * 5000)
        if path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"200\r\n" + b" " * 512 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return None
        if path == "/text":
            return self._send(200, b"<html>not json</html>")
        logits = inputs @ WEIGHTS
        if path == "/schema":
            document: dict[str, Any] = {"probs": softmax(logits, axis=1).tolist()}
        elif path == "/logits":
            document = {"logits": logits.tolist(), "model_version": "7"}
        else:
            document = {"probabilities": softmax(logits, axis=1).tolist()}
        return self._send(200, json.dumps(document).encode())

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[tuple[str, str | None, dict[str, str]]]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that give up early (timeouts, size limits) break the pipe: expected


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Model)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def base(server: Server) -> str:
    server.requests.clear()
    return f"http://127.0.0.1:{server.server_address[1]}"


LOOPBACK = EndpointPolicy(
    allowed_hosts=("127.0.0.1", "model.test"),
    allowed_networks=("127.0.0.1/32",),
    allow_http=True,
    request_timeout_s=5.0,
    max_response_bytes=4096,
)


def test_round_trip_with_loopback_explicitly_allowed(server: Server, base: str) -> None:
    inputs = np.linspace(-2, 2, 40).reshape(10, 4)
    with EndpointOracle(url=f"{base}/predict", policy=LOOPBACK, batch_size=4) as oracle:
        answer = oracle.predict_proba(inputs)
        assert (oracle.queries_used, oracle.n_calls, oracle.n_classes) == (10, 3, 3)
    np.testing.assert_allclose(answer, softmax(inputs @ WEIGHTS, axis=1), rtol=1e-12)
    assert [path for path, *_ in server.requests] == ["/predict"] * 3


def test_logits_endpoint(base: str) -> None:
    oracle = EndpointOracle(url=f"{base}/logits", policy=LOOPBACK, output="logits")
    inputs = np.eye(4)
    np.testing.assert_allclose(oracle.predict(inputs), WEIGHTS, rtol=1e-12)
    np.testing.assert_allclose(oracle.predict_proba(inputs), softmax(WEIGHTS, axis=1))


def test_loopback_is_refused_without_the_allowance(server: Server, base: str) -> None:
    policy = EndpointPolicy(allowed_hosts=("127.0.0.1",), allow_http=True)
    with pytest.raises(PermissionDeniedError, match="a loopback address") as info:
        EndpointOracle(url=f"{base}/predict", policy=policy)
    assert info.value.details == {"host": "127.0.0.1", "address": "127.0.0.1", "reason": "loopback"}
    assert "allowed_networks=['127.0.0.1/32']" in str(info.value)
    other = EndpointPolicy(allowed_hosts=("127.0.0.1",), allowed_networks=("10.0.0.0/8",))
    with pytest.raises(PermissionDeniedError, match="loopback"):
        EndpointOracle(url=f"https://127.0.0.1:{server.server_address[1]}/", policy=other)
    assert server.requests == []


def test_hosts_off_the_allow_list_are_refused(base: str) -> None:
    policy = EndpointPolicy(allowed_hosts=("models.example.com",), allow_http=True)
    with pytest.raises(PermissionDeniedError, match="not on this service's allow-list"):
        EndpointOracle(url=f"{base}/predict", policy=policy)
    wildcard = EndpointPolicy(allowed_hosts=("*.example.com", "Exact.ORG."))
    assert wildcard.host_allowed("a.example.com") and wildcard.host_allowed("a.b.example.com")
    assert not wildcard.host_allowed("example.com")
    assert not wildcard.host_allowed("evil-example.com")
    assert wildcard.host_allowed("exact.org") and not wildcard.host_allowed("sub.exact.org")


def test_url_rules(base: str) -> None:
    strict = EndpointPolicy(allowed_hosts=("127.0.0.1",), allowed_networks=("127.0.0.1/32",))
    with pytest.raises(ParameterError, match="url must use https; got http scheme"):
        EndpointOracle(url=f"{base}/predict", policy=strict)
    with pytest.raises(ParameterError, match="must not carry credentials"):
        EndpointOracle(url="http://user:pw@127.0.0.1/predict", policy=LOOPBACK)
    with pytest.raises(ParameterError, match="url must use"):
        EndpointOracle(url="file:///etc/passwd", policy=LOOPBACK)
    with pytest.raises(ParameterError, match="headers may not set Host"):
        EndpointOracle(url=f"{base}/predict", policy=LOOPBACK, headers={"Host": "x"})


def test_the_resolved_address_is_checked_and_pinned(
    server: Server, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {"model.test": ["127.0.0.1"]}
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[Any]:
        calls.append(host)
        return [ipaddress.ip_address(a) for a in answers[host]]

    monkeypatch.setattr(_endpoint, "resolve_host", resolve)
    port = server.server_address[1]
    oracle = EndpointOracle(
        url=f"http://model.test:{port}/predict",
        policy=LOOPBACK,
        headers={"Authorization": "Bearer t0ken"},
    )
    answers["model.test"] = ["10.0.0.7"]  # a rebinding answer after the check...
    oracle.predict(np.zeros((2, 4)))
    oracle.predict(np.zeros((2, 4)))
    assert calls == ["model.test"]  # ...is never asked for: the first answer is pinned
    assert str(oracle.address) == "127.0.0.1"
    (_, host, headers), _ = server.requests
    assert host == f"model.test:{port}"  # the name travels in Host, the address is pinned
    assert headers["Authorization"] == "Bearer t0ken"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (["10.0.0.7"], "private"),
        (["93.184.215.14", "192.168.1.1"], "private"),  # one bad answer is enough
        (["169.254.169.254"], "link-local"),
        (["::ffff:10.0.0.1"], "private"),
        (["fd12::1"], "private"),
    ],
)
def test_a_name_that_resolves_to_a_private_address_is_refused(
    answer: list[str], reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        _endpoint, "resolve_host", lambda host, port: [ipaddress.ip_address(a) for a in answer]
    )
    policy = EndpointPolicy(allowed_hosts=("model.test",))
    with pytest.raises(PermissionDeniedError, match=f"a {reason} address") as info:
        EndpointOracle(url="https://model.test/predict", policy=policy)
    assert info.value.details["host"] == "model.test"
    assert info.value.code == "permission_denied"


def test_a_public_answer_is_accepted_without_any_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        _endpoint, "resolve_host", lambda host, port: [ipaddress.ip_address("93.184.215.14")]
    )
    oracle = EndpointOracle(
        url="https://model.test/v1/predict", policy=EndpointPolicy(allowed_hosts=("model.test",))
    )
    assert str(oracle.address) == "93.184.215.14"
    oracle.close()


def test_redirects_are_not_followed(server: Server, base: str) -> None:
    oracle = EndpointOracle(url=f"{base}/redirect", policy=LOOPBACK)
    with pytest.raises(EndpointError, match=r"answered a redirect \(302\); redirects are not"):
        oracle.predict(np.zeros((1, 4)))
    assert [path for path, *_ in server.requests] == ["/redirect"]


def test_request_timeout(base: str) -> None:
    policy = EndpointPolicy(
        allowed_hosts=("127.0.0.1",),
        allowed_networks=("127.0.0.0/8",),
        allow_http=True,
        request_timeout_s=0.2,
    )
    oracle = EndpointOracle(url=f"{base}/slow", policy=policy)
    with pytest.raises(LimitExceededError, match="did not answer within the time limit"):
        oracle.predict(np.zeros((1, 4)))
    assert oracle.queries_used == 1  # the request was sent: it counts


def test_call_time_limit_bounds_the_request(base: str) -> None:
    oracle = EndpointOracle(url=f"{base}/slow", policy=LOOPBACK, timeout_s=0.2)
    with pytest.raises(LimitExceededError, match="time limit"):
        oracle.predict(np.zeros((1, 4)))


@pytest.mark.parametrize("path", ["/huge", "/chunked"])
def test_response_size_is_bounded(base: str, path: str) -> None:
    oracle = EndpointOracle(url=f"{base}{path}", policy=LOOPBACK)
    with pytest.raises(LimitExceededError, match="answered more than 4096 bytes"):
        oracle.predict(np.zeros((1, 4)))


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("/error", EndpointError, "answered HTTP 500: 'model crashed"),
        ("/schema", DataError, "whose 'probabilities' member is a list of 2 rows"),
        ("/text", DataError, "not JSON"),
    ],
)
def test_failures_and_bad_answers(
    base: str, path: str, error: type[Exception], message: str
) -> None:
    oracle = EndpointOracle(url=f"{base}{path}", policy=LOOPBACK)
    with pytest.raises(error, match=message):
        oracle.predict(np.zeros((2, 4)))


def test_throttling_is_retried_after_the_servers_delay(server: Server, base: str) -> None:
    oracle = EndpointOracle(url=f"{base}/throttle", policy=LOOPBACK)
    assert oracle.predict_proba(np.zeros((2, 4))).shape == (2, 3)
    assert [path for path, *_ in server.requests] == ["/throttle", "/throttle"]
    assert oracle.queries_used == 2


def test_budget_exhaustion_sends_nothing(server: Server, base: str) -> None:
    oracle = EndpointOracle(url=f"{base}/predict", policy=LOOPBACK, query_budget=5)
    oracle.predict(np.zeros((4, 4)))
    with pytest.raises(BudgetExhaustedError):
        oracle.predict(np.zeros((2, 4)))
    assert len(server.requests) == 1


def test_an_unreachable_endpoint(base: str) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), Model) as closed:
        port = closed.server_address[1]
    oracle = EndpointOracle(url=f"http://127.0.0.1:{port}/", policy=LOOPBACK)
    with pytest.raises(EndpointError, match="could not be reached"):
        oracle.predict(np.zeros((1, 4)))


def _https_server(certificate_host: str) -> tuple[Server, trustme.CA]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(certificate_host).configure_cert(context)
    httpd = Server(("127.0.0.1", 0), Model)
    httpd.requests = []
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, ca


@pytest.mark.parametrize(
    ("certificate_host", "works"), [("model.test", True), ("evil.test", False)]
)
def test_https_to_the_pinned_address_verifies_the_name(
    certificate_host: str, works: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The request connects to the pinned 127.0.0.1 but sends "model.test" as the TLS
    # server name, so the certificate is checked against the name the user gave.
    monkeypatch.setattr(
        _endpoint, "resolve_host", lambda host, port: [ipaddress.ip_address("127.0.0.1")]
    )
    httpd, ca = _https_server(certificate_host)
    try:
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        policy = EndpointPolicy(
            allowed_hosts=("model.test",),
            allowed_networks=("127.0.0.1/32",),
            ca_bundle=str(tmp_path / "ca.pem"),
        )
        url = f"https://model.test:{httpd.server_address[1]}/predict"
        with EndpointOracle(url=url, policy=policy) as oracle:
            if works:
                assert oracle.predict_proba(np.eye(4)) == pytest.approx(softmax(WEIGHTS, axis=1))
                assert httpd.requests[0][1] == f"model.test:{httpd.server_address[1]}"
            else:
                with pytest.raises(EndpointError, match="could not be reached: ConnectError"):
                    oracle.predict(np.eye(4))
                assert httpd.requests == []
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address to classify, not to bind
        ("100.64.0.1", "shared address space"),
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("febf::1", "link-local"),
        ("fc00::1", "private"),
        ("fdff:ffff::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo tunnel"),
    ],
)
def test_blocked_ranges(address: str, reason: str) -> None:
    assert address_block_reason(address) == reason


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "93.184.215.14",
        "172.32.0.1",
        "192.169.0.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
    ],
)
def test_public_addresses(address: str) -> None:
    assert address_block_reason(address) is None


def test_allowed_networks_open_only_themselves() -> None:
    policy = EndpointPolicy(allowed_hosts=("h",), allowed_networks=("10.1.2.0/24", "fd00::/8"))
    policy.check_address(ipaddress.ip_address("10.1.2.77"), host="h")
    policy.check_address(ipaddress.ip_address("fd00::5"), host="h")
    for refused in ("10.1.3.1", "127.0.0.1", "fe80::1"):
        with pytest.raises(PermissionDeniedError):
            policy.check_address(ipaddress.ip_address(refused), host="h")
    with pytest.raises(ParameterError, match="not a network in CIDR form"):
        EndpointPolicy(allowed_hosts=("h",), allowed_networks=("10.1.2.0/33",))
    with pytest.raises(ParameterError, match="must be a list of strings"):
        EndpointPolicy(allowed_hosts="h")  # type: ignore[arg-type]

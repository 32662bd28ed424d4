"""A 100 MB upload is refused with 413 without the server buffering it."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from live import LiveServer

HUNDRED_MB = 100 * 1024 * 1024


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _read_response(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def _request_head(server: LiveServer, path: str, key: str, extra: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_declared_100_mb_body_is_refused_before_it_is_sent(
    server: LiveServer, tenant_a_key: str
) -> None:
    for path in ["/v1/jobs", "/v1/health", "/v1/jobs/x/cancel", "/no/such/path"]:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(
                _request_head(server, path, tenant_a_key, f"Content-Length: {HUNDRED_MB}\r\n")
            )
            started = time.monotonic()
            response = _read_response(sock)
        assert response.startswith(b"HTTP/1.1 413"), (path, response[:200])
        assert b"application/problem+json" in response
        assert b"payload_too_large" in response
        assert time.monotonic() - started < 5


def test_streamed_100_mb_chunked_body_is_cut_off_without_buffering(
    server: LiveServer, tenant_a_key: str
) -> None:
    assert server.process is not None
    before = _rss_kib(server.process.pid)
    chunk = b"x" * (1024 * 1024)
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            _request_head(server, "/v1/jobs", tenant_a_key, "Transfer-Encoding: chunked\r\n")
        )
        sock.settimeout(10)
        try:
            while sent < HUNDRED_MB:
                sock.sendall(framed)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the server closed the connection: what we want
        response = _read_response(sock)
    after = _rss_kib(server.process.pid)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b"payload_too_large" in response
    assert sent < HUNDRED_MB, "the server read the whole 100 MB"
    # The server may hold the limit (32 MiB) and socket buffers, never the whole body.
    assert after - before < 60 * 1024, f"server RSS grew by {(after - before) // 1024} MiB"

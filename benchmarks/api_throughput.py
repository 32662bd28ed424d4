"""Throughput and latency of the REST service's job submission and job-status read.

Starts a real ``privaudit serve`` in a subprocess (SQLite in a temporary data dir, a
no-op job kind from ``_bench_kinds``), creates an API key, and drives it from this
process with closed-loop clients on loopback: each client sends its next
request as soon as the previous one is answered. Two operations are measured, at each
concurrency level (1 and 16 clients by default):

- ``submit``: ``POST /v1/jobs`` with ``{"kind": "bench.noop", "params": {}}`` (202);
- ``read``: ``GET /v1/jobs/{id}`` over the jobs the submit cells created (200).

The anchor, measured in the same run, is ``_anchor_app``: the same HTTP stack
(FastAPI on uvicorn with the same defaults) answering the same routes with the same
request validation and response shape, but with no database and no authentication.

The service is measured once per ``--job-workers`` value: the default configuration
(1 worker, which claims and runs the submitted no-op jobs while the load runs) and,
by default also, 0 workers (HTTP and database only). Each cell is a warm-up followed
by a fixed measuring window; only responses that arrive inside the window count.

Clients and servers share this machine's cores: the table shows the CPU the server's
process tree, the client and everything else on the machine used in each window, so a
client-bound cell, or one disturbed by other programs, can be recognised. The default
client is a minimal HTTP/1.1 client (``--client raw``) that costs a small fraction of
httpx's CPU: with httpx the load generator saturates first on a 2-core machine.
``--client httpx`` uses one ``httpx.AsyncClient`` per virtual client.

Run from the repository root::

    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/api_throughput.py --seconds 5
    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/api_throughput.py --client httpx

Prints a table and writes ``benchmarks/results/api_throughput.json`` (``--output``);
``--profile-dir DIR`` also samples the service with py-spy during the busiest cells.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper modules
import _machine

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUTPUT = HERE / "results" / "api_throughput.json"

NOOP_KIND = "bench.noop"  # registered by _bench_kinds
BODY = json.dumps({"kind": NOOP_KIND, "params": {}}).encode()
TENANT = "bench"

TARGET_SUBMISSIONS_PER_S = 300.0
TARGET_P99_MS = 50.0
TARGET_CLIENTS = 16
NOISY_OTHER_CPU_CORES = 0.2

T = TypeVar("T")

# Wide enough for the results table when the output is not a terminal (CI logs, pipes).
console = Console(width=None if sys.stdout.isatty() else 200)


# --- servers ----------------------------------------------------------------------


@dataclass
class Server:
    """A server subprocess, leader of its own session (so its workers can be found)."""

    label: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self, grace_s: float = 15.0) -> None:
        """Stop the server and everything it started (workers, job processes)."""
        process = self.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace_s)
        # Whatever is left of the session it leads (a stuck worker or job process).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(data_dir: Path) -> dict[str, str]:
    """The environment of a server: ours without any PRIVAUDIT_* setting, plus the
    benchmark's own."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PRIVAUDIT_")}
    env.update(
        PRIVAUDIT_DATA_DIR=str(data_dir),
        PRIVAUDIT_JOB_PLUGINS="_bench_kinds",
        PYTHONPATH=str(HERE),
        HOME=str(data_dir),
        PYTHONSAFEPATH="1",
    )
    return env


def start_server(label: str, command: list[str], *, cwd: Path, env: dict[str, str]) -> Server:
    log_path = cwd / f"{label.replace(' ', '_').replace('=', '-')}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    port = command[command.index("--port") + 1]
    return Server(label, process, f"http://127.0.0.1:{port}", log_path)


def wait_healthy(server: Server, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.base_url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"{server.label} exited with code {server.process.returncode}:\n"
                    + server.log_tail()
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get("/v1/health").status_code == 200:
                    return
            time.sleep(0.1)
    raise RuntimeError(f"{server.label} not healthy after {timeout_s:g} s:\n" + server.log_tail())


def privaudit_executable() -> str:
    candidate = Path(sys.prefix) / "bin" / "privaudit"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("privaudit")
    if found is None:
        raise SystemExit("cannot find the `privaudit` command; install the package first")
    return found


def create_api_key(data_dir: Path) -> str:
    """Create a key in the server's database, as ``privaudit keys create`` would."""
    from privaudit.api.db import Database
    from privaudit.api.keys import create_key
    from privaudit.api.settings import Settings

    settings = Settings(data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
    database = Database(settings.resolved_database_url)
    try:
        with database.session() as session:
            key, _row = create_key(session, tenant=TENANT, label="benchmark")
    finally:
        database.dispose()
    return key


def jobs_by_status(data_dir: Path) -> dict[str, int]:
    """How many jobs ended in each status (shows how far the workers got)."""
    from sqlalchemy import func, select

    from privaudit.api.db import Database
    from privaudit.api.models import Job
    from privaudit.api.settings import Settings

    settings = Settings(data_dir=data_dir, _env_file=None)  # type: ignore[call-arg]
    database = Database(settings.resolved_database_url)
    try:
        with database.session() as session:
            rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    finally:
        database.dispose()
    return {status: count for status, count in rows}


# --- CPU accounting ---------------------------------------------------------------

_CLOCK_TICKS = _machine.CLOCK_TICKS
busy_cpu_seconds = _machine.busy_cpu_seconds


def session_cpu_seconds(session_id: int) -> float | None:
    """CPU seconds used by every process of a session, including reaped children.

    Linux only (reads ``/proc``); ``None`` elsewhere.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    total = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        if int(fields[3]) != session_id:
            continue
        # utime, stime, cutime, cstime (fields 14-17 of proc(5))
        total += sum(int(value) for value in fields[11:15])
    return total / _CLOCK_TICKS


# --- load generation --------------------------------------------------------------


@dataclass
class Cell:
    """One measured combination of server, operation and concurrency."""

    config: str
    operation: str
    clients: int
    seconds: float
    n_requests: int
    errors: int
    throughput_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    statuses: dict[str, int]
    server_cpu_cores: float | None
    server_cpu_ms_per_request: float | None
    client_cpu_cores: float
    other_cpu_cores: float | None
    profile: str | None = None


@dataclass
class LoadSpec:
    operation: str  # "submit" | "read"
    clients: int
    warmup_s: float
    seconds: float
    read_ids: list[str] = field(default_factory=list)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (``q`` in [0, 100])."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(q / 100 * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class HttpxClient:
    """One virtual client: its own ``httpx.AsyncClient`` holding one keep-alive connection.

    One pool per virtual client rather than one shared pool of N connections: httpcore's
    pool scans every connection on each request, which at 16 connections made the
    client, not the server, the bottleneck of the anchor.
    """

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=30.0,
        )

    async def request(self, method: str, path: str, body: bytes | None) -> tuple[str, str | None]:
        """Send one request; returns (status code or exception name, Location header)."""
        try:
            if body is None:
                response = await self._client.request(method, path)
            else:
                response = await self._client.request(
                    method, path, content=body, headers={"Content-Type": "application/json"}
                )
        except httpx.HTTPError as error:
            return type(error).__name__, None
        return str(response.status_code), response.headers.get("location")

    async def aclose(self) -> None:
        await self._client.aclose()


class RawClient:
    """One virtual client speaking minimal HTTP/1.1 over one asyncio connection.

    Far cheaper per request than httpx, so on a small machine it leaves more CPU to
    the server. Handles exactly what these two servers send: ``Content-Length`` bodies,
    keep-alive, ``Connection: close``.
    """

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        url = httpx.URL(base_url)
        self._host, self._port = url.host, url.port or 80
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._head = f"Host: {self._host}:{self._port}\r\n{extra}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None) -> tuple[str, str | None]:
        """Send one request; returns (status code or exception name, Location header)."""
        try:
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
            assert self._reader is not None
            content = body or b""
            typed = "Content-Type: application/json\r\n" if body is not None else ""
            head = f"{method} {path} HTTP/1.1\r\n{self._head}{typed}"
            head += f"Content-Length: {len(content)}\r\n\r\n"
            self._writer.write(head.encode() + content)
            raw = await self._reader.readuntil(b"\r\n\r\n")
            lines = raw.split(b"\r\n")
            status = lines[0].split(b" ", 2)[1].decode()
            fields = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                fields[name.strip().lower()] = value.strip()
            if b"transfer-encoding" in fields:
                raise ValueError("chunked responses are not supported by the raw client")
            await self._reader.readexactly(int(fields.get(b"content-length", b"0")))
            if fields.get(b"connection", b"").lower() == b"close":
                await self.aclose()
            location = fields.get(b"location")
            return status, None if location is None else location.decode()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            await self.aclose()
            return type(e).__name__, None

    async def aclose(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


CLIENTS: dict[str, type[HttpxClient] | type[RawClient]] = {"httpx": HttpxClient, "raw": RawClient}


async def run_cell(
    server: Server,
    config: str,
    headers: dict[str, str],
    spec: LoadSpec,
    created: list[str],
    client_kind: str = "httpx",
) -> Cell:
    """Drive ``spec.clients`` closed-loop clients; collect created job ids into ``created``."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    cpu: dict[str, float | None] = {}
    clients = [CLIENTS[client_kind](server.base_url, headers) for _ in range(spec.clients)]
    try:
        # perf_counter, not loop.time(): uvloop's clock has a resolution of 1 ms.
        measure_from = time.perf_counter() + spec.warmup_s
        measure_to = measure_from + spec.seconds

        async def one_client(index: int) -> None:
            client = clients[index]
            turn = index
            ids = spec.read_ids
            while True:
                started = time.perf_counter()
                if started >= measure_to:
                    return
                if spec.operation == "submit":
                    status, location = await client.request("POST", "/v1/jobs", BODY)
                else:
                    status, location = await client.request(
                        "GET", f"/v1/jobs/{ids[turn % len(ids)]}", None
                    )
                finished = time.perf_counter()
                turn += spec.clients
                if measure_from <= finished <= measure_to:
                    latencies.append(finished - started)
                    statuses[status] += 1
                if spec.operation == "submit" and status == "202" and location:
                    created.append(location.rsplit("/", 1)[-1])

        def sample(suffix: str) -> None:
            cpu["server" + suffix] = session_cpu_seconds(server.process.pid)
            cpu["busy" + suffix] = busy_cpu_seconds()
            cpu["client" + suffix] = time.process_time()
            cpu["wall" + suffix] = time.perf_counter()

        async def sample_cpu() -> None:
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            sample("0")
            await asyncio.sleep(max(0.0, measure_to - time.perf_counter()))
            sample("1")

        await asyncio.gather(sample_cpu(), *(one_client(index) for index in range(spec.clients)))
    finally:
        for client in clients:
            await client.aclose()

    latencies.sort()
    n = len(latencies)
    ok = sum(count for status, count in statuses.items() if status.isdigit() and status[0] == "2")
    wall = float(cpu["wall1"] or 0.0) - float(cpu["wall0"] or 0.0)
    server_cpu: float | None = None
    if cpu["server0"] is not None and cpu["server1"] is not None:
        server_cpu = cpu["server1"] - cpu["server0"]
    client_cpu = float(cpu["client1"] or 0.0) - float(cpu["client0"] or 0.0)
    other_cpu: float | None = None
    if server_cpu is not None and cpu["busy0"] is not None and cpu["busy1"] is not None:
        # Whatever else ran on this machine meanwhile (other programs, the profiler).
        other_cpu = max(0.0, cpu["busy1"] - cpu["busy0"] - server_cpu - client_cpu)
    return Cell(
        config=config,
        operation=spec.operation,
        clients=spec.clients,
        seconds=spec.seconds,
        n_requests=n,
        errors=n - ok,
        throughput_per_s=ok / spec.seconds,
        p50_ms=percentile(latencies, 50) * 1e3,
        p90_ms=percentile(latencies, 90) * 1e3,
        p99_ms=percentile(latencies, 99) * 1e3,
        mean_ms=(statistics.fmean(latencies) * 1e3) if latencies else float("nan"),
        max_ms=(latencies[-1] * 1e3) if latencies else float("nan"),
        statuses=dict(sorted(statuses.items())),
        server_cpu_cores=None if server_cpu is None else server_cpu / wall,
        server_cpu_ms_per_request=None if server_cpu is None or not n else server_cpu / n * 1e3,
        client_cpu_cores=client_cpu / wall,
        other_cpu_cores=None if other_cpu is None else other_cpu / wall,
    )


@contextlib.contextmanager
def py_spy(pid: int, output: Path | None, seconds: float) -> Iterator[str | None]:
    """Sample the threads of ``pid`` (and its children) that hold the GIL, with py-spy,
    while the body runs (if asked): where the server's Python CPU time goes."""
    executable = shutil.which("py-spy") or str(Path(sys.prefix) / "bin" / "py-spy")
    if output is None or not Path(executable).exists():
        yield None
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    command = [executable, "record", "--pid", str(pid), "--subprocesses", "--gil"]
    command += ["--rate", "250"]
    command += ["--duration", str(max(1, round(seconds))), "--format", "raw", "-o", str(output)]
    recorder = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield str(output)
    finally:
        try:
            recorder.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()


async def measure_server(
    server: Server,
    config: str,
    headers: dict[str, str],
    args: argparse.Namespace,
    *,
    read_ids: list[str] | None = None,
) -> list[Cell]:
    """Every cell for one server: submissions first (they create the jobs to read)."""
    cells: list[Cell] = []
    created: list[str] = []
    for operation in ("submit", "read"):
        for clients in args.clients:
            ids = read_ids if read_ids is not None else created[:5000]
            if operation == "read" and not ids:
                raise RuntimeError(f"{config}: no job was created, so there is nothing to read")
            spec = LoadSpec(operation, clients, args.warmup, args.seconds, list(ids or []))
            profile_path = None
            if args.profile_dir is not None and config != "anchor" and clients == max(args.clients):
                profile_path = args.profile_dir / f"{config}-{operation}-{clients}.txt"
            # The profiler starts with the warm-up and stops with the window.
            with py_spy(server.process.pid, profile_path, args.warmup + args.seconds) as profile:
                cell = await run_cell(server, config, headers, spec, created, args.client)
            cell.profile = profile
            cells.append(cell)
            console.print(
                f"  {config:>15} {operation:>6} x{clients:<3} {cell.throughput_per_s:8.1f}/s "
                f"p50 {cell.p50_ms:6.2f} ms  p99 {cell.p99_ms:7.2f} ms  errors {cell.errors}"
            )
    return cells


# --- the run ----------------------------------------------------------------------


class _StoppedError(Exception):
    pass


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise _StoppedError(f"stopped by signal {signum}")


def _install_stop_handlers() -> None:
    # Also when started with SIGINT ignored (a background job of a script).
    for signum in _STOP_SIGNALS:
        signal.signal(signum, _raise_stopped)


def run_stoppable(runner: asyncio.Runner, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine``; Ctrl-C or SIGTERM cancel it and raise :class:`_StoppedError`.

    Inside the event loop a Python-level signal handler's exception can be swallowed
    by the loop, so the loop's own handlers cancel the measurement instead.
    """

    async def main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        received: list[int] = []

        def stop(signum: int) -> None:
            received.append(signum)
            task.cancel()

        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, stop, signum)
        try:
            return await coroutine
        except asyncio.CancelledError:
            if received:
                raise _StoppedError(f"stopped by signal {received[0]}") from None
            raise
        finally:
            for signum in _STOP_SIGNALS:
                loop.remove_signal_handler(signum)

    try:
        return runner.run(main())
    finally:
        _install_stop_handlers()  # remove_signal_handler put the defaults back


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def run_all(args: argparse.Namespace, workdir: Path, servers: list[Server]) -> dict[str, Any]:
    """Measure the anchor, then the service in each configuration, one server at a time."""
    results: dict[str, Any] = {"cells": [], "configs": []}
    runner = asyncio.Runner(loop_factory=_new_loop)
    try:
        anchor_dir = workdir / "anchor"
        anchor_dir.mkdir()
        port = free_port()
        anchor_cmd = [sys.executable, "-m", "uvicorn", "_anchor_app:app", "--port", str(port)]
        anchor_cmd += ["--host", "127.0.0.1", "--no-access-log", "--log-level", "warning"]
        anchor = start_server("anchor", anchor_cmd, cwd=anchor_dir, env=server_env(anchor_dir))
        servers.append(anchor)
        wait_healthy(anchor)
        console.print(f"[bold]anchor[/] (FastAPI + uvicorn, no database, no auth) on {port}")
        fake_ids = [os.urandom(16).hex() for _ in range(1000)]
        headers = {"Authorization": "Bearer pa_000000000000_" + "x" * 43}
        results["cells"] += run_stoppable(
            runner, measure_server(anchor, "anchor", headers, args, read_ids=fake_ids)
        )
        anchor.stop()
        results["configs"].append({"config": "anchor", "command": anchor_cmd})

        for workers in args.job_workers:
            config = f"job-workers={workers}"
            data_dir = workdir / f"data-{workers}"
            data_dir.mkdir()
            port = free_port()
            command = [privaudit_executable(), "serve", "--port", str(port)]
            command += ["--job-workers", str(workers), "--http-workers", str(args.http_workers)]
            server = start_server(config, command, cwd=data_dir, env=server_env(data_dir))
            servers.append(server)
            wait_healthy(server)
            key = create_api_key(data_dir)
            console.print(f"[bold]privaudit serve[/] ({config}, SQLite) on {port}")
            headers = {"Authorization": f"Bearer {key}"}
            results["cells"] += run_stoppable(runner, measure_server(server, config, headers, args))
            counts = jobs_by_status(data_dir)
            server.stop()
            results["configs"].append(
                {
                    "config": config,
                    "command": command,
                    "jobs_by_status_at_end": counts,
                    "server_errors_logged": logged_errors(server, args.output.parent),
                }
            )
    finally:
        runner.close()
    return results


_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception)): ?(.{0,120})")


def logged_errors(server: Server, keep_dir: Path) -> dict[str, Any]:
    """Count the exceptions the server logged; keep its log next to the results if any."""
    try:
        text = server.log_path.read_text(errors="replace")
    except OSError:
        return {}
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        match = _EXCEPTION_LINE.match(line)
        if match:
            counts[f"{match.group(1)}: {match.group(2)}".strip()] += 1
    if not counts:
        return {}
    keep_dir.mkdir(parents=True, exist_ok=True)
    kept = keep_dir / f"api_throughput-{server.label.replace('=', '-')}.log"
    shutil.copyfile(server.log_path, kept)
    return {"log": str(kept), "exceptions": dict(counts.most_common(10))}


def machine_info() -> dict[str, Any]:
    return _machine.machine_info(
        [
            "privaudit",
            "fastapi",
            "starlette",
            "uvicorn",
            "uvloop",
            "httptools",
            "pydantic",
            "sqlalchemy",
            "httpx",
        ]
    )


def target_verdicts(cells: list[Cell], job_workers: list[int]) -> list[dict[str, Any]]:
    verdicts = []
    for workers in job_workers:
        config = f"job-workers={workers}"
        cell = next(
            (
                c
                for c in cells
                if c.config == config and c.operation == "submit" and c.clients == TARGET_CLIENTS
            ),
            None,
        )
        if cell is None:
            verdicts.append({"config": config, "met": None, "why": "16 clients not measured"})
            continue
        fast = cell.throughput_per_s >= TARGET_SUBMISSIONS_PER_S
        tight = cell.p99_ms < TARGET_P99_MS
        verdicts.append(
            {
                "config": config,
                "met": fast and tight and cell.errors == 0,
                "submissions_per_s": round(cell.throughput_per_s, 1),
                "p99_ms": round(cell.p99_ms, 2),
                "errors": cell.errors,
            }
        )
    return verdicts


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def print_table(cells: list[Cell], args: argparse.Namespace) -> None:
    anchors = {(c.operation, c.clients): c for c in cells if c.config == "anchor"}
    table = Table(
        title=f"API throughput: closed-loop {args.client} clients on loopback, "
        f"{args.seconds:g} s per cell after {args.warmup:g} s warm-up",
        caption="ratio = ours / anchor (anchor: same FastAPI + uvicorn stack, no database, "
        f"no auth). CPU in cores (of {os.cpu_count()}) over the window: the server's "
        "process tree, this client, and everything else on the machine. CPU ms/req: "
        "server CPU per answered request.",
    )
    for name, justify in [
        ("server", "left"),
        ("operation", "left"),
        ("clients", "right"),
        ("req/s", "right"),
        ("p50 ms", "right"),
        ("p99 ms", "right"),
        ("requests", "right"),
        ("errors", "right"),
        ("req/s ratio", "right"),
        ("p99 ratio", "right"),
        ("server CPU", "right"),
        ("CPU ms/req", "right"),
        ("client CPU", "right"),
        ("other CPU", "right"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    order = {"submit": 0, "read": 1}
    for cell in sorted(cells, key=lambda c: (order[c.operation], c.clients, c.config != "anchor")):
        anchor = anchors.get((cell.operation, cell.clients))
        ratio = p99_ratio = None
        if anchor is not None and cell.config != "anchor" and anchor.throughput_per_s:
            ratio = cell.throughput_per_s / anchor.throughput_per_s
            p99_ratio = cell.p99_ms / anchor.p99_ms
        table.add_row(
            cell.config,
            "POST /v1/jobs" if cell.operation == "submit" else "GET /v1/jobs/{id}",
            str(cell.clients),
            _fmt(cell.throughput_per_s, ".1f"),
            _fmt(cell.p50_ms, ".2f"),
            _fmt(cell.p99_ms, ".2f"),
            str(cell.n_requests),
            f"[red]{cell.errors}[/]" if cell.errors else "0",
            _fmt(ratio, ".2f") + ("x" if ratio is not None else ""),
            _fmt(p99_ratio, ".1f") + ("x" if p99_ratio is not None else ""),
            _fmt(cell.server_cpu_cores, ".2f"),
            _fmt(cell.server_cpu_ms_per_request, ".2f"),
            _fmt(cell.client_cpu_cores, ".2f"),
            _fmt(cell.other_cpu_cores, ".2f"),
            end_section=cell.config == f"job-workers={args.job_workers[-1]}",
        )
    console.print(table)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def int_list(text: str) -> list[int]:
        return [int(part) for part in text.split(",") if part.strip()]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring window per cell")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up per cell (seconds)")
    parser.add_argument(
        "--clients", type=int_list, default=[1, 16], help="concurrency levels, e.g. 1,4,16"
    )
    parser.add_argument(
        "--http-workers",
        type=int,
        default=1,
        help="HTTP server processes of the service (serve --http-workers); the anchor has one",
    )
    parser.add_argument(
        "--job-workers",
        type=int_list,
        default=[1, 0],
        help="service configurations to measure: job worker processes started by serve "
        "(default 1,0: the default configuration, then HTTP and database only)",
    )
    parser.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="raw",
        help="load generator: a minimal HTTP/1.1 client over asyncio streams (default; it "
        "leaves the shared CPU to the servers), or httpx.AsyncClient per virtual client",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=None,
        help="sample the service's GIL-holding threads with py-spy (collapsed stacks, one "
        "file per cell) during the cells at the highest concurrency; those cells' figures "
        "are perturbed by the sampling",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be positive and --warmup not negative")
    if not args.clients or min(args.clients) < 1:
        parser.error("--clients needs positive integers")
    if not args.job_workers or min(args.job_workers) < 0:
        parser.error("--job-workers needs integers >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _install_stop_handlers()
    servers: list[Server] = []
    workdir = Path(tempfile.mkdtemp(prefix="privaudit-bench-"))
    started = dt.datetime.now(dt.UTC)
    try:
        results = run_all(args, workdir, servers)
    except (KeyboardInterrupt, _StoppedError):
        console.print("[red]interrupted[/]: stopping the servers")
        return 130
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        for signum in _STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        for server in servers:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        for signum in _STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)

    cells: list[Cell] = results["cells"]
    print_table(cells, args)
    verdicts = target_verdicts(cells, args.job_workers)
    for verdict in verdicts:
        if verdict["met"] is None:
            console.print(f"target ({verdict['config']}): {verdict['why']}")
            continue
        mark = "[green]met[/]" if verdict["met"] else "[red]missed[/]"
        console.print(
            f"target >= {TARGET_SUBMISSIONS_PER_S:g} submissions/s and p99 < {TARGET_P99_MS:g} ms "
            f"at {TARGET_CLIENTS} clients on SQLite, {verdict['config']}: {mark} "
            f"({verdict['submissions_per_s']}/s, p99 {verdict['p99_ms']} ms, "
            f"{verdict['errors']} errors)"
        )
    for config in results["configs"]:
        if "jobs_by_status_at_end" in config:
            console.print(
                f"jobs by status at the end, {config['config']}: {config['jobs_by_status_at_end']}"
            )
        logged = config.get("server_errors_logged")
        if logged:
            console.print(f"[red]server errors logged[/], {config['config']} ({logged['log']}):")
            for line, count in logged["exceptions"].items():
                console.print(f"  {count:6d} x {line}")
    noisy = [cell for cell in cells if (cell.other_cpu_cores or 0.0) > NOISY_OTHER_CPU_CORES]
    if noisy:
        worst = max(cell.other_cpu_cores or 0.0 for cell in noisy)
        console.print(
            f"[yellow]warning[/]: other programs used up to {worst:.2f} cores during "
            f"{len(noisy)} of {len(cells)} cells (column 'other CPU'): the machine was not "
            "quiet, so those figures understate what this machine can do"
        )

    document = {
        "benchmark": "api_throughput",
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "settings": {
            "seconds_per_cell": args.seconds,
            "warmup_s_per_cell": args.warmup,
            "clients": args.clients,
            "job_workers": args.job_workers,
            "database": "SQLite (WAL, synchronous=NORMAL) in a temporary data dir",
            "client": args.client,
            "client_description": (
                "one httpx.AsyncClient with one keep-alive connection per virtual client"
                if args.client == "httpx"
                else "minimal HTTP/1.1 keep-alive client over asyncio streams"
            )
            + "; all virtual clients in one process on uvloop, closed loop, 127.0.0.1",
            "request_bodies": {"submit": json.loads(BODY)},
            "window": "a response counts if it arrives inside the window; req/s = 2xx in "
            "window / window length",
            "profiled": args.profile_dir is not None,
        },
        "anchor": "benchmarks/_anchor_app.py: FastAPI + uvicorn (same defaults as serve), same "
        "request validation and response shape, no database, no auth",
        "configs": results["configs"],
        "target": {
            "submissions_per_s": TARGET_SUBMISSIONS_PER_S,
            "p99_ms": TARGET_P99_MS,
            "clients": TARGET_CLIENTS,
            "verdicts": verdicts,
        },
        "cells": [asdict(cell) for cell in cells],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2, default=str) + "\n")
    console.print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

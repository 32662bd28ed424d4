"""RayExecutor against a real local Ray instance started by the test, on loopback only."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path

import executor_units as units
import pytest

from privaudit.errors import WorkUnitError
from privaudit.executor import RayExecutor, SerialExecutor, WorkUnit, collect

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed (privaudit[ray])"
)

SUPPORT = Path(units.__file__).resolve().parent
RAY_VARIABLES = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")


@pytest.fixture(scope="module")
def ray_executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayExecutor]:
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("ray-home")
        patch.setenv("HOME", str(home))  # Ray writes an auth token under ~/.ray
        patch.setenv("PYTHONPATH", str(SUPPORT))  # Ray workers import executor_units
        for name in RAY_VARIABLES:
            patch.delenv(name, raising=False)
        executor = RayExecutor(num_cpus=2).start()
        try:
            assert all(os.environ[name] == "0" for name in RAY_VARIABLES)
            yield executor
        finally:
            executor.shutdown()
            for name in RAY_VARIABLES:
                os.environ.pop(name, None)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def _process_tree(root: int) -> set[int]:
    tree, found, stack = _children(), {root}, [root]
    while stack:
        for child in tree.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _socket_inodes(pids: set[int]) -> set[int]:
    inodes: set[int] = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
        except OSError:
            continue
    return inodes


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(text)
    # /proc/net/tcp{,6} prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """inode -> (address, port) of every TCP socket in LISTEN state on this machine."""
    found: dict[int, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] != "0A":  # LISTEN
                continue
            host, port = parts[1].split(":")
            address = _address(host)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            found[int(parts[9])] = (str(address), int(port, 16))
    return found


def test_ray_listens_on_loopback_only_without_dashboard(ray_executor: RayExecutor) -> None:
    assert ray_executor.node_address == "127.0.0.1"
    ours = _socket_inodes(_process_tree(os.getpid()))
    listening = [where for inode, where in _listening_sockets().items() if inode in ours]
    assert len(listening) >= 3, listening  # GCS, raylet, the driver's core worker at least
    beyond = [where for where in listening if not ipaddress.ip_address(where[0]).is_loopback]
    assert beyond == []
    assert 8265 not in {port for _, port in listening}  # the dashboard's port
    commands = []
    for pid in _process_tree(os.getpid()):
        try:
            commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"))
        except OSError:
            continue
    # Without the dashboard, Ray still runs its head process in minimal mode (usage
    # stats only, reporting off): no web frontend, no HTTP server, no listening port.
    dashboards = [command for command in commands if any(b"dashboard.py" in a for a in command)]
    assert all(
        b"--minimal" in command and b"--disable-frontend" in command for command in dashboards
    )
    assert not any(b"ray_client_server" in argument for command in commands for argument in command)


def test_ray_runs_units_concurrently_like_serial(ray_executor: RayExecutor, tmp_path: Path) -> None:
    work = [WorkUnit(i, units.square, (i,)) for i in range(6)]
    assert collect(ray_executor, work) == collect(SerialExecutor(), work)
    meeting = [WorkUnit(i, units.rendezvous, (str(tmp_path), i, 2)) for i in range(2)]
    results = list(ray_executor.run(meeting))
    assert len({result.value["pid"] for result in results}) == 2
    assert all("ray, cpu" in result.worker for result in results)
    assert ray_executor.capacity == 2 and ray_executor.describe()["address"] == "local"


def test_a_failing_ray_unit_is_a_work_unit_error(ray_executor: RayExecutor) -> None:
    with pytest.raises(WorkUnitError, match="work unit 3 failed") as caught:
        collect(ray_executor, [WorkUnit(i, units.fail_on, (i, 3)) for i in range(5)])
    assert caught.value.details["index"] == 3
    assert caught.value.details["error_type"] == "privaudit.errors.ParameterError"
    assert "told to fail" in str(caught.value)

"""The Ray backend of :mod:`privaudit.executor` (``pip install 'privaudit[ray]'``).

Ray is imported only when a :class:`RayExecutor` starts. When it starts Ray itself
(no ``address``, no Ray already running in this process), Ray listens on loopback
only, with no dashboard, no Ray Client server and no usage-stats reporting: Ray's
endpoints have no authentication worth the name and its own position is that the
cluster must sit behind a trust boundary (CVE-2023-48022). To use several machines,
start the cluster yourself on a private network and pass its ``address``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Self

from privaudit._executor_base import ExecutorBase, UnitResult, WorkUnit, this_worker, unit_failure
from privaudit.errors import ConfigurationError, MissingDependencyError, ParameterError

if TYPE_CHECKING:
    from privaudit.progress import ProgressCallback

__all__ = ["RayExecutor"]

_POLL_SECONDS = 0.2
_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray reads this when it is imported: ``0`` makes it pick the loopback address as the
node address, so that every server of a local instance binds to 127.0.0.1 (Ray 2.5x
and later bind their gRPC servers to the node address)."""


def _import_ray(*, local: bool) -> Any:
    if local and "ray" not in sys.modules:
        os.environ.setdefault(_LOOPBACK_ONLY, "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as error:
        raise MissingDependencyError(
            "the Ray executor needs Ray; run: pip install 'privaudit[ray]'"
        ) from error
    return ray


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _call_unit(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[Any, float, str]:
    """Run one unit inside a Ray worker; returns its value, its seconds and the worker."""
    import ray

    gpus = ray.get_gpu_ids()
    device = "cuda:" + ",".join(str(gpu) for gpu in gpus) if gpus else "cpu"
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - started, this_worker(f"ray, {device}")


def _check_amount(value: object, name: str, *, minimum: float, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        raise ParameterError(
            f"{name} must be a number >= {minimum:g}{' or None' if allow_none else ''}; "
            f"got {value!r}",
            parameter=name,
        )


class RayExecutor(ExecutorBase):
    """Units as Ray tasks, on a local Ray instance or on a cluster.

    Parameters
    ----------
    address
        A running cluster to connect to (``"auto"``, ``"ray://host:10001"``,
        ``"host:6379"``). ``None``: use Ray if this process already initialised it,
        otherwise start a local instance bound to loopback.
    num_cpus, num_gpus
        Resources of a local instance this executor starts (default: Ray's detection).
    num_cpus_per_unit, num_gpus_per_unit
        Resources each unit asks for. A fraction of a GPU packs several small models
        on one GPU (``0.25``: four at a time); Ray pins each task to its GPU with
        ``CUDA_VISIBLE_DEVICES``.
    max_retries
        How often Ray retries a unit whose worker died (units are idempotent). A unit
        that raises is not retried.
    temp_dir
        Ray's session directory for a local instance (default: Ray's, ``/tmp/ray``).
    """

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        num_cpus_per_unit: float = 1.0,
        num_gpus_per_unit: float = 0.0,
        max_retries: int = 2,
        temp_dir: str | None = None,
    ) -> None:
        super().__init__()
        if address is not None and (not isinstance(address, str) or not address):
            raise ParameterError(f"address must be a non-empty string or None; got {address!r}")
        _check_amount(num_cpus, "num_cpus", minimum=1, allow_none=True)
        _check_amount(num_gpus, "num_gpus", minimum=0, allow_none=True)
        _check_amount(num_cpus_per_unit, "num_cpus_per_unit", minimum=0, allow_none=False)
        _check_amount(num_gpus_per_unit, "num_gpus_per_unit", minimum=0, allow_none=False)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ParameterError(f"max_retries must be an int >= 0; got {max_retries!r}")
        if num_gpus_per_unit > 1 and num_gpus_per_unit != int(num_gpus_per_unit):
            raise ParameterError(
                f"num_gpus_per_unit above 1 must be a whole number; got {num_gpus_per_unit!r}"
            )
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.num_cpus_per_unit = float(num_cpus_per_unit)
        self.num_gpus_per_unit = float(num_gpus_per_unit)
        self.max_retries = max_retries
        self.temp_dir = temp_dir
        self._ray: Any = None
        self._owns_ray = False
        self._node_address: str | None = None

    @property
    def started(self) -> bool:
        """Whether this executor is connected to Ray."""
        return self._ray is not None

    @property
    def node_address(self) -> str | None:
        """The address of the Ray node this process runs on (loopback when we started it)."""
        return self._node_address

    @property
    def capacity(self) -> int:
        """Units that fit at the same time in the cluster's resources (1 at least)."""
        if self._ray is None:
            cpus = float(self.num_cpus or os.cpu_count() or 1)
            gpus = float(self.num_gpus or 0)
        else:
            resources = self._ray.cluster_resources()
            cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        fits = [cpus / self.num_cpus_per_unit] if self.num_cpus_per_unit else []
        if self.num_gpus_per_unit:
            fits.append(gpus / self.num_gpus_per_unit)
        return max(1, int(min(fits))) if fits else max(1, int(cpus))

    def describe(self) -> dict[str, Any]:
        """Backend, address, capacity and the resources each unit asks for."""
        return {
            "executor": self.name,
            "capacity": self.capacity,
            "address": self.address or "local",
            "node_address": self._node_address,
            "num_cpus_per_unit": self.num_cpus_per_unit,
            "num_gpus_per_unit": self.num_gpus_per_unit,
            "max_retries": self.max_retries,
        }

    def start(self) -> Self:
        """Connect to Ray, or start a loopback-only local instance; returns self."""
        if self._ray is not None:
            return self
        ray = _import_ray(local=self.address is None)
        if ray.is_initialized():
            self._owns_ray = False
        elif self.address is not None:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.WARNING)
            self._owns_ray = True
        else:
            self._start_local(ray)
            self._owns_ray = True
        self._ray = ray
        self._node_address = str(ray.util.get_node_ip_address())
        return self

    def _start_local(self, ray: Any) -> None:
        planned = str(ray.util.get_node_ip_address())
        if not _is_loopback(planned):
            raise ConfigurationError(
                f"Ray would listen on {planned}, not on loopback, because it was imported "
                f"before privaudit could set {_LOOPBACK_ONLY}=0; privaudit does not start a "
                f"Ray instance reachable from the network. Set {_LOOPBACK_ONLY}=0 before "
                "importing ray, or start a cluster yourself on a private network and pass "
                "its address"
            )
        options: dict[str, Any] = {
            "address": "local",
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "_node_ip_address": planned,
        }
        if self.temp_dir is not None:
            options["_temp_dir"] = self.temp_dir
        ray.init(**options)
        actual = str(ray.util.get_node_ip_address())
        if not _is_loopback(actual):
            ray.shutdown()
            raise ConfigurationError(
                f"the local Ray instance chose node address {actual}, not loopback; it was "
                "shut down. Start a cluster yourself and pass its address"
            )

    def _execute(
        self, units: list[WorkUnit], on_progress: ProgressCallback | None
    ) -> Iterator[UnitResult]:
        self.start()
        ray = self._ray
        remote = ray.remote(_call_unit)
        resources = {
            "num_cpus": self.num_cpus_per_unit,
            "num_gpus": self.num_gpus_per_unit,
            "max_retries": self.max_retries,
            "retry_exceptions": False,
        }
        refs: dict[Any, int] = {}
        total, done = len(units), 0
        finished = False
        try:
            for unit in units:
                try:
                    ref = remote.options(name=f"privaudit-unit-{unit.index}", **resources).remote(
                        unit.function, unit.args, dict(unit.kwargs)
                    )
                except Exception as error:  # serialisation errors of several kinds
                    raise ParameterError(
                        f"work unit {unit.index} cannot be sent to Ray ({error}); its function "
                        "must be importable and its arguments serialisable",
                        index=unit.index,
                    ) from error
                refs[ref] = unit.index
            while refs:
                self._check_cancelled(done, total)
                ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=_POLL_SECONDS)
                for ref in ready:
                    index = refs.pop(ref)
                    value, seconds, worker = self._get(ref, index)
                    done += 1
                    if on_progress is not None:
                        on_progress(done, total)
                    yield UnitResult(index, value, seconds, worker)
            finished = True
        finally:
            if not finished:
                for ref in refs:
                    with contextlib.suppress(Exception):  # best effort: it may have finished
                        ray.cancel(ref, force=True)

    def _get(self, ref: Any, index: int) -> tuple[Any, float, str]:
        ray = self._ray
        try:
            value, seconds, worker = ray.get(ref)
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if isinstance(error.cause, BaseException) else error
            kind = type(cause).__qualname__
            if type(cause).__module__ not in ("builtins", "__main__"):
                kind = f"{type(cause).__module__}.{kind}"
            raise unit_failure(index, kind, str(cause), str(error), worker="a Ray worker") from None
        except ray.exceptions.RayError as error:
            raise unit_failure(
                index, type(error).__qualname__, str(error), None, worker="a Ray worker"
            ) from None
        return value, float(seconds), str(worker)

    def shutdown(self) -> None:
        """Shut down the Ray instance this executor started (or disconnect from a cluster)."""
        ray, self._ray = self._ray, None
        if ray is not None and self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False

"""Fan-out of independent work units: one :class:`Executor` protocol, three backends.

Audits repeat the same independent computation many times: LiRA trains tens to
hundreds of reference models [CCN22]_, each a pure function of a seed and its index.
A *work unit* (:class:`WorkUnit`) is one such call; an *executor* runs a list of them
and yields each :class:`UnitResult` as it completes, reports progress through a plain
``on_progress(done, total)`` callback, can be cancelled from another thread, and shuts
its workers down cleanly. Backends, registered by name in :data:`executors`:

* ``"serial"``, :class:`SerialExecutor`: one unit at a time in the calling process
  (debugging, tiny work, examples).
* ``"local"``, :class:`LocalProcessExecutor`, the default: fresh worker processes
  (the ``spawn`` start method, so no state is inherited by fork), one per core; with
  CUDA, one per visible GPU (or several per GPU) pinned with ``CUDA_VISIBLE_DEVICES``,
  as LiRA's multi-GPU script does.
* ``"ray"``, :class:`RayExecutor` (``pip install 'privaudit[ray]'``): a Ray cluster,
  for more than one machine. When it starts Ray itself, Ray listens on loopback only
  and runs no dashboard.

Units must be idempotent, so that a unit can be retried and a restarted run can skip
finished ones (see ``privaudit.attacks.membership.run_reference_training``).

Security: a unit's function and arguments travel to the workers pickled. They are
privaudit's own objects, sent between processes privaudit started (or to a Ray cluster
the caller runs and trusts); nothing a client sent is ever unpickled. Client data
reaches a unit as files the unit reads with ``numpy.load(..., allow_pickle=False)``.

References
----------
.. [CCN22] N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramèr, "Membership
   Inference Attacks From First Principles", IEEE S&P 2022, arXiv:2112.03570.

Examples
--------
>>> from operator import mul
>>> from privaudit.executor import SerialExecutor, WorkUnit, collect
>>> collect(SerialExecutor(), [WorkUnit(i, mul, (i, i)) for i in range(4)])
[0, 1, 4, 9]
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from privaudit._executor_base import (
    ExecutorBase,
    UnitResult,
    WorkUnit,
    check_units,
    describe_failure,
    this_worker,
    unit_failure,
)
from privaudit._ray_executor import RayExecutor
from privaudit.errors import ParameterError, WorkUnitError
from privaudit.registry import Registry

if TYPE_CHECKING:
    from privaudit.progress import ProgressCallback

__all__ = [
    "WORKER_DEVICE_VARIABLE",
    "WORKER_THREADS_VARIABLE",
    "Executor",
    "LocalProcessExecutor",
    "RayExecutor",
    "SerialExecutor",
    "UnitResult",
    "WorkUnit",
    "collect",
    "executors",
    "make_executor",
    "usable_cpus",
    "visible_cuda_devices",
]

WORKER_THREADS_VARIABLE = "PRIVAUDIT_WORKER_THREADS"
"""Set in each local worker: the native threads (BLAS, OpenMP, torch) it may use."""

WORKER_DEVICE_VARIABLE = "PRIVAUDIT_WORKER_DEVICE"
"""Set in each local worker: ``"cpu"`` or ``"cuda:<device>"`` (the pinned GPU)."""

_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
_DEVICE = re.compile(r"^(\d{1,3}|GPU-[0-9A-Fa-f-]{8,64}|MIG-[0-9A-Za-z/_-]{4,96})$")
_POLL_SECONDS = 0.2


@runtime_checkable
class Executor(Protocol):
    """Runs :class:`WorkUnit` lists; yields :class:`UnitResult` objects as they complete.

    Use it as a context manager, or call :meth:`shutdown` when done. One run at a time.
    """

    @property
    def capacity(self) -> int:
        """How many units run at the same time."""
        ...

    def start(self) -> Self:
        """Start the workers now rather than at the first run; returns the executor."""
        ...

    def run(
        self, units: Iterable[WorkUnit], *, on_progress: ProgressCallback | None = None
    ) -> Iterator[UnitResult]:
        """Yield each unit's result as it completes (see :meth:`ExecutorBase.run`)."""
        ...

    def cancel(self) -> None:
        """Ask the current run to stop; it raises ``JobCancelledError``."""
        ...

    def shutdown(self) -> None:
        """Stop the workers; idempotent."""
        ...

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description of the backend and its resources."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def collect(
    executor: Executor, units: Iterable[WorkUnit], *, on_progress: ProgressCallback | None = None
) -> list[Any]:
    """Run ``units`` and return their values in the order the units were given."""
    checked = check_units(units)
    values = {
        result.index: result.value for result in executor.run(checked, on_progress=on_progress)
    }
    return [values[unit.index] for unit in checked]


def usable_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def visible_cuda_devices() -> tuple[str, ...]:
    """The CUDA devices this process may use, as ``CUDA_VISIBLE_DEVICES`` entries.

    ``CUDA_VISIBLE_DEVICES`` decides when it is set (an empty value or ``-1`` means no
    GPU; as in CUDA, the list stops at the first invalid entry). Otherwise the GPUs
    ``nvidia-smi`` lists, or, when torch is already imported, ``torch.cuda``'s count.
    Nothing here initialises CUDA in the calling process.
    """
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        found: list[str] = []
        for entry in (part.strip() for part in value.split(",")):
            if not entry or not _DEVICE.match(entry):
                break
            found.append(entry)
        return tuple(found)
    program = shutil.which("nvidia-smi")
    if program is not None:
        try:
            listing = subprocess.run(  # noqa: S603 - a fixed query of a found binary
                [program, "--query-gpu=index", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""
        indices = tuple(line.strip() for line in listing.splitlines() if line.strip().isdigit())
        if indices:
            return indices
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return tuple(str(index) for index in range(torch.cuda.device_count()))
    return ()


def _check_positive_int(value: object, name: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "a positive int or None" if allow_none else "a positive int"
        raise ParameterError(f"{name} must be {allowed}; got {value!r}", parameter=name)
    return value


def _check_devices(devices: Sequence[int | str]) -> tuple[str, ...]:
    if isinstance(devices, str | bytes):
        raise ParameterError(
            f"devices must be a sequence such as [0, 1] or ['GPU-...']; got the string "
            f"{devices!r}. Use [] for CPU workers only, None to use every visible GPU",
            parameter="devices",
        )
    checked: list[str] = []
    for device in devices:
        text = str(device) if isinstance(device, int) and not isinstance(device, bool) else device
        if not isinstance(text, str) or not _DEVICE.match(text):
            raise ParameterError(
                f"each device must be a CUDA device index (0, 1, ...) or a GPU-/MIG- UUID as "
                f"CUDA_VISIBLE_DEVICES takes it; got {device!r}",
                parameter="devices",
            )
        if text in checked:
            raise ParameterError(f"device {text!r} is listed twice", parameter="devices")
        checked.append(text)
    return tuple(checked)


class SerialExecutor(ExecutorBase):
    """Runs units one at a time in the calling process (capacity 1).

    For debugging (a breakpoint in a unit works), tiny work where starting processes
    costs more than it saves, and examples. A unit's exception becomes a
    :class:`~privaudit.errors.WorkUnitError` whose ``__cause__`` is the original.
    """

    name = "serial"

    @property
    def capacity(self) -> int:
        """Always 1."""
        return 1

    def _execute(
        self, units: list[WorkUnit], on_progress: ProgressCallback | None
    ) -> Iterator[UnitResult]:
        total = len(units)
        worker = this_worker("in process")
        for done, unit in enumerate(units):
            self._check_cancelled(done, total)
            started = time.perf_counter()
            try:
                value = unit.function(*unit.args, **unit.kwargs)
            except Exception as error:
                kind, message, text = describe_failure(error)
                raise unit_failure(unit.index, kind, message, text, worker=worker) from error
            result = UnitResult(unit.index, value, time.perf_counter() - started, worker)
            if on_progress is not None:
                on_progress(done + 1, total)
            yield result


@dataclass
class _Worker:
    """A worker process, its end of the pipe, and the unit it runs (``None``: idle)."""

    slot: int
    device: str | None
    process: BaseProcess
    connection: Connection
    description: str = ""
    unit: int | None = None


class LocalProcessExecutor(ExecutorBase):
    """Worker processes on this machine (``spawn``): one per core, or per GPU.

    Parameters
    ----------
    max_workers
        Number of worker processes. Default: one per usable core, or, with GPUs, one
        per GPU slot (``len(devices) * units_per_device``); a smaller value caps that.
    devices
        CUDA devices to pin workers to (indices or UUIDs, as ``CUDA_VISIBLE_DEVICES``
        takes them). ``None`` (default): every GPU this process sees
        (:func:`visible_cuda_devices`), and CPU workers when there is none. ``[]``: CPU
        workers only, with GPUs hidden from them (``CUDA_VISIBLE_DEVICES=""``).
    units_per_device
        Workers per GPU, hence units running on one GPU at the same time. Small models
        leave a GPU mostly idle; several per GPU fill it.
    threads_per_worker
        Native threads (BLAS, OpenMP, torch) each worker may use, set through
        ``OMP_NUM_THREADS`` and friends before the unit imports its libraries and with
        ``threadpoolctl`` where installed. Default: usable cores / workers (at least 1).
    initializer
        Called once in each worker after it starts (for example to import torch and
        create the CUDA context before timing starts); must be importable by name.
    start_timeout
        Seconds to wait for every worker to report ready.

    Notes
    -----
    Workers start on the first :meth:`run` (or :meth:`start`) and serve later runs
    until :meth:`shutdown`. An error, a cancellation or leaving the result loop early
    terminates the workers that are still running units (units are idempotent, so a
    later run redoes them) and the next run starts fresh ones in their place; idle
    workers stay. Workers are daemonic (a unit cannot start a process pool of its own)
    and exit on their own when the process that started them dies (they check every
    half second).
    """

    name = "local"

    def __init__(
        self,
        *,
        max_workers: int | None = None,
        devices: Sequence[int | str] | None = None,
        units_per_device: int = 1,
        threads_per_worker: int | None = None,
        initializer: Callable[[], None] | None = None,
        start_timeout: float = 300.0,
    ) -> None:
        super().__init__()
        _check_positive_int(max_workers, "max_workers", allow_none=True)
        _check_positive_int(units_per_device, "units_per_device")
        _check_positive_int(threads_per_worker, "threads_per_worker", allow_none=True)
        if initializer is not None and not callable(initializer):
            raise ParameterError(f"initializer must be callable; got {initializer!r}")
        if not isinstance(start_timeout, int | float) or not start_timeout > 0:
            raise ParameterError(f"start_timeout must be > 0 seconds; got {start_timeout!r}")
        self.hide_gpus = devices is not None and len(devices) == 0
        self.devices = visible_cuda_devices() if devices is None else _check_devices(devices)
        self.units_per_device = units_per_device
        slots: list[str | None]
        if self.devices:
            slots = [device for _ in range(units_per_device) for device in self.devices]
        else:
            slots = [None] * (max_workers or usable_cpus())
        self._slots = slots[:max_workers] if max_workers else slots
        self.threads_per_worker = threads_per_worker or max(1, usable_cpus() // len(self._slots))
        self._initializer = initializer
        self._start_timeout = float(start_timeout)
        self._workers: list[_Worker] = []
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def capacity(self) -> int:
        """The number of worker processes."""
        return len(self._slots)

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the running workers (empty before :meth:`start`)."""
        return [
            worker.process.pid
            for worker in self._workers
            if worker.process.pid is not None and worker.process.is_alive()
        ]

    def describe(self) -> dict[str, Any]:
        """Backend, workers, devices, units per device, threads per worker."""
        return {
            "executor": self.name,
            "capacity": self.capacity,
            "start_method": "spawn",
            "devices": list(self.devices),
            "units_per_device": self.units_per_device if self.devices else None,
            "threads_per_worker": self.threads_per_worker,
        }

    def _environment(self, device: str | None) -> dict[str, str]:
        threads = str(self.threads_per_worker)
        environment = dict.fromkeys(_THREAD_VARIABLES, threads)
        environment[WORKER_THREADS_VARIABLE] = threads
        if device is not None:
            environment["CUDA_VISIBLE_DEVICES"] = device
            environment[WORKER_DEVICE_VARIABLE] = f"cuda:{device}"
        else:
            if self.hide_gpus:
                environment["CUDA_VISIBLE_DEVICES"] = ""
            environment[WORKER_DEVICE_VARIABLE] = "cpu"
        return environment

    def _spawn(self, slot: int) -> _Worker:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        device = self._slots[slot]
        environment = self._environment(device)
        process = context.Process(
            target=_worker_main,
            args=(theirs, environment, self.threads_per_worker, self._initializer, os.getpid()),
            name=f"privaudit-worker-{slot}",
            daemon=True,
        )
        process.start()
        theirs.close()
        return _Worker(slot=slot, device=device, process=process, connection=ours)

    def start(self) -> Self:
        """Start every worker and wait until each reports ready; returns self."""
        if self._workers:
            return self
        workers: list[_Worker] = []
        try:
            for slot in range(len(self._slots)):
                workers.append(self._spawn(slot))
            self._await_ready(workers)
        except BaseException:
            _stop_workers(workers, graceful=False)
            raise
        self._workers = workers
        self._finalizer = weakref.finalize(self, _stop_workers, workers, graceful=True)
        return self

    def _await_ready(self, workers: list[_Worker]) -> None:
        deadline = time.monotonic() + self._start_timeout
        waiting = {id(worker): worker for worker in workers}
        while waiting:
            handles: dict[Any, _Worker] = {}
            for worker in waiting.values():
                handles[worker.connection] = worker
                handles[worker.process.sentinel] = worker
            remaining = deadline - time.monotonic()
            ready = wait(list(handles), timeout=max(0.0, remaining)) if remaining > 0 else []
            if not ready:
                raise WorkUnitError(
                    f"{len(waiting)} of {len(workers)} local worker processes did not report "
                    f"ready within {self._start_timeout:g} s; raise start_timeout or look for "
                    "a slow initializer",
                    index=None,
                    error_type="WorkerStartTimeout",
                )
            for handle in ready:
                worker = handles[handle]
                if id(worker) not in waiting:
                    continue
                if handle is worker.connection or worker.connection.poll():
                    message = _receive(worker)
                    if message is None or message[0] != "ready":
                        if message is not None and message[0] == "failed":
                            raise unit_failure(
                                None, *message[1:4], worker=f"pid {worker.process.pid}"
                            )
                        raise _died(worker, starting=True)
                    worker.description = message[1]
                    del waiting[id(worker)]
                else:
                    raise _died(worker, starting=True)

    def _ensure_alive(self, worker: _Worker) -> _Worker:
        """Replace an idle worker whose process has exited (killed from outside, say)."""
        if worker.process.is_alive():
            return worker
        _stop_workers([worker], graceful=False)
        fresh = self._spawn(worker.slot)
        try:
            self._await_ready([fresh])
        except BaseException:
            _stop_workers([fresh], graceful=False)
            raise
        self._workers[self._workers.index(worker)] = fresh
        return fresh

    def _execute(
        self, units: list[WorkUnit], on_progress: ProgressCallback | None
    ) -> Iterator[UnitResult]:
        self.start()
        pending = deque(units)
        total, done = len(units), 0
        finished = False
        try:
            while True:
                self._check_cancelled(done, total)
                for worker in list(self._workers):
                    if worker.unit is None and pending:
                        self._dispatch(self._ensure_alive(worker), pending.popleft())
                busy = [worker for worker in self._workers if worker.unit is not None]
                if not busy:
                    break
                handles: dict[Any, _Worker] = {}
                for worker in busy:
                    handles[worker.connection] = worker
                    handles[worker.process.sentinel] = worker
                for handle in wait(list(handles), timeout=_POLL_SECONDS):
                    worker = handles[handle]
                    if worker.unit is None:
                        continue  # both its pipe and its sentinel were ready
                    if handle is not worker.connection and not worker.connection.poll():
                        raise _died(worker)
                    index = worker.unit
                    message = _receive(worker)
                    if message is None:
                        raise _died(worker)
                    if message[0] != "ok":
                        raise unit_failure(index, *message[1:4], worker=worker.description)
                    worker.unit = None
                    done += 1
                    result = UnitResult(index, message[1], message[2], worker.description)
                    if on_progress is not None:
                        on_progress(done, total)
                    yield result
            finished = True
        finally:
            if not finished:
                self._abort()

    def _dispatch(self, worker: _Worker, unit: WorkUnit) -> None:
        try:
            worker.connection.send((unit.function, unit.args, dict(unit.kwargs)))
        except OSError as error:  # the pipe is broken: the worker is gone
            raise _died(worker, index=unit.index) from error
        except Exception as error:
            # Pickling fails before anything is written: the worker still waits.
            raise ParameterError(
                f"work unit {unit.index} cannot be sent to a worker process ({error}); a "
                "unit's function must be defined at module level in an importable module, "
                "and its arguments must be picklable",
                index=unit.index,
            ) from error
        worker.unit = unit.index

    def _abort(self) -> None:
        """Stop after an error or a cancellation: terminate the workers still running a
        unit (the next run replaces them); idle workers stay."""
        busy = [worker for worker in self._workers if worker.unit is not None]
        _stop_workers(busy, graceful=False)
        for worker in busy:
            worker.unit = None

    def shutdown(self) -> None:
        """Ask every worker to exit, wait for it, and terminate any that does not."""
        workers, self._workers = self._workers, []
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        _stop_workers(workers, graceful=True)


def _receive(worker: _Worker) -> Any:
    """The next message from a worker, or ``None`` when its pipe is closed."""
    try:
        return worker.connection.recv()
    except (EOFError, OSError):
        return None


def _died(worker: _Worker, *, index: int | None = None, starting: bool = False) -> WorkUnitError:
    """The error for a worker whose process exited while it had work (or while starting)."""
    worker.process.join(timeout=2.0)
    code = worker.process.exitcode
    if code is not None and code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    unit = worker.unit if index is None else index
    if starting:
        what = (
            "while starting (its stderr has the traceback; a script that starts workers must "
            "guard its top level with `if __name__ == '__main__':`, because spawned workers "
            "import the main module)"
        )
    else:
        what = (
            f"while running work unit {unit}; units are idempotent, so running again redoes "
            "only the unfinished ones (look for an out-of-memory kill or a crash in native "
            "code)"
        )
    return WorkUnitError(
        f"the local worker ({worker.description or f'pid {worker.process.pid}'}) {how} {what}",
        index=None if starting else unit,
        error_type="WorkerDied",
        exit_code=code,
    )


def _stop_workers(workers: list[_Worker], *, graceful: bool) -> None:
    """Stop worker processes: ask them to exit (graceful) or terminate them, then reap."""
    if graceful:
        for worker in workers:
            with contextlib.suppress(OSError, ValueError):
                worker.connection.send(None)
    deadline = time.monotonic() + (5.0 if graceful else 0.0)
    for worker in workers:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join(timeout=2.0)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=2.0)
        worker.connection.close()


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker within a second once the process that started it is gone."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(70)
            time.sleep(0.5)

    threading.Thread(target=watch, name="privaudit-parent-watch", daemon=True).start()


def _limit_native_threads(threads: int) -> None:
    """Cap BLAS/OpenMP pools that were loaded before the environment was set."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        threadpool_limits(limits=threads)


def _worker_main(
    connection: Connection,
    environment: dict[str, str],
    threads: int,
    initializer: Callable[[], None] | None,
    parent_pid: int,
) -> None:
    """A local worker: set up its environment, then run units until told to stop."""
    os.environ.update(environment)  # before any unit imports torch or creates CUDA state
    _limit_native_threads(threads)
    _watch_parent(parent_pid)
    description = this_worker(environment[WORKER_DEVICE_VARIABLE])
    try:
        if initializer is not None:
            initializer()
    except Exception as error:
        connection.send(("failed", *describe_failure(error)))
        return
    connection.send(("ready", description))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        except Exception as error:  # the unit's function could not be imported here
            connection.send(("error", *describe_failure(error)))
            continue
        if message is None:
            return
        function, args, kwargs = message
        started = time.perf_counter()
        try:
            value = function(*args, **kwargs)
        except Exception as error:
            connection.send(("error", *describe_failure(error)))
            continue
        try:
            connection.send(("ok", value, time.perf_counter() - started))
        except Exception as error:  # the value cannot be pickled
            kind, text, trace = describe_failure(error)
            connection.send(("error", kind, f"its result cannot be sent back: {text}", trace))


executors: Registry[Callable[..., Executor]] = Registry("executor")
"""Executors by name: ``"serial"``, ``"local"`` (the default) and ``"ray"``."""
executors.add("serial", SerialExecutor)
executors.add("local", LocalProcessExecutor)
executors.add("ray", RayExecutor)


def make_executor(name: str = "local", **options: Any) -> Executor:
    """Create the executor registered as ``name`` with keyword ``options``."""
    return executors.get(name)(**options)

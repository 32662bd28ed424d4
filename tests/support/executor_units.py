"""Work-unit functions for the executor tests: importable by name in worker processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from privaudit.errors import ParameterError


def square(value: int) -> int:
    return value * value


def where_am_i(index: int) -> dict[str, str | int | None]:
    """The worker's pid and the environment the executor set for it."""
    return {
        "index": index,
        "pid": os.getpid(),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "omp": os.environ.get("OMP_NUM_THREADS"),
        "device": os.environ.get("PRIVAUDIT_WORKER_DEVICE"),
    }


def rendezvous(
    directory: str, index: int, parties: int, timeout: float = 60.0
) -> dict[str, object]:
    """Wait until ``parties`` units have started: only concurrent units can all return."""
    folder = Path(directory)
    (folder / f"arrived-{index}").write_text(str(os.getpid()))
    deadline = time.monotonic() + timeout
    while len(list(folder.glob("arrived-*"))) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"unit {index}: fewer than {parties} units ran at the same time")
        time.sleep(0.01)
    return where_am_i(index)


def fail_on(index: int, bad: int) -> int:
    if index == bad:
        raise ParameterError(f"unit {index} was told to fail", parameter="index")
    return index


def die_on(index: int, bad: int) -> int:
    if index == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return index


def sleep_then(index: int, seconds: float) -> int:
    time.sleep(seconds)
    return index


def unpicklable_result() -> object:
    return lambda: None


def failing_initializer() -> None:
    raise RuntimeError("the initializer failed on purpose")

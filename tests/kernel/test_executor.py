"""Executors: real spawned worker processes, concurrency, pinning, errors, cancellation."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import executor_units as units
import pytest

from privaudit.errors import (
    ConflictError,
    JobCancelledError,
    MissingDependencyError,
    NotFoundError,
    ParameterError,
    WorkUnitError,
)
from privaudit.executor import (
    Executor,
    LocalProcessExecutor,
    RayExecutor,
    SerialExecutor,
    WorkUnit,
    collect,
    executors,
    make_executor,
    visible_cuda_devices,
)


@pytest.fixture(scope="module")
def pool() -> Iterator[LocalProcessExecutor]:
    """Two spawned workers shared by the tests that leave them healthy."""
    with LocalProcessExecutor(max_workers=2, devices=[]) as executor:
        yield executor.start()


def test_local_matches_serial_and_runs_in_installed_package(pool: LocalProcessExecutor) -> None:
    work = [WorkUnit(i, units.square, (i,)) for i in range(9)]
    assert collect(pool, work) == collect(SerialExecutor(), work) == [i * i for i in range(9)]
    pids = {
        result.value["pid"]
        for result in pool.run([WorkUnit(i, units.where_am_i, (i,)) for i in range(6)])
    }
    assert pids <= set(pool.worker_pids) and len(pool.worker_pids) == 2
    assert isinstance(pool, Executor) and isinstance(SerialExecutor(), Executor)


def test_units_run_concurrently(pool: LocalProcessExecutor, tmp_path: Path) -> None:
    # Each unit waits until both have started: a serial run could not finish.
    results = list(
        pool.run([WorkUnit(i, units.rendezvous, (str(tmp_path), i, 2)) for i in range(2)])
    )
    assert {result.index for result in results} == {0, 1}
    assert len({result.value["pid"] for result in results}) == 2
    assert all(result.seconds >= 0 and "pid" in result.worker for result in results)


def test_progress_reports_each_completion(pool: LocalProcessExecutor) -> None:
    seen: list[tuple[int, int]] = []
    collect(
        pool,
        [WorkUnit(i, units.square, (i,)) for i in range(5)],
        on_progress=lambda d, t: seen.append((d, t)),
    )
    assert seen == [(done, 5) for done in range(1, 6)]


def test_a_failing_unit_is_a_work_unit_error_naming_it(pool: LocalProcessExecutor) -> None:
    with pytest.raises(WorkUnitError, match="work unit 3 failed") as caught:
        collect(pool, [WorkUnit(i, units.fail_on, (i, 3)) for i in range(6)])
    error = caught.value
    assert error.code == "work_unit_failed"
    assert error.details["index"] == 3
    assert error.details["error_type"] == "privaudit.errors.ParameterError"
    assert "told to fail" in str(error) and "fail_on" in error.details["remote_traceback"]
    assert collect(pool, [WorkUnit(0, units.square, (7,))]) == [49]  # usable afterwards


def test_serial_executor_wraps_the_original_error() -> None:
    with pytest.raises(WorkUnitError, match="work unit 1 failed") as caught:
        collect(SerialExecutor(), [WorkUnit(i, units.fail_on, (i, 1)) for i in range(3)])
    assert isinstance(caught.value.__cause__, ParameterError)


def test_a_killed_worker_names_its_unit(pool: LocalProcessExecutor) -> None:
    with pytest.raises(
        WorkUnitError, match=r"killed by SIGKILL while running work unit 2"
    ) as caught:
        collect(pool, [WorkUnit(i, units.die_on, (i, 2)) for i in range(4)])
    assert caught.value.details["index"] == 2
    assert collect(pool, [WorkUnit(i, units.square, (i,)) for i in range(3)]) == [0, 1, 4]


def test_what_cannot_travel_is_refused_clearly(pool: LocalProcessExecutor) -> None:
    with pytest.raises(ParameterError, match="module level"):
        collect(pool, [WorkUnit(0, lambda: 1)])
    with pytest.raises(WorkUnitError, match="cannot be sent back"):
        collect(pool, [WorkUnit(0, units.unpicklable_result)])
    with pytest.raises(ParameterError, match="unique"):
        pool.run([WorkUnit(1, units.square, (1,)), WorkUnit(1, units.square, (2,))])
    with pytest.raises(ParameterError, match="WorkUnit"):
        pool.run([units.square])  # type: ignore[list-item]


def test_cancel_from_another_thread_and_from_progress(pool: LocalProcessExecutor) -> None:
    slow = [WorkUnit(i, units.sleep_then, (i, 30.0)) for i in range(4)]
    timer = threading.Timer(1.0, pool.cancel)
    timer.start()
    with pytest.raises(JobCancelledError, match="cancelled after 0 of 4"):
        collect(pool, slow)
    timer.join()

    def stop(done: int, total: int) -> None:
        if done == 2:
            raise JobCancelledError("job cancelled by its owner")

    quick = [WorkUnit(0, units.square, (1,)), WorkUnit(1, units.square, (2,))]
    mixed = [*quick, *(WorkUnit(i, units.sleep_then, (i, 30.0)) for i in range(2, 5))]
    with pytest.raises(JobCancelledError, match="by its owner"):
        collect(pool, mixed, on_progress=stop)
    assert collect(pool, quick) == [1, 4]  # the slow units were stopped, workers replaced


def test_one_run_at_a_time() -> None:
    executor = SerialExecutor()
    first = executor.run([WorkUnit(i, units.square, (i,)) for i in range(3)])
    assert next(first).value == 0
    with pytest.raises(ConflictError, match="one run at a time"):
        executor.run([WorkUnit(0, units.square, (1,))])
    first.close()
    assert collect(executor, [WorkUnit(0, units.square, (4,))]) == [16]


def test_leaving_the_loop_early_stops_running_units(pool: LocalProcessExecutor) -> None:
    results = pool.run(
        [
            WorkUnit(0, units.square, (3,)),
            *(WorkUnit(i, units.sleep_then, (i, 30.0)) for i in range(1, 4)),
        ]
    )
    assert next(results).value == 9
    results.close()  # the sleeping units are terminated, not waited for
    assert collect(pool, [WorkUnit(0, units.square, (5,))]) == [25]


def test_workers_are_pinned_to_devices(tmp_path: Path) -> None:
    # CUDA_VISIBLE_DEVICES is only an environment variable here: no GPU is touched.
    # Two per device, capped at three workers: slots go round the devices (0, 1, 0).
    with LocalProcessExecutor(devices=[0, "1"], units_per_device=2, max_workers=3) as pinned:
        assert pinned.capacity == 3
        work = [WorkUnit(i, units.rendezvous, (str(tmp_path), i, 3)) for i in range(3)]
        seen = [result.value for result in pinned.run(work)]
    assert Counter(item["cuda"] for item in seen) == {"0": 2, "1": 1}
    assert Counter(item["device"] for item in seen) == {"cuda:0": 2, "cuda:1": 1}
    assert len({item["pid"] for item in seen}) == 3


def test_cpu_workers_hide_gpus_and_cap_threads(pool: LocalProcessExecutor) -> None:
    seen = collect(pool, [WorkUnit(0, units.where_am_i, (0,))])[0]
    assert seen["cuda"] == "" and seen["device"] == "cpu"
    assert seen["omp"] == str(pool.threads_per_worker)
    assert pool.describe()["devices"] == [] and pool.describe()["start_method"] == "spawn"


def test_visible_devices_follow_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, expected in [("0,1", ("0", "1")), ("", ()), ("-1", ()), ("2,-1,3", ("2",))]:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
        assert visible_cuda_devices() == expected
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert LocalProcessExecutor(units_per_device=3).capacity == 3


def test_bad_parameters_are_refused() -> None:
    for options in (
        {"max_workers": 0},
        {"units_per_device": 0},
        {"devices": "0,1"},
        {"devices": [0, 0]},
        {"devices": ["gpu0"]},
        {"threads_per_worker": -1},
        {"start_timeout": 0},
    ):
        with pytest.raises(ParameterError):
            LocalProcessExecutor(**options)  # type: ignore[arg-type]


def test_executors_are_registered_by_name() -> None:
    assert executors.names() == ["local", "ray", "serial"]
    assert isinstance(make_executor("serial"), SerialExecutor)
    with pytest.raises(NotFoundError, match="did you mean 'local'"):
        make_executor("locla")


def test_a_failing_initializer_is_reported() -> None:
    executor = LocalProcessExecutor(max_workers=1, initializer=units.failing_initializer)
    with pytest.raises(WorkUnitError, match=r"worker initialisation failed.*on purpose") as caught:
        executor.start()
    assert caught.value.details["index"] is None and executor.worker_pids == []
    executor.shutdown()


def test_ray_without_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'privaudit\[ray\]'"):
        RayExecutor().start()

"""Reference training as resumable units: a real killed run resumes without retraining."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import reference_training_driver as driver

from privaudit.attacks.membership import (
    ReferenceTrainingPlan,
    SklearnRecipe,
    dataset_fingerprint,
    reference_keep_matrix,
    run_digits_demo,
    run_reference_training,
)
from privaudit.errors import DataError, ParameterError
from privaudit.executor import SerialExecutor

DRIVER = Path(driver.__file__)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def _done_indices(workdir: Path) -> set[int]:
    return {int(path.stem.split("-")[1]) for path in workdir.glob("unit-*.done")}


def _start_driver(workdir: Path, pidfile: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(DRIVER), str(workdir), str(pidfile)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )


def test_a_killed_run_resumes_without_retraining_finished_models(tmp_path: Path) -> None:
    workdir = tmp_path / "audit"
    first = _start_driver(workdir, tmp_path / "first.json")
    try:
        _wait_for(lambda: (tmp_path / "first.json").exists(), 120, "the first run's worker")
        _wait_for(
            lambda: len(_done_indices(workdir)) >= 2 or first.poll() is not None,
            120,
            "two finished models",
        )
        assert first.poll() is None, first.communicate()
        pids = json.loads((tmp_path / "first.json").read_text())
        os.kill(pids["driver"], signal.SIGKILL)  # the driver dies mid-run, SIGKILL
        first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    # Its worker notices the driver is gone and exits by itself.
    _wait_for(lambda: not any(_alive(pid) for pid in pids["workers"]), 15, "the orphaned worker")
    finished = _done_indices(workdir)
    assert 2 <= len(finished) < driver.N_MODELS, finished
    before = {index: (workdir / f"unit-{index:05d}.npy").stat().st_mtime_ns for index in finished}
    killed_at = time.time_ns()

    # The restarted audit (here in this process) trains exactly the missing models.
    features, labels, plan = driver.digits_plan()
    resumed = run_reference_training(plan, features, labels, workdir=workdir, executor="serial")
    missing = tuple(sorted(set(range(driver.N_MODELS)) - finished))
    assert (resumed.trained, resumed.skipped) == (len(missing), len(finished))
    assert resumed.trained_indices == missing

    # The finished models' files were not rewritten; the others were written after the kill.
    for index in range(driver.N_MODELS):
        mtime = (workdir / f"unit-{index:05d}.npy").stat().st_mtime_ns
        if index in finished:
            assert mtime == before[index]
        else:
            assert mtime >= killed_at
    again = run_reference_training(plan, features, labels, workdir=workdir, executor="serial")
    assert (again.trained, again.skipped) == (0, driver.N_MODELS)

    uninterrupted = run_reference_training(
        plan, features, labels, workdir=tmp_path / "clean", executor=SerialExecutor()
    )
    assert uninterrupted.trained == driver.N_MODELS
    np.testing.assert_array_equal(resumed.outputs, uninterrupted.outputs)
    np.testing.assert_array_equal(again.outputs, uninterrupted.outputs)
    np.testing.assert_array_equal(resumed.keep, uninterrupted.keep)


SMALL = SklearnRecipe(estimator="decision_tree", params={"max_depth": 6})


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    features, labels, _ = driver.digits_plan()
    return features[:400], labels[:400]


def _plan(data: tuple[np.ndarray, np.ndarray], **changes: object) -> ReferenceTrainingPlan:
    options: dict[str, object] = {"recipe": SMALL, "n_models": 4, "seed": 3, **changes}
    return ReferenceTrainingPlan.for_dataset(*data, **options)  # type: ignore[arg-type]


def test_units_are_the_recipe_on_the_keep_rows(
    digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    plan = _plan(digits)
    result = run_reference_training(plan, *digits, workdir=tmp_path, executor="serial")
    keep = reference_keep_matrix(n_models=4, n_examples=400, seed=3)
    np.testing.assert_array_equal(result.keep, keep)
    assert (keep.sum(axis=0) == 2).all()
    for index in range(4):
        expected = SMALL.fit_predict(*digits, keep[index], seed=plan.unit_seed(index), n_classes=10)
        np.testing.assert_array_equal(result.outputs[index], expected)
    assert result.outputs.shape == (4, 400, 10) and result.output == "probabilities"
    assert result.signals(digits[1]).shape == (4, 400)
    assert json.loads((tmp_path / "plan.json").read_text())["fingerprint"] == plan.fingerprint


def test_progress_counts_finished_units_first(
    digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    # Local processes against serial on this data: see the resume test, whose killed
    # driver trains on a LocalProcessExecutor and matches an uninterrupted serial run.
    plan = _plan(digits)
    run_reference_training(plan, *digits, workdir=tmp_path, executor="serial")
    (tmp_path / "unit-00002.done").unlink()
    seen: list[tuple[int, int]] = []
    result = run_reference_training(
        plan,
        *digits,
        workdir=tmp_path,
        executor=SerialExecutor(),
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(3, 4), (4, 4)]
    assert result.trained_indices == (2,) and sorted(result.unit_seconds) == [2]


def test_only_markers_of_this_plan_with_intact_files_are_trusted(
    digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    plan = _plan(digits)
    first = run_reference_training(plan, *digits, workdir=tmp_path, executor="serial")

    # Damage three units three ways: flipped byte, deleted marker, garbage marker.
    unit1 = tmp_path / "unit-00001.npy"
    data = bytearray(unit1.read_bytes())
    data[-1] ^= 0xFF
    unit1.write_bytes(bytes(data))
    (tmp_path / "unit-00002.done").unlink()
    (tmp_path / "unit-00003.done").write_text("{not json")
    again = run_reference_training(plan, *digits, workdir=tmp_path, executor="serial")
    assert again.trained_indices == (1, 2, 3) and again.skipped == 1
    np.testing.assert_array_equal(again.outputs, first.outputs)

    # Another plan in the same directory (another seed) trusts none of these markers.
    other = _plan(digits, seed=4)
    assert other.fingerprint != plan.fingerprint
    moved = run_reference_training(other, *digits, workdir=tmp_path, executor="serial")
    assert (moved.trained, moved.skipped) == (4, 0)
    back = run_reference_training(plan, *digits, workdir=tmp_path, executor="serial")
    assert back.trained == 4  # plan B overwrote plan A's units
    np.testing.assert_array_equal(back.outputs, first.outputs)


def test_fingerprints_cover_what_the_models_depend_on(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    plan = _plan(digits)
    assert plan.fingerprint == _plan(digits).fingerprint
    variants = [
        _plan(digits, seed=4),
        _plan(digits, n_models=5),
        _plan(digits, recipe=SklearnRecipe(estimator="decision_tree", params={"max_depth": 7})),
        ReferenceTrainingPlan.for_dataset(
            digits[0] * 2, digits[1], recipe=SMALL, n_models=4, seed=3
        ),
    ]
    assert len({plan.fingerprint, *(variant.fingerprint for variant in variants)}) == 5
    assert plan.dataset_fingerprint == dataset_fingerprint(digits[0].tolist(), digits[1])


def test_data_and_plan_are_checked(digits: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    plan = _plan(digits)
    with pytest.raises(DataError, match="not the data this plan was made for"):
        run_reference_training(plan, digits[0] + 1, digits[1], workdir=tmp_path)
    with pytest.raises(DataError, match="integer classes"):
        ReferenceTrainingPlan.for_dataset(
            digits[0], digits[1] + 0.5, recipe=SMALL, n_models=4, seed=0
        )
    with pytest.raises(ParameterError, match="n_models"):
        _plan(digits, n_models=1)
    with pytest.raises(ParameterError, match="seed"):
        _plan(digits, seed=-1)
    with pytest.raises(ParameterError, match="recipe"):
        _plan(digits, recipe="random_forest")


def test_digits_demo_resumes_from_its_workdir(tmp_path: Path) -> None:
    # K = 2: three 100-tree forests. The second run reuses all three.
    first = run_digits_demo(n_reference=2, seed=5, workdir=tmp_path)
    second = run_digits_demo(n_reference=2, seed=5, workdir=tmp_path)
    assert (first.n_trained, first.n_skipped) == (3, 0)
    assert (second.n_trained, second.n_skipped) == (0, 3)
    assert {k: m.auc for k, m in first.metrics.items()} == {
        k: m.auc for k, m in second.metrics.items()
    }
    assert second.to_dict()["models"] == {"trained": 0, "skipped": 3}

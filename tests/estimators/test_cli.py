"""``privaudit estimate epsilon``, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from privaudit.estimators import BayesianEpsilon, ClopperPearsonEpsilon

PRIVAUDIT = Path(sys.executable).with_name("privaudit")
COUNTS = ["--tp", "450", "--fn", "50", "--tn", "450", "--fp", "50"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONSAFEPATH": "1", "COLUMNS": "200"}
    return subprocess.run(
        [str(PRIVAUDIT), "estimate", "epsilon", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("method", "suffix"), [("bayes", "svg"), ("clopper-pearson", "png")])
def test_prints_the_interval_and_writes_the_plot(tmp_path: Path, method: str, suffix: str) -> None:
    plot = tmp_path / f"posterior.{suffix}"
    result = run(*COUNTS, "--method", method, "--plot", str(plot), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    estimator = BayesianEpsilon if method == "bayes" else ClopperPearsonEpsilon
    lower, upper = estimator(delta=1e-5).fit(tp=450, fn=50, tn=450, fp=50).interval_
    assert f"lower={lower!r} upper={upper!r}" in result.stdout
    assert plot.stat().st_size > 1000
    head = plot.read_bytes()[:200]
    assert head.startswith(b"\x89PNG") if suffix == "png" else b"<svg" in head or b"<?xml" in head


def test_bad_input_is_one_error_line(tmp_path: Path) -> None:
    result = run("--tp", "-1", *COUNTS[2:], cwd=tmp_path)
    assert result.returncode == 2 and "tp must be >= 0" in result.stderr
    result = run(*COUNTS, "--method", "magic", cwd=tmp_path)
    assert result.returncode == 2 and "method must be one of" in result.stderr
    result = run(*COUNTS, "--plot", str(tmp_path / "x.pdf"), cwd=tmp_path)
    assert result.returncode == 2 and "--plot must end in .png or .svg" in result.stderr

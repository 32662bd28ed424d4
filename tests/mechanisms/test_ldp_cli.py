"""``privaudit ldp simulate``, run as a user would."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cli_runner import run_privaudit


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_privaudit("ldp", *args, cwd=cwd)


def test_simulate_prints_protocols_side_by_side_and_saves_a_plot(tmp_path: Path) -> None:
    plot = tmp_path / "mse.png"
    result = run(
        "simulate",
        "-p",
        "grr",
        "-p",
        "ss",
        "--k",
        "64",
        "-e",
        "1",
        "-e",
        "2",
        "--n",
        "5000",
        "--trials",
        "2",
        "--plot",
        str(plot),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(lines) == 4  # 2 protocols x 2 epsilons
    assert any(line.split("│")[1].strip() == "ss" for line in lines)
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_unknown_protocol_is_a_clear_error(tmp_path: Path) -> None:
    result = run("simulate", "-p", "nope", "--n", "100", cwd=tmp_path)
    assert result.returncode == 2
    assert "[bad_parameter]" in result.stderr
    assert "known:" in result.stderr
    assert "Traceback" not in result.stderr

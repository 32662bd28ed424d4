"""``privaudit sequential simulate``, run as a user would."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cli_runner import run_privaudit

from privaudit.cli import main


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_privaudit("sequential", *args, cwd=cwd, columns=250)


def table_rows(stdout: str) -> dict[str, list[str]]:
    rows = [line.split("│")[1:-1] for line in stdout.splitlines() if line.startswith("│")]
    return {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in rows}


def test_simulate_compares_with_the_baseline_and_saves_a_plot(tmp_path: Path) -> None:
    plot = tmp_path / "llr.png"
    result = run(
        "simulate", "-e", "1", "--agents", "60", "--paths", "40", "--plot", str(plot), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert set(rows) == {"private", "non-private"}
    assert rows["private"][0].startswith("SmoothedRandomizedResponse(epsilon=1,")
    assert rows["non-private"][0].startswith("SmoothedRandomizedResponse(epsilon=inf,")
    assert float(rows["private"][1]) > 0  # the public leans toward the true state
    assert plot.read_bytes().startswith(b"\x89PNG")


def in_process(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in this process (no interpreter start-up): exit status, stdout, stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main(["sequential", *args])
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_binary_signals(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    args = ("--signals", "binary", "--p", "0.8", "--agents", "30", "--paths", "20")
    status, out, err = in_process("simulate", *args, capsys=capsys)
    assert status == 0, err
    assert "RandomizedResponse(epsilon=1, p=0.8)" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--amplitude", "0.9"), "amplitude must be in (0, 0.5]"),
        (("--amplitude", "half"), "or 'logistic'"),
        (("--signals", "poisson"), "--signals must be gaussian or binary"),
        (("--theta", "0"), "theta must be the state -1 or +1"),
    ],
)
def test_bad_parameters_are_one_line_errors(
    args: tuple[str, ...], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = in_process("simulate", *args, "--agents", "5", "--paths", "5", capsys=capsys)
    assert status == 2, err
    assert "[bad_parameter]" in err and needle in " ".join(err.split())
    assert "Traceback" not in err

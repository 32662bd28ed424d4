"""``privaudit vector demo``, run as a user would."""

from __future__ import annotations

from pathlib import Path

from cli_runner import run_privaudit


def test_demo_prints_recall_timings_and_bytes(tmp_path: Path) -> None:
    result = run_privaudit(
        "vector",
        "demo",
        "--parties",
        "2",
        "--size",
        "300",
        "--dimension",
        "16",
        "--queries",
        "2",
        "--k",
        "5",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = {
        cells[1].strip(): cells[2].strip()
        for line in result.stdout.splitlines()
        if line.startswith("│") and len(cells := line.split("│")) == 4
    }
    assert rows["recall@5 vs exact search"] == "1.000"
    assert float(rows["max |decrypted - exact| score"]) < 1e-5
    assert rows["query (per party)"].endswith("KB")
    assert "public context (once per party)" in rows


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    for args in (["--metric", "manhattan"], ["--parties", "0"]):
        result = run_privaudit("vector", "demo", *args, cwd=tmp_path)
        assert result.returncode == 2
        assert "[bad_parameter]" in result.stderr
        assert "Traceback" not in result.stderr

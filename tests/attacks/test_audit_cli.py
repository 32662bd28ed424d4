"""``privaudit audit --demo`` and ``privaudit report``, run as a user (or a CI job) would.

One test runs the installed command in a subprocess; the others call the same entry
point (``privaudit.cli.main``) in-process, which saves the start-up of a process each.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_runner import run_privaudit

from privaudit.cli import main
from privaudit.reports import load_report


def invoke(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cwd: Path, *args: str
) -> tuple[int, str, str]:
    """``privaudit ARGS`` in-process in ``cwd``: exit status, stdout, stderr."""
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("COLUMNS", "200")
    code = 0
    try:
        main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# K = 2 reference models (3 forests) keeps each run to a few seconds. The LOSS attack's
# AUC on digits was 0.78-0.81 over seeds 0-3 (tests/attacks/test_membership_demo.py),
# with a standard error of about 0.01: the 0.95 gate passes and the 0.6 gate fails by
# more than 15 standard errors each.
DEMO = ["audit", "--demo", "--reference-models", "2", "--attack", "loss"]


def test_a_passing_gate_exits_0_and_writes_three_reports(tmp_path: Path) -> None:
    result = run_privaudit(*DEMO, "--out", "out", "--max-auc", "0.95", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"verdict: PASS", result.stdout)
    report = load_report(tmp_path / "out" / "report.json")
    assert report.verdict.status == "pass" and report.config["n_reference"] == 2
    assert [a.name for a in report.attacks] == ["loss"]
    assert f"{report.attacks[0].metrics.auc:.3f}" in result.stdout
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("<svg") == 4 and not re.search(r"(src|href)=\"?https?:", html)
    assert (tmp_path / "out" / "report.md").read_text().startswith("### ")


def test_a_failing_gate_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--out", "out", "--max-auc", "0.6", "--max-tpr-at-fpr", "10%=1"]
    code, out, err = invoke(capsys, monkeypatch, tmp_path, *DEMO, *args)
    assert code == 1, err
    assert "verdict: FAIL" in out and "max auc: loss" in out
    report = load_report(tmp_path / "out" / "report.json")
    assert [g.passed for g in report.verdict.gates] == [False, True]
    assert "**FAIL**" in (tmp_path / "out" / "report.md").read_text()
    # The report command re-renders the JSON (whatever its verdict: exit 0).
    code, out, err = invoke(
        capsys, monkeypatch, tmp_path, "report", "render", "out/report.json", "--format", "md"
    )
    assert code == 0 and out == (tmp_path / "out/report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit", "--config", "audit.yaml"], "cannot read the audit config"),
        (["audit"], "say what to audit: --demo"),
        (["audit", "--demo", "--max-tpr-at-fpr", "5%=0.1"], "TPRs at FPR 10%, 1%, 0.1%, 0%"),
        (["audit", "--demo", "--max-tpr-at-fpr", "0.1"], "takes FPR=LIMIT"),
        (["audit", "--demo", "--format", "json,pdf"], "unknown report format 'pdf'"),
        (["audit", "--demo", "--attack", "magic"], "attacks must be a non-empty list"),
        (["report", "render", "missing.json"], "cannot read the report"),
    ],
)
def test_errors_exit_2_before_any_training(
    args: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, _, err = invoke(capsys, monkeypatch, tmp_path, *args)
    assert code == 2 and message in " ".join(err.split()), err
    assert not (tmp_path / "privaudit-report").exists()


def test_report_command_refuses_a_broken_report_and_prints_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bad.json").write_text(
        json.dumps({"kind": "privaudit.audit-report", "schema_version": 1, "title": "x"})
    )
    code, _, err = invoke(capsys, monkeypatch, tmp_path, "report", "render", "bad.json")
    assert code == 2 and "breaks the audit report schema" in err
    code, out, _ = invoke(capsys, monkeypatch, tmp_path, "report", "schema")
    assert code == 0 and json.loads(out)["$id"] == "urn:privaudit:audit-report:1"

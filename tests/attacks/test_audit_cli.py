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


# --- privaudit audit --config ------------------------------------------------------

TRAIN_YAML = """\
version: 1
inputs:
  mode: train
  dataset: {builtin: digits}
  recipe: {trainer: sklearn, estimator: random_forest, params: {n_estimators: 10}}
reference_models: 2
seed: 3
attacks: [loss]
epsilon: {delta: 1.0e-5, alpha: 0.05}
gates: {max_auc: 0.95}
report: {formats: [json, md]}
"""


def test_config_runs_locally_writes_the_reports_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "audit.yaml").write_text(TRAIN_YAML)
    code, out, err = invoke(capsys, monkeypatch, tmp_path, "audit", "--config", "audit.yaml")
    assert code == 0, err
    assert "models: 3 (3 trained, 0 reused" in out and "verdict: PASS" in out
    written = sorted(path.name for path in (tmp_path / "privaudit-report").iterdir())
    assert written == [".privaudit-work", "report.json", "report.md"]
    first = load_report(tmp_path / "privaudit-report" / "report.json")
    assert first.config["seed"] == 3 and first.config["reference_models"] == 2
    # The same command again finds every model trained (work units) and skips them.
    code, out, err = invoke(capsys, monkeypatch, tmp_path, "audit", "--config", "audit.yaml")
    assert code == 0, err
    assert "models: 3 (0 trained, 3 reused" in out
    again = load_report(tmp_path / "privaudit-report" / "report.json")
    assert again.attacks[0].metrics == first.attacks[0].metrics


def test_config_gate_failure_exits_1_from_signals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    from membership_planted import planted

    data = planted(n=500, n_reference=4, seed=0)
    (tmp_path / "inputs").mkdir()
    np.savez(tmp_path / "inputs" / "s.npz", signals=data.signals, keep=data.keep)
    (tmp_path / "audit.yaml").write_text(
        "version: 1\ninputs: {mode: signals, signals: inputs/s.npz}\nattacks: [loss, lira]\n"
        "epsilon: {estimate: false}\ngates: {max_auc: 0.5}\n"
    )
    args = ["audit", "--config", "audit.yaml", "--out", "out"]
    code, out, err = invoke(capsys, monkeypatch, tmp_path, *args)
    # The planted effect gives LOSS an AUC of 0.62 (sd 0.025 at n = 500): above 0.5.
    assert code == 1, err
    assert "verdict: FAIL" in out and "models:" not in out
    assert load_report(tmp_path / "out" / "report.json").verdict.status == "fail"


@pytest.mark.parametrize(
    ("yaml_text", "extra", "message"),
    [
        ("version: 1\ninputs: {mode: signals}\nattacks: [loss]\n", [], "inputs.signals.signals"),
        ("version: [\n", [], "is not valid YAML"),
        ("version: 1\ninputs: {mode: signals, signals: s.npz}\nattacks: [loss]\n", [],
         "cannot read artifact 's.npz'"),
        ("version: 1\n", ["--max-auc", "0.5", "--seed", "1"], "--seed, --max-auc apply to --demo"),
        ("version: 1\n", ["--demo"], "give --demo or --config, not both"),
    ],
)  # fmt: skip
def test_config_errors_exit_2_with_one_line(
    yaml_text: str,
    extra: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "audit.yaml").write_text(yaml_text)
    code, _, err = invoke(capsys, monkeypatch, tmp_path, "audit", "--config", "audit.yaml", *extra)
    assert code == 2 and message in " ".join(err.split()), err
    assert "Traceback" not in err and not (tmp_path / "privaudit-report" / "report.json").exists()

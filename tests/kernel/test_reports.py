"""The audit report schema, its renderers and its loader, on reports built from plain data."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
from report_samples import HOSTILE, hand_built_report

from privaudit.errors import DataError, LimitExceededError, NotFoundError, ParameterError
from privaudit.registry import report_formats
from privaudit.reports import (
    SCHEMA_VERSION,
    Artifact,
    AttackMetrics,
    AuditReport,
    evaluate_gates,
    gate,
    load_report,
    parse_report,
    render,
    report_json_schema,
    write_report,
)
from privaudit.reports._markdown import escape_markdown


def test_round_trip_through_every_path() -> None:
    report = hand_built_report()
    text = render(report, "json")
    assert parse_report(text) == report
    document = json.loads(text)
    assert document["kind"] == "privaudit.audit-report"
    assert document["schema_version"] == SCHEMA_VERSION
    assert AuditReport.model_validate(report.model_dump()) == report


def test_written_files_load_back(tmp_path: Path) -> None:
    report = hand_built_report()
    paths = write_report(report, tmp_path / "out")
    assert {name: path.name for name, path in paths.items()} == {
        "json": "report.json",
        "html": "report.html",
        "md": "report.md",
    }
    assert load_report(paths["json"]) == report


def test_exported_json_schema_accepts_reports_and_refuses_broken_ones() -> None:
    schema = report_json_schema()
    validator = jsonschema.Draft202012Validator(schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    document = json.loads(render(hand_built_report(), "json"))
    validator.validate(document)
    broken = json.loads(json.dumps(document))
    broken["attacks"][0]["metrics"]["auc"] = 1.5
    broken["surprise"] = True
    messages = {error.message for error in validator.iter_errors(broken)}
    assert any("1.5" in m for m in messages) and any("surprise" in m for m in messages)


def _document() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(render(hand_built_report(), "json"))
    return result


def _broken(change: str) -> str:
    document = _document()
    if change == "auc":
        document["attacks"][0]["metrics"]["auc"] = 1.5
    elif change == "missing":
        del document["inputs"]
    elif change == "extra":
        document["attacks"][0]["unexpected"] = 1
    elif change == "interval":
        document["attacks"][0]["metrics"]["tpr_at_fpr"][0]["tpr_interval"] = [0.9, 0.95]
    elif change == "verdict":
        document["verdict"]["status"] = "pass"  # one gate failed
    elif change == "sha":
        document["inputs"]["artifacts"][0]["sha256"] = "not-hex"
    elif change == "bool":
        document["inputs"]["n_members"] = True  # strict: a bool is not a count
    elif change == "string-number":
        document["attacks"][0]["metrics"]["auc"] = "0.7"
    elif change == "duplicate":
        document["attacks"].append(document["attacks"][0])
    return json.dumps(document)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("auc", "attacks.0.metrics.auc"),
        ("missing", "inputs"),
        ("extra", "attacks.0.unexpected"),
        ("interval", "tpr_at_fpr"),
        ("verdict", "verdict"),
        ("sha", "sha256"),
        ("bool", "n_members"),
        ("string-number", "auc"),
        ("duplicate", "unique"),
    ],
)
def test_a_report_that_breaks_the_schema_is_a_data_error(change: str, field: str) -> None:
    with pytest.raises(DataError, match="breaks the audit report schema") as caught:
        parse_report(_broken(change), source="x.json")
    assert field in str(caught.value) and "x.json" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        ("[1, 2]", "not a privaudit audit report"),
        ('{"kind": "something-else"}', "not a privaudit audit report"),
        ('{"kind": "privaudit.audit-report", "schema_version": 99}', "reads version 1 only"),
        ('{"kind": "privaudit.audit-report", "schema_version": 1, "x": NaN}', "NaN"),
    ],
)
def test_files_that_are_not_reports_are_refused(text: str | bytes, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_report(text)


def test_missing_and_oversized_files_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DataError, match="cannot read the report"):
        load_report(tmp_path / "absent.json")
    path = tmp_path / "report.json"
    path.write_text(render(hand_built_report(), "json"))
    monkeypatch.setattr("privaudit.reports._render.MAX_REPORT_BYTES", 1000)
    with pytest.raises(LimitExceededError, match="limited to 1000"):
        load_report(path)
    with pytest.raises(LimitExceededError):
        parse_report(path.read_text())


def test_report_values_are_checked_on_construction() -> None:
    report = hand_built_report()
    metrics = report.attacks[0].metrics.model_dump()
    with pytest.raises(ValueError, match="finite"):  # a pydantic ValidationError
        AttackMetrics.model_validate({**metrics, "auc": float("nan")})
    with pytest.raises(ValueError, match="frozen"):
        report.title = "changed"  # type: ignore[misc]


# --- HTML -------------------------------------------------------------------------------

_EXTERNAL = re.compile(r"""(?:src|href|action|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def test_html_is_self_contained_and_has_every_plot() -> None:
    report = hand_built_report()
    page = render(report, "html")
    assert page.startswith("<!DOCTYPE html>")
    assert not _EXTERNAL.search(page)
    assert not re.search(r"<(script|link|iframe|object|embed|img)\b", page, re.I)
    assert "url(" not in page and "@import" not in page
    assert "default-src 'none'" in page  # the CSP forbids fetching anything
    titles = re.findall(r"<svg[^>]*>\s*<title>([^<]*)</title>", page)
    names = [attack.name for attack in report.attacks]
    expected = ["ROC", "ROC (log-log)"]
    for name in names:
        expected += [f"{name}: scores", f"{name}: posterior of ε"]
    assert titles == expected


def test_html_escapes_every_user_string() -> None:
    page = render(hand_built_report(name=HOSTILE, description=HOSTILE), "html")
    assert HOSTILE not in page
    assert "<script>" not in page
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    assert escaped in page
    assert page.count(escaped) >= 4  # table cells, SVG legends and titles, description


def test_html_flags_unresolved_tpr_and_shows_the_evidence() -> None:
    page = render(hand_built_report(), "html")
    assert "0.500†" in page  # TPR at 0.1% FPR with 400 non-members: not resolved
    assert "fewer than 1/FPR non-members" in page
    assert "120 / 400" in page  # true positives / members behind weak's TPR at 10%


# --- Markdown -------------------------------------------------------------------------


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("| "):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            rows.append([cell.strip() for cell in cells])
    return rows


def test_markdown_summary_table() -> None:
    report = hand_built_report()
    text = render(report, "md")
    assert text.splitlines()[0] == "### Toy audit: **FAIL**"
    rows = _table_rows(text)
    gates, attacks = rows[:3], rows[3:]
    assert gates[0] == ["gate", "worst attack", "observed", "limit", "result"]
    assert gates[2] == ["max auc", "strong", "0.9000", "0.8", "**fail**"]
    assert attacks[0][:3] == ["attack", "AUC", "TPR@10% FPR"]
    assert [row[0] for row in attacks[2:]] == ["weak", "strong"]
    assert attacks[3][1] == "0.900" and attacks[3][-1] == "2.500 (heuristic)"
    assert all(len(row) == len(attacks[0]) for row in attacks)


def test_markdown_escapes_user_strings() -> None:
    hostile = "a|b <img src=x onerror=y> [x](http://e) @team *b*\nnext"
    text = render(hand_built_report(name=hostile), "md")
    assert "<img" not in text and "@team" not in text
    assert not re.search(r"(?<!\\)\]\(", text)  # no unescaped link syntax
    attacks = _table_rows(text)[3:]
    assert all(len(row) == len(attacks[0]) for row in attacks)  # the pipe stays in its cell
    assert escape_markdown(hostile) in text


# --- Gates -----------------------------------------------------------------------------


def test_gates_read_the_worst_attack() -> None:
    attacks = hand_built_report().attacks  # weak AUC 0.6, strong AUC 0.9
    verdict = evaluate_gates(attacks, [gate("auc", 0.9)])
    assert verdict.status == "pass" and verdict.gates[0].attack == "strong"  # equal passes
    verdict = evaluate_gates(attacks, [gate("auc", 0.95), gate("advantage", 0.5)])
    assert verdict.status == "fail"
    assert [g.passed for g in verdict.gates] == [True, False]
    assert verdict.gates[1].observed == pytest.approx(0.7)
    tpr = evaluate_gates(attacks, [gate("tpr_at_fpr", 0.2, fpr_limit=0.1)])
    assert tpr.status == "fail" and tpr.gates[0].observed == pytest.approx(0.8)
    epsilon = evaluate_gates(attacks, [gate("epsilon_lower_bound", 3.0)])
    assert epsilon.status == "pass" and epsilon.gates[0].observed == pytest.approx(2.5)
    assert evaluate_gates(attacks, []).status == "not-gated"


def test_gates_that_cannot_be_read_are_parameter_errors() -> None:
    attacks = hand_built_report(epsilon=False).attacks
    with pytest.raises(ParameterError, match="an ε estimate"):
        evaluate_gates(attacks, [gate("epsilon_lower_bound", 1.0)])
    with pytest.raises(ParameterError, match=r"a TPR at FPR 0\.05"):
        evaluate_gates(attacks, [gate("tpr_at_fpr", 0.1, fpr_limit=0.05)])
    with pytest.raises(ParameterError, match="gate metric must be one of"):
        gate("accuracy", 0.5)
    with pytest.raises(ParameterError, match="needs fpr_limit"):
        gate("tpr_at_fpr", 0.5)
    with pytest.raises(ParameterError, match="finite"):
        gate("auc", float("inf"))


# --- Registry and provenance ------------------------------------------------------------


def test_formats_are_found_by_name_and_new_ones_plug_in(tmp_path: Path) -> None:
    assert {"json", "html", "md"} <= set(report_formats.names())
    with pytest.raises(NotFoundError, match="did you mean 'html'"):
        render(hand_built_report(), "htm")

    @report_formats.register("example-verdict")
    class VerdictOnly:
        name: ClassVar[str] = "example-verdict"
        suffix: ClassVar[str] = ".txt"
        media_type: ClassVar[str] = "text/plain"

        def render(self, report: AuditReport) -> str:
            return report.verdict.status

    try:
        paths = write_report(hand_built_report(), tmp_path, formats=["example-verdict"])
        assert paths["example-verdict"].read_text() == "fail"
    finally:
        report_formats.unregister("example-verdict")


def test_artifacts_hash_what_they_describe(tmp_path: Path) -> None:
    import hashlib

    import numpy as np

    data = b"model bytes"
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    from_file = Artifact.from_file(path)
    assert (
        from_file.sha256
        == hashlib.sha256(data).hexdigest()
        == Artifact.from_bytes("m", data).sha256
    )
    assert (from_file.name, from_file.size_bytes) == ("model.onnx", len(data))
    ints = Artifact.from_array("a", np.arange(4, dtype=np.int64))
    assert ints.sha256 != Artifact.from_array("a", np.arange(4, dtype=np.int32)).sha256
    assert (
        ints.sha256 != Artifact.from_array("a", np.arange(4, dtype=np.int64).reshape(2, 2)).sha256
    )


def test_the_kernel_package_imports_no_capability() -> None:
    code = (
        "import sys, privaudit.reports, privaudit.reports._cli, privaudit.reports._console\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in (['privaudit', 'attacks'],\n"
        "       ['privaudit', 'estimators'], ['privaudit', 'mechanisms'], ['privaudit', 'api'],\n"
        "       ['privaudit', 'crypto'])]\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
    )
    assert result.stdout.strip() == "[]"

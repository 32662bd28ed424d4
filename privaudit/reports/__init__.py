"""Audit reports: one canonical, versioned schema, rendered to JSON, HTML and Markdown.

An :class:`AuditReport` is plain data: threat model, inputs (with SHA-256 of the
artifacts), configuration, per-attack metrics with their counts and intervals, the
empirical ε with its rigour label, a :class:`Verdict` against optional gates,
timings and versions. Capabilities build reports (membership inference:
``privaudit.attacks.membership.build_membership_report``); this kernel package
validates, renders and reads them back, and imports no capability.

* :func:`render` / :func:`write_report`: a report in a format registered in
  :data:`privaudit.registry.report_formats` (``json``, ``html``, ``md``).
* :func:`load_report` / :func:`parse_report`: read a report JSON, validated against the
  schema (a bad file is a :class:`~privaudit.errors.DataError`).
* :func:`report_json_schema`: the JSON Schema of the current version.
* :func:`gate` and :func:`evaluate_gates`: pass/fail ceilings on the worst attack.

See docs/reports.md.
"""

from privaudit.reports import _html, _markdown  # noqa: F401  (registers the renderers)
from privaudit.reports._render import (
    MAX_REPORT_BYTES,
    JsonRenderer,
    Renderer,
    load_report,
    parse_report,
    render,
    report_json_schema,
    write_report,
)
from privaudit.reports._schema import (
    REPORT_KIND,
    SCHEMA_VERSION,
    Artifact,
    AttackMetrics,
    AttackResult,
    AuditReport,
    Counts,
    EpsilonResult,
    EpsilonSummary,
    Gate,
    GateResult,
    Histogram,
    Inputs,
    PosteriorGrid,
    PosteriorSummary,
    RocPoints,
    ThreatModelInfo,
    TprAtFpr,
    Verdict,
    collect_versions,
    to_json_value,
)
from privaudit.reports._verdict import evaluate_gates, gate

__all__ = [
    "MAX_REPORT_BYTES",
    "REPORT_KIND",
    "SCHEMA_VERSION",
    "Artifact",
    "AttackMetrics",
    "AttackResult",
    "AuditReport",
    "Counts",
    "EpsilonResult",
    "EpsilonSummary",
    "Gate",
    "GateResult",
    "Histogram",
    "Inputs",
    "JsonRenderer",
    "PosteriorGrid",
    "PosteriorSummary",
    "Renderer",
    "RocPoints",
    "ThreatModelInfo",
    "TprAtFpr",
    "Verdict",
    "collect_versions",
    "evaluate_gates",
    "gate",
    "load_report",
    "parse_report",
    "render",
    "report_json_schema",
    "to_json_value",
    "write_report",
]

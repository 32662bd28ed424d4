"""``privaudit report``: re-render a report JSON, print the schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from privaudit.registry import report_formats
from privaudit.reports._render import load_report, render, report_json_schema

__all__ = ["register"]

app = typer.Typer(
    help="Audit reports: render a report JSON, print its schema.", no_args_is_help=True
)


@app.command("render")
def render_command(
    path: Annotated[Path, typer.Argument(help="A report JSON (written by `privaudit audit`).")],
    format_name: Annotated[
        str, typer.Option("--format", "-f", help="A registered format: json, html, md.")
    ] = "md",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of standard output.")
    ] = None,
) -> None:
    """Validate a report JSON against the schema and render it.

    Exit status 0 whatever the verdict; a file that breaks the schema is an error (2).
    """
    report = load_report(path)
    text = render(report, format_name)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


@app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of the current report version."""
    sys.stdout.write(json.dumps(report_json_schema(), indent=2) + "\n")


@app.command("formats")
def formats_command() -> None:
    """List the registered report formats."""
    for name in report_formats.names():
        typer.echo(name)


def register(cli: typer.Typer) -> None:
    """Add ``privaudit report`` to the CLI."""
    cli.add_typer(app, name="report")

"""The ``privaudit`` command line.

The kernel owns the top-level command and ``privaudit version``. Subpackages add
their command groups through the ``privaudit.cli`` entry-point group (see
pyproject.toml): each entry is a function ``register(app: typer.Typer) -> None``.
That keeps the dependency direction: the kernel never imports a capability or the
service, it only loads whatever is installed.

Errors raised as :class:`privaudit.errors.PrivauditError` are printed as one line
with their stable code (exit status 2), never as a traceback.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer
from rich.console import Console
from rich.markup import escape

from privaudit import __version__
from privaudit.errors import PrivauditError

__all__ = ["build_app", "main"]

ENTRY_POINT_GROUP = "privaudit.cli"

stderr = Console(stderr=True, soft_wrap=True)


def build_app() -> typer.Typer:
    """Build the CLI: the kernel's commands plus every installed command group."""
    cli = typer.Typer(
        name="privaudit",
        help="Privacy and security analysis: mechanisms, audits, and the privaudit service.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )

    @cli.command()
    def version() -> None:
        """Print the installed privaudit version."""
        typer.echo(__version__)

    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        register = entry.load()
        register(cli)
    return cli


def __getattr__(name: str) -> typer.Typer:
    # Built on first use, not at import: multiprocessing re-runs the console script in
    # the children it spawns, and importing this module must not load every plugin.
    if name == "app":
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a privaudit error becomes one red line and exit status 2."""
    try:
        # Standalone mode: usage errors print click's message and exit 2 by themselves.
        build_app()(args=argv)
    except PrivauditError as error:
        stderr.print(f"[red]error[/red] {escape(f'[{error.code}]')}: {escape(error.message)}")
        sys.exit(2)

"""The service's CLI commands: ``serve``, ``worker``, ``keys``, ``db``.

Registered into the kernel CLI through the ``privaudit.cli`` entry point.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["register"]

console = Console()


def _settings(**overrides: Any) -> Any:
    from privaudit.errors import ConfigurationError

    try:
        from privaudit.api.settings import Settings
    except ImportError as error:
        from privaudit.errors import MissingDependencyError

        raise MissingDependencyError(
            "the service needs the server extra: pip install 'privaudit[server]'"
        ) from error
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except (ValidationError, SettingsError, ValueError) as error:
        raise ConfigurationError(f"invalid settings: {error}") from None


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (PRIVAUDIT_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (PRIVAUDIT_PORT).")] = None,
    job_workers: Annotated[
        int | None, typer.Option(help="Job worker processes to start (PRIVAUDIT_JOB_WORKERS).")
    ] = None,
    http_workers: Annotated[
        int | None, typer.Option(help="HTTP server processes (PRIVAUDIT_HTTP_WORKERS).")
    ] = None,
) -> None:
    """Run the REST service and its job workers (the main job)."""
    import uvicorn

    from privaudit.api.app import create_app
    from privaudit.api.db import Database, upgrade_schema
    from privaudit.api.jobs.worker import run_worker

    overrides = {
        "host": host,
        "port": port,
        "job_workers": job_workers,
        "http_workers": http_workers,
    }
    settings = _settings(**overrides)
    database = Database(settings.resolved_database_url)
    upgrade_schema(database)
    database.dispose()

    spawn = multiprocessing.get_context("spawn")
    workers = [
        spawn.Process(
            target=run_worker,
            args=(settings.model_dump(mode="json"),),
            name=f"privaudit-worker-{index}",
            daemon=False,
        )
        for index in range(settings.job_workers)
    ]
    for process in workers:
        process.start()
    where = f"http://{settings.host}:{settings.port}"
    console.print(
        f"[bold green]privaudit[/] serving at {where} (docs: {where}/docs), "
        f"database {_redacted(settings.resolved_database_url)}, "
        f"{settings.http_workers} HTTP and {settings.job_workers} job worker process(es)."
    )
    console.print(
        "Get an API key with: [bold]privaudit keys create --tenant NAME[/] "
        "(in a checkout: [bold].venv/bin/privaudit keys create --tenant NAME[/])"
    )
    try:
        if settings.http_workers == 1:
            config = uvicorn.Config(
                create_app(settings, migrate=False),
                host=settings.host,
                port=settings.port,
                log_level="info",
                access_log=False,
                timeout_graceful_shutdown=5,
            )
            uvicorn.Server(config).run()
        else:
            # Each HTTP process builds its app from the environment: pass the overrides on.
            for name, value in overrides.items():
                if value is not None:
                    os.environ[f"PRIVAUDIT_{name.upper()}"] = str(value)
            uvicorn.run(
                "privaudit.api.app:create_app",
                factory=True,
                workers=settings.http_workers,
                host=settings.host,
                port=settings.port,
                log_level="info",
                access_log=False,
                timeout_graceful_shutdown=5,
            )
    finally:
        for process in workers:
            if process.is_alive() and process.pid is not None:
                process.terminate()
        for process in workers:
            process.join(timeout=15)
            if process.is_alive():
                process.kill()


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def worker() -> None:
    """Run one job worker alone (no HTTP), e.g. on another machine with the same database."""
    from privaudit.api.db import Database, upgrade_schema
    from privaudit.api.jobs.worker import run_worker

    settings = _settings()
    database = Database(settings.resolved_database_url)
    upgrade_schema(database)
    database.dispose()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run_worker(settings.model_dump(mode="json"))


keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant name; created if new.")],
    scopes: Annotated[
        list[str] | None,
        typer.Option("--scopes", help="Scope to grant (repeat, or comma-separate)."),
    ] = None,
    label: Annotated[str, typer.Option(help="A note to recognise the key by.")] = "",
) -> None:
    """Create an API key. It is printed once; only its hash is stored."""
    import privaudit.api.app  # noqa: F401  (the routers register their scopes)
    from privaudit.api.db import Database, upgrade_schema
    from privaudit.api.keys import create_key

    settings = _settings()
    database = Database(settings.resolved_database_url)
    upgrade_schema(database)
    chosen = [part.strip() for item in scopes or [] for part in item.split(",") if part.strip()]
    with database.session() as session:
        key, row = create_key(session, tenant=tenant, scopes=chosen or None, label=label)
        scope_list = ", ".join(row.scopes)
    database.dispose()
    console.print(f"API key for tenant [bold]{tenant}[/] (scopes: {scope_list}):", style="green")
    typer.echo(key)
    console.print("Store it now: it is not shown again. Send it as 'Authorization: Bearer <key>'.")


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None) -> None:
    """List keys (ids, tenants, scopes; never secrets)."""
    from sqlalchemy import select

    from privaudit.api.db import Database, upgrade_schema
    from privaudit.api.models import ApiKey, Tenant

    settings = _settings()
    database = Database(settings.resolved_database_url)
    upgrade_schema(database)
    table = Table("key id", "tenant", "scopes", "label", "created", "revoked")
    with database.session() as session:
        query = select(ApiKey, Tenant.name).join(Tenant, Tenant.id == ApiKey.tenant_id)
        if tenant:
            query = query.where(Tenant.name == tenant)
        for key, name in session.execute(query.order_by(ApiKey.created_at)):
            table.add_row(
                key.id,
                name,
                ", ".join(key.scopes),
                key.label,
                key.created_at.isoformat(timespec="seconds"),
                key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
            )
    database.dispose()
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (pa_<id>_...).")]) -> None:
    """Revoke a key by its id."""
    from privaudit.api.db import Database, upgrade_schema
    from privaudit.api.keys import revoke_key
    from privaudit.errors import NotFoundError

    settings = _settings()
    database = Database(settings.resolved_database_url)
    upgrade_schema(database)
    with database.session() as session:
        revoked = revoke_key(session, key_id)
    database.dispose()
    if not revoked:
        raise NotFoundError(f"no live key with id {key_id!r}; `privaudit keys list` shows them")
    console.print(f"revoked {key_id}")


db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations."""
    from privaudit.api.db import Database, upgrade_schema

    settings = _settings()
    database = Database(settings.resolved_database_url)
    upgrade_schema(database)
    database.dispose()
    console.print(f"schema up to date at {_redacted(settings.resolved_database_url)}")


def register(app: typer.Typer) -> None:
    """Add the service's commands to the ``privaudit`` CLI."""
    app.command()(serve)
    app.command()(worker)
    app.add_typer(keys_app, name="keys")
    app.add_typer(db_app, name="db")

"""The FastAPI application factory."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from privaudit import __version__
from privaudit.api import problems
from privaudit.api.db import Database, upgrade_schema
from privaudit.api.deps import AuthCache
from privaudit.api.jobs._process import load_job_modules
from privaudit.api.jobs.batching import SubmissionWriter
from privaudit.api.middleware import BodySizeLimitMiddleware
from privaudit.api.routes import audits, estimates, jobs, ldp, streams, system, vector
from privaudit.api.settings import Settings, get_settings
from privaudit.api.vectors import ShardCache

__all__ = ["create_app"]

DESCRIPTION = """\
privaudit's REST service. Long work runs as durable jobs: submit with `POST`, get
`202 Accepted` and a `Location`, then poll `GET /v1/jobs/{id}` or follow
`GET /v1/jobs/{id}/events` (server-sent events).

Every endpoint except `/v1/health` and `/v1/errors` needs an API key
(`Authorization: Bearer pa_...` or `X-API-Key: pa_...`); create one with
`privaudit keys create --tenant NAME`. Errors are `application/problem+json`
(RFC 9457) with a stable `code`.
"""


def create_app(settings: Settings | None = None, *, migrate: bool = True) -> FastAPI:
    """Build the service.

    Parameters
    ----------
    settings
        Configuration; read from the environment when omitted.
    migrate
        Bring the database schema up to date at start-up.
    """
    settings = settings or get_settings()
    load_job_modules(settings.job_plugins)
    database = Database(settings.resolved_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Few threads: more only contend for the GIL (and stall the one holding the
        # database's write lock) without adding throughput.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.http_threads
        if migrate:
            upgrade_schema(database)
        settings.artifacts_dir.mkdir(parents=True, exist_ok=True)
        app.state.submissions.start()
        database.start_checkpointer()
        # Objects alive after start-up live as long as the process: keep them out of the
        # collector's full passes, which otherwise show up as latency spikes.
        gc.collect()
        gc.freeze()
        # The event loop, the submission writer and request threads share one GIL; a
        # shorter switch interval than the default 5 ms keeps the loop responsive.
        sys.setswitchinterval(0.001)
        yield
        app.state.submissions.stop()
        database.dispose()

    app = FastAPI(
        title="privaudit",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.auth_cache = AuthCache(ttl_s=settings.auth_cache_ttl_s)
    app.state.submissions = SubmissionWriter(database)
    app.state.vector_shards = ShardCache(max_bytes=settings.vector_cache_bytes)
    problems.install(app)
    app.include_router(system.router)
    app.include_router(jobs.build_submit_router())
    app.include_router(jobs.router)
    app.include_router(ldp.router)
    app.include_router(estimates.router)
    app.include_router(vector.router)
    app.include_router(streams.router)
    app.include_router(audits.router)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    return app

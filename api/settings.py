"""Service settings, read from ``PRIVAUDIT_*`` environment variables or a ``.env`` file.

Every size and time a client can influence has a bound here; see docs/service.md for
the full table.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "get_settings"]

DEFAULT_DATA_DIR = Path(".privaudit")


class Settings(BaseSettings):
    """Configuration of the privaudit service and its job workers.

    Each field is set by the environment variable ``PRIVAUDIT_<FIELD>`` (upper case),
    e.g. ``PRIVAUDIT_DATABASE_URL=postgresql+psycopg://user@host/db``.
    """

    model_config = SettingsConfigDict(
        env_prefix="PRIVAUDIT_", env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = Field(
        default="",
        description="SQLAlchemy URL. Empty means a SQLite file under data_dir; "
        "PostgreSQL via postgresql+psycopg://user:password@host:port/db.",
    )
    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="Where the default SQLite database and per-tenant artifacts live.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    max_body_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above)."
    )
    auth_cache_ttl_s: float = Field(
        default=5.0,
        ge=0,
        description="How long a verified API key is trusted without a database read; "
        "a revoked key stops working within this time (0: check every request).",
    )
    max_page_size: int = Field(default=200, ge=1, le=10_000)
    max_params_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Largest JSON params of one job."
    )

    http_workers: int = Field(
        default=1, ge=1, le=64, description="HTTP server processes started by `serve`."
    )
    http_threads: int = Field(
        default=4, ge=1, le=256, description="Threads per HTTP process for blocking work."
    )
    ldp_max_reports_per_batch: int = Field(
        default=1_000_000, ge=1, description="Most reports in one posted LDP batch."
    )
    stream_max_horizon: int = Field(
        default=1 << 24,
        ge=1,
        le=1 << 24,
        description="Largest horizon T of a continual-release stream (at most 2^24).",
    )
    stream_max_items_per_batch: int = Field(
        default=10_000,
        ge=1,
        le=100_000,
        description="Most items in one batch appended to a stream.",
    )
    stream_max_columns: int = Field(
        default=1024,
        ge=1,
        le=1 << 16,
        description="Most columns d of a continual.max_sum / continual.sum_select stream.",
    )
    stream_max_cells_per_batch: int = Field(
        default=1 << 20,
        ge=1,
        le=1 << 24,
        description="Most record cells (records × d) in one batch appended to a "
        "continual.max_sum / continual.sum_select stream.",
    )
    stream_max_state_numbers: int = Field(
        default=1 << 15,
        ge=64,
        le=1 << 22,
        description="Most numbers a stream's stored state may reach over its horizon; "
        "larger (mechanism, horizon) pairs are refused at creation.",
    )
    estimate_max_scores: int = Field(
        default=1_000_000, ge=1, description="Most scores in one POST /v1/estimates/epsilon."
    )
    estimate_max_thresholds: int = Field(
        default=10_000,
        ge=1,
        le=10_000,
        description="Most thresholds of a Bonferroni grid in one POST /v1/estimates/epsilon.",
    )
    audit_max_config_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest `config` part of POST /v1/audits."
    )
    audit_max_artifact_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest uploaded artifact (one part of POST /v1/audits), as sent.",
    )
    audit_max_artifacts: int = Field(
        default=8, ge=1, le=64, description="Most artifact parts in one POST /v1/audits."
    )
    audit_max_array_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="Most bytes the arrays of one artifact may take once decompressed.",
    )
    audit_max_examples: int = Field(
        default=1_000_000, ge=2, description="Most audited examples (n) in one audit."
    )
    audit_executor: Literal["serial", "local", "ray"] = Field(
        default="local",
        description="Where an audit job trains its models: serial (in the job's process), "
        "local (worker processes, one per core) or ray.",
    )
    audit_max_reference_models: int = Field(
        default=64, ge=1, le=1024, description="Most reference models (K) in one audit."
    )
    vector_max_dimension: int = Field(
        default=4096,
        ge=1,
        le=4096,
        description="Largest dimension of a vector collection (at most the 4096 CKKS slots).",
    )
    vector_max_batch_vectors: int = Field(
        default=10_000, ge=1, description="Most vectors in one posted batch."
    )
    vector_max_collection_vectors: int = Field(
        default=20_000,
        ge=1,
        le=100_000,
        description="Most vectors in one collection (its ids travel with every answer).",
    )
    vector_max_context_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=64 * 1024,
        le=64 * 1024 * 1024,
        description="Largest public context a querier may register.",
    )
    vector_max_contexts: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Public contexts kept per tenant; registering more drops the oldest.",
    )
    vector_cache_bytes: int = Field(
        default=2 * 1024**3,
        ge=16 * 1024**2,
        description="Memory for pre-encoded collections in each HTTP process (least "
        "recently used are dropped); also bounds one collection's size.",
    )
    vector_default_max_queries: int = Field(
        default=1000,
        ge=1,
        description="Queries each API key may make on a collection unless it says otherwise.",
    )
    job_workers: int = Field(
        default=1, ge=0, le=64, description="Job worker processes started by `serve`."
    )
    job_concurrency: int = Field(
        default=2, ge=1, le=256, description="Jobs one worker runs at once (one process each)."
    )
    job_plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Extra modules to import in the service and workers; they register job kinds.",
    )
    job_nice: int = Field(
        default=5,
        ge=0,
        le=19,
        description="Niceness added to workers and their job processes (0: none).",
    )
    job_max_attempts: int = Field(default=3, ge=1, le=100)
    job_timeout_s: float = Field(default=24 * 3600.0, gt=0)
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    stale_after_s: float = Field(
        default=30.0, gt=0, description="A running job whose heartbeat is older is re-queued."
    )
    poll_interval_s: float = Field(default=0.5, gt=0, description="How often idle workers look.")
    cancel_grace_s: float = Field(
        default=10.0, ge=0, description="How long a cancelled job may take to stop by itself."
    )
    sse_poll_interval_s: float = Field(default=0.5, gt=0)
    sse_max_duration_s: float = Field(
        default=3600.0, gt=0, description="An events stream is closed after this long."
    )

    @field_validator("job_plugins", mode="before")
    @classmethod
    def _split_plugins(cls, value: object) -> object:
        # Accept "a.b,c.d" from the environment as well as a JSON list.
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        """The database URL, with the SQLite default filled in."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'privaudit.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        """Root of the per-tenant artifact directories."""
        return (self.data_dir / "artifacts").resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings (read once)."""
    return Settings()

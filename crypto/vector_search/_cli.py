"""``privaudit vector demo``: a small federated encrypted search, in one process.

The parties are in-process :class:`~privaudit.crypto.vector_search.DataParty` objects
and every message is serialized as over a network, so the bytes shown are those a
network would carry. The REST service runs the same protocol between real services
(docs/vector_search.md#rest).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from privaudit.crypto.vector_search._federation import FederatedSearch
from privaudit.crypto.vector_search._roles import DataParty, EncryptedScores, Metric, Querier
from privaudit.errors import ParameterError
from privaudit.randomness import simulation_generator

__all__ = ["demo", "register"]

console = Console()
app = typer.Typer(help="Encrypted federated vector search.", no_args_is_help=True)


@dataclass
class _TimedParty:
    """A party that records how long it takes to score each query."""

    party: DataParty
    seconds: list[float] = field(default_factory=list)
    party_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.party_id = self.party.party_id

    def register_context(self, context: bytes) -> str:
        return self.party.register_context(context)

    def search(
        self, query: Any, *, querier_id: str, context: bytes | None = None
    ) -> EncryptedScores:
        started = time.perf_counter()
        answer = self.party.search(query, querier_id=querier_id, context=context)
        self.seconds.append(time.perf_counter() - started)
        return answer


def _exact(shards: list[np.ndarray], query: np.ndarray, metric: str) -> np.ndarray:
    stacked = np.concatenate(shards)
    if metric == "cosine":
        unit = stacked / np.linalg.norm(stacked, axis=1, keepdims=True)
        scores: np.ndarray = unit @ (query / np.linalg.norm(query))
    elif metric == "inner_product":
        scores = stacked @ query
    else:
        scores = ((stacked - query) ** 2).sum(axis=1)
    return scores


def demo(
    *,
    parties: int = 3,
    size: int = 2000,
    dimension: int = 64,
    metric: Metric = "cosine",
    k: int = 10,
    queries: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Run a federated search over random shards; return timings, bytes and accuracy.

    Vectors and queries are standard normal (a seeded simulation generator). Recall is
    the share of the exact top-``k`` (numpy over the union of the shards) that the
    encrypted search returns, averaged over the queries.
    """
    for name, value, low, high in (
        ("parties", parties, 1, 16),
        ("size", size, 1, 20_000),
        ("dimension", dimension, 1, 1024),
        ("k", k, 1, 1000),
        ("queries", queries, 1, 100),
    ):
        if not low <= value <= high:
            raise ParameterError(f"--{name} must be in [{low}, {high}]; got {value}")
    rng = simulation_generator(seed)
    shards = [rng.normal(size=(size, dimension)) for _ in range(parties)]
    started = time.perf_counter()
    members = [
        _TimedParty(
            DataParty(
                party_id=f"party-{index}",
                dimension=dimension,
                metric=metric,
                max_queries_per_querier=queries,
            ).ingest(shard)
        )
        for index, shard in enumerate(shards)
    ]
    ingest_s = (time.perf_counter() - started) / parties
    started = time.perf_counter()
    querier = Querier(dimension=dimension, metric=metric)
    keygen_s = time.perf_counter() - started
    search = FederatedSearch(querier=querier, parties=members, querier_id="demo")
    owners = [(f"party-{p}", str(i)) for p in range(parties) for i in range(size)]
    recalls, errors, encrypt_s, total_s, plain_s = [], [], [], [], []
    for _ in range(queries):
        vector = rng.normal(size=dimension)
        started = time.perf_counter()
        querier.encrypt_query(vector)
        encrypt_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        hits = search.search(vector, k=k)
        total_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        exact = _exact(shards, vector, metric)
        order = np.argsort(exact if metric == "squared_l2" else -exact, kind="stable")[:k]
        plain_s.append(time.perf_counter() - started)
        truth = {owners[i] for i in order}
        recalls.append(len(truth & {(hit.party_id, hit.id) for hit in hits}) / len(truth))
        decrypted = np.concatenate([answer.scores for answer in search.answers_])
        errors.append(float(np.abs(decrypted - exact).max()))
    party_s = float(np.mean([s for member in members for s in member.seconds]))
    context_bytes = len(querier.public_context())
    query_bytes = (search.bytes_sent_ - parties * context_bytes) / (queries * parties)
    return {
        "parties": parties,
        "vectors_per_party": size,
        "dimension": dimension,
        "queries": queries,
        "recall_at_k": float(np.mean(recalls)),
        "max_abs_error": max(errors),
        "ingest_seconds_per_party": ingest_s,
        "keygen_seconds": keygen_s,
        "encrypt_seconds": float(np.mean(encrypt_s)),
        "party_seconds": party_s,
        "query_seconds": float(np.median(total_s)),  # the first also sends the contexts
        "plaintext_seconds": float(np.median(plain_s)),
        "context_bytes": context_bytes,
        "query_bytes": query_bytes,
        "result_bytes_per_party": search.bytes_received_ / (queries * parties),
    }


@app.command("demo")
def demo_command(
    parties: Annotated[int, typer.Option(help="Data parties (1-16).")] = 3,
    size: Annotated[int, typer.Option(help="Vectors per party.")] = 2000,
    dimension: Annotated[int, typer.Option(help="Vector dimension.")] = 64,
    metric: Annotated[str, typer.Option(help="cosine, inner_product or squared_l2.")] = "cosine",
    k: Annotated[int, typer.Option(help="Neighbours per query.")] = 10,
    queries: Annotated[int, typer.Option(help="Queries to run.")] = 3,
    seed: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Run a federated encrypted search in-process: recall, timings and bytes."""
    if metric not in ("cosine", "inner_product", "squared_l2"):
        raise ParameterError(
            f"--metric must be cosine, inner_product or squared_l2; got {metric!r}"
        )
    result = demo(
        parties=parties,
        size=size,
        dimension=dimension,
        metric=metric,  # type: ignore[arg-type]
        k=k,
        queries=queries,
        seed=seed,
    )
    table = Table(
        title=f"Encrypted federated search: {parties} parties × {size:,} vectors, "
        f"d={dimension}, {metric}, {queries} queries (in-process)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        (f"recall@{k} vs exact search", f"{result['recall_at_k']:.3f}"),
        ("max |decrypted - exact| score", f"{result['max_abs_error']:.1e}"),
        ("party: ingest and pre-encode", f"{result['ingest_seconds_per_party']:.2f} s"),
        ("querier: key generation", f"{result['keygen_seconds']:.2f} s"),
        ("querier: encrypt one query", f"{result['encrypt_seconds'] * 1e3:.1f} ms"),
        ("party: score one query", f"{result['party_seconds'] * 1e3:.0f} ms"),
        ("whole federated query (median)", f"{result['query_seconds'] * 1e3:.0f} ms"),
        ("plaintext numpy search (median)", f"{result['plaintext_seconds'] * 1e3:.2f} ms"),
        ("public context (once per party)", f"{result['context_bytes'] / 1e3:,.0f} KB"),
        ("query (per party)", f"{result['query_bytes'] / 1e3:,.0f} KB"),
        ("answer (per party)", f"{result['result_bytes_per_party'] / 1e3:,.0f} KB"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)


def register(cli: typer.Typer) -> None:
    """Add ``privaudit vector`` to the CLI."""
    cli.add_typer(app, name="vector")

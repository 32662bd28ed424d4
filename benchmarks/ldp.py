"""LDP frequency oracles: speed, accuracy and report size against pure-ldp and multi-freq-ldpy.

Three sections, each printed as a table with its target verdicts:

1. **peers**: every protocol that we and a peer library both have, on identical
   ``(n, k, epsilon, data)``: client reports/s, server seconds, MSE and bits/report.
   GRR (pure-ldp ``DEClient``/``DEServer``, multi-freq-ldpy ``GRR_Client``/
   ``GRR_Aggregator_MI``) at k = 16 and k = 1024; OUE (pure-ldp ``UEClient(use_oue=True)``,
   multi-freq-ldpy ``UE_Client(optimal=True)``), OLH (pure-ldp ``LHClient(use_olh=True)``,
   multi-freq-ldpy ``LH_Client(optimal=True)``), SS (multi-freq-ldpy ``SS_Client``) and
   HR (pure-ldp ``HadamardResponseClient``) at k = 1024. Ours runs on all ``--n`` users;
   the peers, which perturb and aggregate one report at a time in Python, run on the
   first ``m`` of the same users (``m`` chosen per protocol from a pilot so the slowest
   peer takes about ``--peer-budget`` seconds): their reports/s is ``m / client
   seconds`` and their server seconds at ``n`` are extrapolated linearly
   (``server seconds at m × n/m``). The tables and the JSON say so. MSE is measured by
   every library on those same ``m`` users (and by ours on all ``n`` too).
2. **stream**: 10^7 GRR and OLH reports (k = 2^16) streamed through
   ``oracle.aggregator().update(...)`` in chunks, each chunk generated with
   ``randomize``, in 1 and 2 fresh worker processes (shards merged with
   ``Aggregator.merge``). Aggregation seconds exclude generation; peak RSS comes from
   ``resource.getrusage`` in each worker. A cell that runs past ``--stream-budget``
   seconds stops early and extrapolates, and says so.
3. **mss**: MSS vs SS vs PGR at k = 1024 and k = 22,000, epsilon in {1, 3, 5}, n = 10,000
   Zipf users, several trials: MSE, bits/report, client and server (decode) seconds.

The anchor of every comparison runs in the same process and run. Protocols come from
``privaudit.registry.mechanisms`` after ``import privaudit.mechanisms.ldp``: those not
registered (yet) are skipped, and the output says which.

Run from the repository root::

    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/ldp.py
    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/ldp.py --quick    # smoke run, < 1 min
    PYTHONSAFEPATH=1 .venv/bin/python benchmarks/ldp.py --sections peers --protocols ss,oue

Prints the tables and writes ``benchmarks/results/ldp.json`` (``--output``). The peers
come with the ``bench`` extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import math
import multiprocessing
import os
import random
import resource
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling helper modules
import _machine

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUTPUT = HERE / "results" / "ldp.json"

ZIPF_EXPONENT = 1.1  # as `privaudit ldp simulate` and the MSS paper's Zipf data

TARGET_SPEEDUP = 10.0  # client and server, over the fastest peer, at n = 10^6
TARGET_SPEEDUP_N = 10**6
STREAM_TARGET_S = 10.0  # 10^7 reports aggregated, k = 2^16, on 2 cores
STREAM_TARGET_N = 10**7
STREAM_TARGET_K = 2**16
STREAM_TARGET_WORKERS = 2
MSS_MSE_RATIO = 1.3  # MSS MSE <= 1.3 x SS
MSS_BITS_RATIO = 0.8  # MSS bits <= 80 % of SS
MSS_DECODE_SPEEDUP = 10.0  # MSS decode >= 10x faster than PGR

# Protocols of section 1 and the domain sizes they run at.
PEER_CELLS: list[tuple[str, int]] = [
    ("grr", 16),
    ("grr", 1024),
    ("oue", 1024),
    ("olh", 1024),
    ("ss", 1024),
    ("hr", 1024),
]
OURS = "privaudit"
OURS_SECURE = "privaudit, secure rng"

Array = npt.NDArray[Any]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

# Wide enough for the tables when the output is not a terminal (CI logs, pipes).
console = Console(width=None if sys.stdout.isatty() else 220)


# --- data and randomness ----------------------------------------------------------


def tag(text: str) -> int:
    """A stable integer for a name, to derive seeds from."""
    return zlib.crc32(text.encode())


def sim_rng(seed: int, *tags: int) -> np.random.Generator:
    """A seeded simulation generator for one purpose (``tags`` keep streams apart)."""
    from privaudit import simulation_generator

    return simulation_generator(np.random.SeedSequence([seed, *tags]))


def zipf_cdf(k: int) -> FloatArray:
    """Cumulative Zipf(1.1) probabilities over ``0 .. k-1``."""
    weights = 1.0 / np.arange(1, k + 1) ** ZIPF_EXPONENT
    cdf: FloatArray = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    return cdf


def zipf_sample(rng: np.random.Generator, cdf: FloatArray, size: int) -> IntArray:
    """``size`` i.i.d. Zipf values (inverse-CDF sampling)."""
    values: IntArray = np.searchsorted(cdf, rng.random(size), side="right").astype(np.int64)
    np.minimum(values, cdf.size - 1, out=values)
    return values


def frequencies(values: IntArray, k: int) -> FloatArray:
    """The empirical frequencies of the data, which an unbiased oracle estimates."""
    counts: FloatArray = np.bincount(values, minlength=k).astype(float) / max(values.size, 1)
    return counts


def mse(estimate: Array, truth: FloatArray) -> float:
    return float(np.mean((np.asarray(estimate, dtype=float) - truth) ** 2))


def clip_renormalise(estimate: Array) -> FloatArray:
    """Clip at 0 and renormalise: multi-freq-ldpy's MI estimator, our ``"clip"``."""
    from privaudit.mechanisms.ldp._engine import postprocess_frequencies

    result: FloatArray = postprocess_frequencies(np.asarray(estimate, dtype=float), "clip")
    return result


def registered_oracles() -> dict[str, type[Any]]:
    """Every frequency oracle registered after ``import privaudit.mechanisms.ldp``."""
    import privaudit.mechanisms.ldp  # noqa: F401  (registers the protocols)
    from privaudit.mechanisms.ldp import FrequencyOracle
    from privaudit.registry import mechanisms

    found = {}
    for name in mechanisms.names():
        item = mechanisms.get(name)
        if isinstance(item, type) and issubclass(item, FrequencyOracle):
            found[name] = item
    return found


def best_of(
    function: Callable[[], Any], *, repeats: int = 3, enough_s: float = 2.0
) -> tuple[float, Any]:
    """Run ``function`` up to ``repeats`` times (stop once ``enough_s`` seconds are
    spent) and return the fastest time with the last result."""
    best, result, spent = math.inf, None, 0.0
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        result = function()
        elapsed = time.perf_counter() - started
        best, spent = min(best, elapsed), spent + elapsed
        if spent >= enough_s:
            break
    return best, result


_CLOCK_TICKS = _machine.CLOCK_TICKS
busy_cpu_seconds = _machine.busy_cpu_seconds
NOISY_OTHER_CPU_CORES = 0.2
MIN_CPU_WINDOW_S = 0.5


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its reaped children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class CpuWindow:
    """How much CPU *other* programs used while a cell ran (from ``/proc/stat``):
    the machine's busy time minus ours (and our workers', passed to :meth:`stop`)."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.busy = busy_cpu_seconds()
        self.own = own_cpu_seconds()

    def stop(self, extra_own_s: float = 0.0) -> float | None:
        """Cores used by other programs on average over the window."""
        wall = time.perf_counter() - self.wall
        busy = busy_cpu_seconds()
        if busy is None or self.busy is None or wall < MIN_CPU_WINDOW_S:
            return None  # /proc/stat counts 10 ms ticks: too coarse for a short window
        own = own_cpu_seconds() - self.own + extra_own_s
        return max(0.0, (busy - self.busy - own) / wall)


def wire_bits(oracle: Any, reports: Any) -> float | None:
    """Bits per report of ``oracle.encode`` (our wire format, header amortised)."""
    try:
        return len(oracle.encode(reports)) * 8 / reports.n
    except (NotImplementedError, AttributeError):
        return None


# --- peers ------------------------------------------------------------------------

ClientFn = Callable[[list[int]], list[Any]]
ServerFn = Callable[[list[Any]], FloatArray]


@dataclass(frozen=True)
class Peer:
    """One peer library's implementation of one of our protocols."""

    library: str
    protocol: str
    api: str
    estimator: str  # "unbiased" or "clip+renormalise"
    one_based: bool
    build: Callable[[int, float], tuple[ClientFn, ServerFn]]
    bits: Callable[[int, float], float]
    bits_note: str


def _pure_ldp_build(
    client_name: str, server_name: str, **options: Any
) -> Callable[[int, float], tuple[ClientFn, ServerFn]]:
    def build(k: int, epsilon: float) -> tuple[ClientFn, ServerFn]:
        from pure_ldp import frequency_oracles as oracles

        server = getattr(oracles, server_name)(epsilon, k, **options)
        if client_name == "HadamardResponseClient":
            client = oracles.HadamardResponseClient(epsilon, k, server.get_hash_funcs())
        else:
            client = getattr(oracles, client_name)(epsilon, k, **options)

        def client_fn(items: list[int]) -> list[Any]:
            privatise = client.privatise
            return [privatise(item) for item in items]

        def server_fn(reports: list[Any]) -> FloatArray:
            server.aggregate_all(reports)
            counts = server.estimate_all(range(1, k + 1), suppress_warnings=True)
            return np.asarray(counts, dtype=float) / len(reports)  # counts -> frequencies

        return client_fn, server_fn

    return build


def _hr_bits(k: int, epsilon: float) -> float:
    from pure_ldp.frequency_oracles import HadamardResponseServer

    return float(HadamardResponseServer(epsilon, k).hr.outbit)


def _mfl_build(protocol: str) -> Callable[[int, float], tuple[ClientFn, ServerFn]]:
    def build(k: int, epsilon: float) -> tuple[ClientFn, ServerFn]:
        from multi_freq_ldpy.pure_frequency_oracles import GRR, LH, SS, UE

        eps = float(epsilon)
        if protocol == "grr":
            grr_client = GRR.GRR_Client
            return (
                lambda items: [grr_client(v, k, eps) for v in items],
                lambda reports: np.asarray(GRR.GRR_Aggregator_MI(reports, k, eps), dtype=float),
            )
        if protocol == "oue":
            ue_client = UE.UE_Client
            return (
                lambda items: [ue_client(v, k, eps, True) for v in items],
                lambda reports: np.asarray(UE.UE_Aggregator_MI(reports, eps, True), dtype=float),
            )
        if protocol == "olh":
            lh_client = LH.LH_Client
            return (
                lambda items: [lh_client(v, k, eps, True) for v in items],
                lambda reports: np.asarray(LH.LH_Aggregator_MI(reports, k, eps, True), dtype=float),
            )
        if protocol == "ss":
            ss_client = SS.SS_Client
            return (
                lambda items: [ss_client(v, k, eps) for v in items],
                lambda reports: np.asarray(SS.SS_Aggregator_MI(reports, k, eps), dtype=float),
            )
        raise ValueError(protocol)

    return build


def _log2_ceil(count: float) -> float:
    return float(max(1, math.ceil(math.log2(count))))


def _olh_g(epsilon: float) -> int:
    return round(math.exp(epsilon)) + 1


def _mfl_ss_omega(k: int, epsilon: float) -> int:
    return max(1, round(k / (math.exp(epsilon) + 1)))


PEERS: list[Peer] = [
    Peer(
        "pure-ldp",
        "grr",
        "DEClient / DEServer",
        "unbiased",
        True,
        _pure_ldp_build("DEClient", "DEServer"),
        lambda k, e: _log2_ceil(k),
        "one index in [0, k)",
    ),
    Peer(
        "multi-freq-ldpy",
        "grr",
        "GRR_Client / GRR_Aggregator_MI",
        "clip+renormalise",
        False,
        _mfl_build("grr"),
        lambda k, e: _log2_ceil(k),
        "one index in [0, k)",
    ),
    Peer(
        "pure-ldp",
        "oue",
        "UEClient / UEServer (use_oue=True)",
        "unbiased",
        True,
        _pure_ldp_build("UEClient", "UEServer", use_oue=True),
        lambda k, e: float(k),
        "k bits (sent as a length-k int array)",
    ),
    Peer(
        "multi-freq-ldpy",
        "oue",
        "UE_Client / UE_Aggregator_MI (optimal=True)",
        "clip+renormalise",
        False,
        _mfl_build("oue"),
        lambda k, e: float(k),
        "k bits (sent as a length-k float array)",
    ),
    Peer(
        "pure-ldp",
        "olh",
        "LHClient / LHServer (use_olh=True)",
        "unbiased",
        True,
        _pure_ldp_build("LHClient", "LHServer", use_olh=True),
        lambda k, e: 63 + _log2_ceil(_olh_g(e)),
        "63-bit xxhash seed + hash value in [0, g)",
    ),
    Peer(
        "multi-freq-ldpy",
        "olh",
        "LH_Client / LH_Aggregator_MI (optimal=True)",
        "clip+renormalise",
        False,
        _mfl_build("olh"),
        lambda k, e: 63 + _log2_ceil(_olh_g(e)),
        "63-bit xxhash seed + hash value in [0, g)",
    ),
    Peer(
        "multi-freq-ldpy",
        "ss",
        "SS_Client / SS_Aggregator_MI",
        "clip+renormalise",
        False,
        _mfl_build("ss"),
        lambda k, e: _mfl_ss_omega(k, e) * _log2_ceil(k),
        "ω indices of ⌈log2 k⌉ bits, ω = round(k/(e^ε+1))",
    ),
    Peer(
        "pure-ldp",
        "hr",
        "HadamardResponseClient / HadamardResponseServer",
        "unbiased",
        True,
        _pure_ldp_build("HadamardResponseClient", "HadamardResponseServer"),
        _hr_bits,
        "one output index in [0, K)",
    ),
]


def peer_versions() -> dict[str, str | None]:
    return {
        name: _machine.package_version(name)
        for name in ("pure-ldp", "multi-freq-ldpy", "numba", "xxhash")
    }


def peer_available(library: str) -> str | None:
    """``None`` if the library imports, else why not."""
    module = {"pure-ldp": "pure_ldp.frequency_oracles", "multi-freq-ldpy": "multi_freq_ldpy"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            __import__(module[library])
    except Exception as error:  # an optional peer: any import failure means skip it
        return f"{type(error).__name__}: {error}"
    return None


_NUMBA_SEED: list[Callable[[int], None]] = []


def seed_peers(seed: int) -> None:
    """Seed the global generators the peers draw from (Python's, NumPy's, numba's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # the peers draw from the legacy global state
    if not _NUMBA_SEED:
        try:
            import numba
        except ImportError:
            return

        def _seed(value: int) -> None:
            np.random.seed(value)  # inside numba: seeds numba's own generator

        _NUMBA_SEED.append(numba.njit(_seed))
    _NUMBA_SEED[0](seed % 2**32)


def run_peer(peer: Peer, k: int, epsilon: float, values: IntArray) -> dict[str, Any]:
    """One client pass and one server pass of a peer over ``values``."""
    items = (values + 1 if peer.one_based else values).tolist()
    client_fn, server_fn = peer.build(k, epsilon)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        reports = client_fn(items)
        client_s = time.perf_counter() - started
        started = time.perf_counter()
        estimate = server_fn(reports)
        server_s = time.perf_counter() - started
    return {"client_s": client_s, "server_s": server_s, "estimate": estimate}


# --- section 1: ours vs peers -----------------------------------------------------


def peers_section(
    args: argparse.Namespace, oracles: dict[str, type[Any]], skipped: list[str]
) -> dict[str, Any]:
    n, epsilon = args.n, args.epsilon
    unavailable = {} if args.skip_peers else {lib: peer_available(lib) for lib in LIBRARIES}
    cells: list[dict[str, Any]] = []
    for protocol, k in PEER_CELLS:
        if args.protocols and protocol not in args.protocols:
            continue  # not asked for (--protocols)
        label = f"{protocol} (k={k})"
        if protocol not in oracles:
            skipped.append(f"peers: {label}: '{protocol}' is not registered")
            continue
        peers = [
            peer
            for peer in PEERS
            if peer.protocol == protocol and not args.skip_peers and not unavailable[peer.library]
        ]
        console.print(f"[bold]peers[/] {label}, ε={epsilon:g}: ours on n={n:,}", end="")
        window = CpuWindow()
        try:
            cell = peer_cell(args, oracles[protocol], protocol, k, epsilon, peers)
            cell["other_cpu_cores"] = window.stop()
        except Exception as error:  # a protocol under construction must not stop the run
            console.print(f"\n  [red]failed[/]: {type(error).__name__}: {error}")
            skipped.append(f"peers: {label}: failed: {type(error).__name__}: {error}")
            cells.append({"protocol": protocol, "k": k, "error": f"{error!r}"})
            continue
        console.print(f", peers on m={cell['m']:,}")
        cells.append(cell)
    verdicts = peer_verdicts(cells, n)
    return {
        "n": n,
        "epsilon": epsilon,
        "cells": cells,
        "peers_unavailable": {lib: why for lib, why in unavailable.items() if why},
        "verdicts": verdicts,
    }


LIBRARIES = ("pure-ldp", "multi-freq-ldpy")


def peer_cell(
    args: argparse.Namespace,
    cls: type[Any],
    protocol: str,
    k: int,
    epsilon: float,
    peers: list[Peer],
) -> dict[str, Any]:
    n = args.n
    seed = args.seed
    data = zipf_sample(sim_rng(seed, 1, tag(protocol), k), zipf_cdf(k), n)
    oracle = cls(k=k, epsilon=epsilon)

    # Pilot: warm every peer up (numba JIT, caches), then time a small batch to choose m,
    # the subsample on which the slowest peer takes about --peer-budget seconds.
    m = min(n, args.peer_max_n)
    pilots: dict[str, float] = {}
    for index, peer in enumerate(peers):
        seed_peers(seed + index)
        run_peer(peer, k, epsilon, data[:50])
        pilot = run_peer(peer, k, epsilon, data[: args.peer_pilot_n])
        per_report = (pilot["client_s"] + pilot["server_s"]) / args.peer_pilot_n
        pilots[peer.library] = per_report
        m = min(m, max(args.peer_pilot_n, int(args.peer_budget / per_report)))
    m = _round_down(m)
    sub = data[:m]
    truth_m, truth_n = frequencies(sub, k), frequencies(data, k)

    rows: list[dict[str, Any]] = []
    # Ours on all n users: best of up to 3 (a slow protocol runs once).
    rng = sim_rng(seed, 2, tag(protocol), k)
    client_s, reports = best_of(lambda: oracle.randomize(data, rng=rng))
    server_s, estimate_n = best_of(functools.partial(oracle.estimate, reports))
    del reports
    # Ours on the peers' m users: the MSE of identical data.
    reports_m = oracle.randomize(sub, rng=sim_rng(seed, 3, tag(protocol), k))
    estimate_m = oracle.estimate(reports_m)
    ours = {
        "library": OURS,
        "api": f"{cls.__name__}.randomize / .estimate (PCG64 simulation rng)",
        "estimator": "unbiased",
        "client_reports_per_s": n / client_s,
        "client_measured_n": n,
        "server_s_at_n": server_s,
        "server_measured_n": n,
        "extrapolated": False,
        "mse_unbiased_at_m": mse(estimate_m, truth_m),
        "mse_clip_at_m": mse(clip_renormalise(estimate_m), truth_m),
        "closed_form_mse_at_m": float(oracle.mse(m, truth_m)),
        "mse_unbiased_at_n": mse(estimate_n, truth_n),
        "closed_form_mse_at_n": float(oracle.mse(n, truth_n)),
        "bits_per_report": float(oracle.bits_per_report()),
        "wire_bits_per_report": wire_bits(oracle, reports_m),
        "bits_note": "bits_per_report(); wire = encode() bytes x 8 / m",
    }
    rows.append(ours)
    del reports_m

    # Ours with the default (secure, ChaCha20) generator: what a real client pays.
    secure_n = min(n, args.secure_n)
    secure_s, _ = best_of(lambda: oracle.randomize(data[:secure_n]), repeats=2)
    rows.append(
        {
            "library": OURS_SECURE,
            "api": f"{cls.__name__}.randomize(rng=None): ChaCha20, the default",
            "estimator": "-",
            "client_reports_per_s": secure_n / secure_s,
            "client_measured_n": secure_n,
            "extrapolated": secure_n < n,
        }
    )

    for index, peer in enumerate(peers):
        seed_peers(seed + 100 + index)
        run = run_peer(peer, k, epsilon, sub)
        estimate = run["estimate"]
        row = {
            "library": peer.library,
            "version": _machine.package_version(peer.library),
            "api": peer.api,
            "estimator": peer.estimator,
            "client_reports_per_s": m / run["client_s"],
            "client_measured_n": m,
            "server_s_at_m": run["server_s"],
            "server_s_at_n": run["server_s"] * n / m,
            "server_measured_n": m,
            "extrapolated": m < n,
            "mse_unbiased_at_m": mse(estimate, truth_m) if peer.estimator == "unbiased" else None,
            "mse_clip_at_m": mse(clip_renormalise(estimate), truth_m),
            "bits_per_report": float(peer.bits(k, epsilon)),
            "bits_note": peer.bits_note,
            "pilot_s_per_report": pilots[peer.library],
        }
        row["client_speedup_ours"] = ours["client_reports_per_s"] / row["client_reports_per_s"]
        row["server_speedup_ours"] = row["server_s_at_n"] / ours["server_s_at_n"]
        rows.append(row)
    return {
        "protocol": protocol,
        "k": k,
        "epsilon": epsilon,
        "n": n,
        "m": m,
        "params": _public_params(oracle),
        "rows": rows,
    }


def _public_params(oracle: Any) -> dict[str, Any]:
    with contextlib.suppress(Exception):
        return dict(oracle.public_params())
    return {}


def _round_down(m: int) -> int:
    """Round down to two significant digits (a readable subsample size)."""
    if m < 100:
        return m
    scale = 10 ** (len(str(m)) - 2)
    return (m // scale) * scale


def peer_verdicts(cells: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    verdicts = []
    for cell in cells:
        if "rows" not in cell:
            continue
        ours = cell["rows"][0]
        peers = [row for row in cell["rows"] if row["library"] in LIBRARIES]
        if not peers:
            verdicts.append(
                {
                    "protocol": cell["protocol"],
                    "k": cell["k"],
                    "met": None,
                    "why": "no peer measured",
                }
            )
            continue
        fastest_client = max(peers, key=lambda row: row["client_reports_per_s"])
        fastest_server = min(peers, key=lambda row: row["server_s_at_n"])
        client_x = ours["client_reports_per_s"] / fastest_client["client_reports_per_s"]
        server_x = fastest_server["server_s_at_n"] / ours["server_s_at_n"]
        verdicts.append(
            {
                "protocol": cell["protocol"],
                "k": cell["k"],
                "n": n,
                "at_target_n": n >= TARGET_SPEEDUP_N,
                "client_speedup": client_x,
                "client_fastest_peer": fastest_client["library"],
                "client_met": client_x >= TARGET_SPEEDUP,
                "server_speedup": server_x,
                "server_fastest_peer": fastest_server["library"],
                "server_met": server_x >= TARGET_SPEEDUP,
                "met": client_x >= TARGET_SPEEDUP and server_x >= TARGET_SPEEDUP,
                "peer_subsample_m": cell["m"],
            }
        )
    return verdicts


def print_peers(section: dict[str, Any]) -> None:
    n = section["n"]
    table = Table(
        title=f"1. ours vs peers: identical Zipf({ZIPF_EXPONENT}) data, ε={section['epsilon']:g},"
        f" ours on n={n:,} users; peers on the first m users (column m)",
        caption="client = reports/s. server = seconds to aggregate and estimate n reports; "
        "peers' figure (marked ~) is their time on m reports × n/m. MSE on the same m users "
        "(unbiased: the library's unbiased estimate; clip: clipped at 0 and renormalised, "
        "multi-freq-ldpy's only estimator). MSE @n and closed form: ours on all n. "
        "× columns: ours / peer. bits: a report in the library's own representation, packed; "
        "wire: our encode() bytes. other CPU: cores other programs used meanwhile.",
    )
    columns = [
        ("protocol", "left"),
        ("library", "left"),
        ("client rep/s", "right"),
        ("client ×", "right"),
        ("server s @n", "right"),
        ("server ×", "right"),
        ("m", "right"),
        ("MSE @m unbiased", "right"),
        ("MSE @m clip", "right"),
        ("closed form @m", "right"),
        ("MSE @n", "right"),
        ("bits/rep", "right"),
        ("wire bits", "right"),
        ("other CPU", "right"),
    ]
    for name, justify in columns:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for cell in section["cells"]:
        label = f"{cell['protocol']} k={cell['k']}"
        if "rows" not in cell:
            table.add_row(label, f"[red]failed: {cell['error'][:80]}[/]", end_section=True)
            continue
        rows = cell["rows"]
        for index, row in enumerate(rows):
            peer = row["library"] in LIBRARIES
            approx = "~" if row.get("extrapolated") else ""
            client_label = _fmt(row["client_reports_per_s"], ".3g")
            if row["library"] == OURS_SECURE:
                client_label += f" (n={row['client_measured_n']:,})"
            table.add_row(
                label if index == 0 else "",
                row["library"],
                client_label,
                _times(row.get("client_speedup_ours")) if peer else "",
                (approx + _fmt(row.get("server_s_at_n"), ".3g")) if "server_s_at_n" in row else "",
                _times(row.get("server_speedup_ours")) if peer else "",
                f"{cell['m']:,}" if peer else "",
                _fmt(row.get("mse_unbiased_at_m"), ".3g"),
                _fmt(row.get("mse_clip_at_m"), ".3g"),
                _fmt(row.get("closed_form_mse_at_m"), ".3g"),
                _fmt(row.get("mse_unbiased_at_n"), ".3g"),
                _fmt(row.get("bits_per_report"), ".0f"),
                _fmt(row.get("wire_bits_per_report"), ".1f"),
                _fmt(cell.get("other_cpu_cores"), ".2f") if index == 0 else "",
                end_section=index == len(rows) - 1,
            )
    console.print(table)
    if section["peers_unavailable"]:
        for library, why in section["peers_unavailable"].items():
            console.print(f"[yellow]peer {library} not measured[/]: {why}")
    for verdict in section["verdicts"]:
        name = f"{verdict['protocol']} k={verdict['k']}"
        if verdict["met"] is None:
            console.print(f"target ≥{TARGET_SPEEDUP:g}x the fastest peer, {name}: {verdict['why']}")
            continue
        caveat = "" if verdict["at_target_n"] else f" [yellow](n={n:,}, not 10^6)[/]"
        console.print(
            f"target ≥{TARGET_SPEEDUP:g}x the fastest peer at n=10^6, {name}: "
            f"client {_mark(verdict['client_met'])} ({verdict['client_speedup']:.1f}x "
            f"{verdict['client_fastest_peer']}), server {_mark(verdict['server_met'])} "
            f"({verdict['server_speedup']:.1f}x {verdict['server_fastest_peer']}; peers "
            f"extrapolated from m={verdict['peer_subsample_m']:,}){caveat}"
        )


# --- section 2: streaming aggregation ---------------------------------------------


def _maxrss_mib() -> float:
    """Peak resident set size of this process so far, from ``getrusage`` (Linux: KiB).

    Linux carries ``ru_maxrss`` over fork and exec, so a worker's figure is at least
    the RSS of the process it was forked from: the workers come from a fork server
    started before this benchmark allocated anything large (see :func:`main`).
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def _vm_hwm_mib() -> float | None:
    """Linux's own per-process peak RSS (``VmHWM``), to cross-check ``ru_maxrss``."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def stream_worker(task: dict[str, Any]) -> dict[str, Any]:
    """Stream one shard: generate each chunk with ``randomize``, time only
    ``aggregator.update``; runs in a fresh (spawned) process."""
    oracle = registered_oracles()[task["protocol"]](k=task["k"], epsilon=task["epsilon"])
    cdf = zipf_cdf(task["k"])
    aggregator = oracle.aggregator()
    truth = np.zeros(task["k"], dtype=np.int64)
    rss_start = _maxrss_mib()
    rss_first: float | None = None
    n_target, chunk = task["n"], task["chunk"]
    done = chunks = 0
    generate_s = update_s = 0.0
    started = time.perf_counter()
    stopped_early = False
    while done < n_target:
        size = min(chunk, n_target - done)
        t0 = time.perf_counter()
        rng = sim_rng(task["seed"], 4, task["shard"], chunks)
        values = zipf_sample(rng, cdf, size)
        reports = oracle.randomize(values, rng=rng)
        t1 = time.perf_counter()
        aggregator.update(reports)
        t2 = time.perf_counter()
        generate_s += t1 - t0
        update_s += t2 - t1
        truth += np.bincount(values, minlength=task["k"])
        done += size
        chunks += 1
        del reports, values
        if rss_first is None:
            rss_first = _maxrss_mib()
        if done < n_target and time.perf_counter() - started > task["budget_s"]:
            stopped_early = True
            break
    return {
        "shard": task["shard"],
        "n_target": n_target,
        "n_done": done,
        "chunks": chunks,
        "update_s": update_s,
        "generate_s": generate_s,
        "stopped_early": stopped_early,
        "statistics": aggregator.statistics,
        "truth": truth,
        "rss_after_imports_mib": rss_start,
        "rss_after_first_chunk_mib": rss_first,
        "peak_rss_mib": _maxrss_mib(),
        "cpu_s": time.process_time(),
        "vm_hwm_mib": _vm_hwm_mib(),
    }


def stream_context() -> Any:
    """The multiprocessing context of the streaming workers: a fork server (started
    early by :func:`main`, while this process is small), else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("forkserver")
    return multiprocessing.get_context("spawn")


def start_fork_server() -> None:
    """Start the fork server now, so the workers' inherited ``ru_maxrss`` is small."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        from multiprocessing import forkserver

        forkserver.ensure_running()


def stream_section(
    args: argparse.Namespace, oracles: dict[str, type[Any]], skipped: list[str]
) -> dict[str, Any]:
    cells = []
    context = stream_context()
    for protocol in ("grr", "olh"):
        if protocol not in oracles:
            skipped.append(f"stream: '{protocol}' is not registered")
            continue
        for epsilon in args.stream_epsilons:
            for workers in args.stream_workers:
                label = f"{protocol} ε={epsilon:g} workers={workers}"
                console.print(
                    f"[bold]stream[/] {label}: {args.stream_n:,} reports, k={args.stream_k}"
                )
                try:
                    cell = stream_cell(args, context, protocol, epsilon, workers)
                except Exception as error:  # a protocol under construction
                    console.print(f"  [red]failed[/]: {type(error).__name__}: {error}")
                    skipped.append(f"stream: {label}: failed: {type(error).__name__}: {error}")
                    cell = {
                        "protocol": protocol,
                        "epsilon": epsilon,
                        "workers": workers,
                        "error": repr(error),
                    }
                cells.append(cell)
    return {
        "n": args.stream_n,
        "k": args.stream_k,
        "chunk": args.stream_chunk,
        "budget_s": args.stream_budget,
        "cells": cells,
        "verdicts": stream_verdicts(cells, args),
    }


def stream_cell(
    args: argparse.Namespace,
    context: Any,
    protocol: str,
    epsilon: float,
    workers: int,
) -> dict[str, Any]:
    k, n = args.stream_k, args.stream_n
    shares = [n // workers + (1 if shard < n % workers else 0) for shard in range(workers)]
    tasks = [
        {
            "protocol": protocol,
            "k": k,
            "epsilon": epsilon,
            "n": share,
            "chunk": args.stream_chunk,
            "seed": args.seed + tag(protocol) + int(epsilon * 1000),
            "shard": shard,
            "budget_s": args.stream_budget,
        }
        for shard, share in enumerate(shares)
    ]
    # One fresh process per shard; a worker that dies raises BrokenProcessPool.
    window = CpuWindow()
    with ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
        results = list(pool.map(stream_worker, tasks))
    other_cpu = window.stop(sum(result["cpu_s"] for result in results))

    oracle = registered_oracles()[protocol](k=k, epsilon=epsilon)
    started = time.perf_counter()
    total = oracle.aggregator()
    for result in results:
        shard = oracle.aggregator()
        shard.statistics += result["statistics"]
        shard.n = result["n_done"]
        total.merge(shard)
    estimate = total.estimate()
    merge_s = time.perf_counter() - started

    done = sum(result["n_done"] for result in results)
    stopped = any(result["stopped_early"] for result in results)
    # Workers run in parallel: the aggregation wall time is the slowest shard's.
    per_worker = [result["update_s"] * result["n_target"] / result["n_done"] for result in results]
    aggregation_s = max(per_worker) + merge_s
    truth = sum(result["truth"] for result in results) / done
    return {
        "protocol": protocol,
        "epsilon": epsilon,
        "workers": workers,
        "k": k,
        "n": n,
        "n_aggregated": done,
        "extrapolated": stopped,
        "aggregation_s": aggregation_s,
        "aggregation_reports_per_s": n / aggregation_s,
        "merge_and_estimate_s": merge_s,
        "update_s_per_worker": [result["update_s"] for result in results],
        "generate_s_per_worker": [result["generate_s"] for result in results],
        "peak_rss_mib_per_worker": [result["peak_rss_mib"] for result in results],
        "rss_after_imports_mib_per_worker": [result["rss_after_imports_mib"] for result in results],
        "rss_after_first_chunk_mib_per_worker": [
            result["rss_after_first_chunk_mib"] for result in results
        ],
        "peak_rss_mib_total": sum(result["peak_rss_mib"] for result in results),
        "vm_hwm_mib_per_worker": [result["vm_hwm_mib"] for result in results],
        "mse": mse(estimate, truth),
        "closed_form_mse": float(oracle.mse(done, truth)),
        "bits_per_report": float(oracle.bits_per_report()),
        "other_cpu_cores": other_cpu,
    }


def stream_verdicts(cells: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    verdicts = []
    for cell in cells:
        if "error" in cell or cell["workers"] > STREAM_TARGET_WORKERS:
            continue
        at_target = cell["n"] >= STREAM_TARGET_N and cell["k"] == STREAM_TARGET_K
        verdicts.append(
            {
                "protocol": cell["protocol"],
                "epsilon": cell["epsilon"],
                "workers": cell["workers"],
                "aggregation_s": cell["aggregation_s"],
                "extrapolated": cell["extrapolated"],
                "peak_rss_mib_total": cell["peak_rss_mib_total"],
                "met": cell["aggregation_s"] <= STREAM_TARGET_S,
                "at_target_size": at_target,
            }
        )
    return verdicts


def print_stream(section: dict[str, Any]) -> None:
    table = Table(
        title=f"2. streaming aggregation: {section['n']:,} reports, k={section['k']:,}, "
        f"chunks of {section['chunk']:,}, each worker a fresh process",
        caption="aggregation s = the slowest worker's summed aggregator.update() time "
        "(generation excluded) + merge + estimate; ~ = the worker stopped after "
        f"--stream-budget={section['budget_s']:g} s and its time is extrapolated to its "
        "whole shard. RSS in MiB per worker: after imports → after the first chunk → peak.",
    )
    for name in [
        "protocol",
        "ε",
        "workers",
        "aggregated",
        "aggregation s",
        "reports/s",
        "generation s",
        "RSS MiB (imports → 1st chunk → peak)",
        "MSE",
        "closed form",
        "other CPU",
    ]:
        table.add_column(name, justify="left" if name in ("protocol", "RSS") else "right")
    for cell in section["cells"]:
        if "error" in cell:
            table.add_row(
                cell["protocol"],
                f"{cell['epsilon']:g}",
                str(cell["workers"]),
                f"[red]failed: {cell['error'][:80]}[/]",
            )
            continue
        rss = ", ".join(
            f"{a:.0f}→{b:.0f}→{c:.0f}"
            for a, b, c in zip(
                cell["rss_after_imports_mib_per_worker"],
                cell["rss_after_first_chunk_mib_per_worker"],
                cell["peak_rss_mib_per_worker"],
                strict=True,
            )
        )
        approx = "~" if cell["extrapolated"] else ""
        table.add_row(
            cell["protocol"],
            f"{cell['epsilon']:g}",
            str(cell["workers"]),
            f"{cell['n_aggregated']:,}",
            approx + _fmt(cell["aggregation_s"], ".3g"),
            approx + _fmt(cell["aggregation_reports_per_s"], ".3g"),
            " + ".join(_fmt(value, ".3g") for value in cell["generate_s_per_worker"]),
            rss,
            _fmt(cell["mse"], ".3g"),
            _fmt(cell["closed_form_mse"], ".3g"),
            _fmt(cell.get("other_cpu_cores"), ".2f"),
        )
    console.print(table)
    for verdict in section["verdicts"]:
        caveat = "" if verdict["at_target_size"] else " [yellow](not at 10^7, k=2^16)[/]"
        approx = " (extrapolated)" if verdict["extrapolated"] else ""
        console.print(
            f"target ≤{STREAM_TARGET_S:g} s for 10^7 reports on {STREAM_TARGET_WORKERS} cores, "
            f"{verdict['protocol']} ε={verdict['epsilon']:g} workers={verdict['workers']}: "
            f"{_mark(verdict['met'])} ({verdict['aggregation_s']:.3g} s{approx}, peak RSS "
            f"{verdict['peak_rss_mib_total']:.0f} MiB in all){caveat}"
        )


# --- section 3: MSS vs SS vs PGR ----------------------------------------------------


def mss_section(
    args: argparse.Namespace, oracles: dict[str, type[Any]], skipped: list[str]
) -> dict[str, Any]:
    protocols = [name for name in ("mss", "ss", "pgr") if name in oracles]
    for name in ("mss", "ss", "pgr"):
        if name not in oracles:
            skipped.append(f"mss: '{name}' is not registered")
    cells = []
    for k in args.mss_k:
        cdf = zipf_cdf(k)
        for epsilon in args.mss_epsilons:
            datasets = [
                zipf_sample(sim_rng(args.seed, 5, k, trial), cdf, args.mss_n)
                for trial in range(args.mss_trials)
            ]
            for protocol in protocols:
                console.print(f"[bold]mss[/] k={k:,} ε={epsilon:g} {protocol}", end="")
                window = CpuWindow()
                try:
                    cell = mss_cell(args, oracles[protocol], protocol, k, epsilon, datasets)
                    cell["other_cpu_cores"] = window.stop()
                except Exception as error:  # a protocol under construction
                    console.print(f"\n  [red]failed[/]: {type(error).__name__}: {error}")
                    skipped.append(
                        f"mss: {protocol} k={k} ε={epsilon:g}: failed: "
                        f"{type(error).__name__}: {error}"
                    )
                    cell = {"protocol": protocol, "k": k, "epsilon": epsilon, "error": repr(error)}
                else:
                    console.print(f": {cell['trials']} trial(s)")
                cells.append(cell)
    return {
        "n": args.mss_n,
        "k": args.mss_k,
        "epsilons": args.mss_epsilons,
        "trials_asked": args.mss_trials,
        "protocols": protocols,
        "cells": cells,
        "verdicts": mss_verdicts(cells),
    }


def mss_cell(
    args: argparse.Namespace,
    cls: type[Any],
    protocol: str,
    k: int,
    epsilon: float,
    datasets: list[IntArray],
) -> dict[str, Any]:
    oracle = cls(k=k, epsilon=epsilon)
    errors, client, server, server_cpu = [], [], [], []
    wire: float | None = None
    started = time.perf_counter()
    for trial, data in enumerate(datasets):
        rng = sim_rng(args.seed, 6, tag(protocol), k, int(epsilon * 1000), trial)
        t0 = time.perf_counter()
        reports = oracle.randomize(data, rng=rng)
        t1 = time.perf_counter()
        cpu = time.process_time()
        estimate = oracle.estimate(reports)
        t2 = time.perf_counter()
        server_cpu.append(time.process_time() - cpu)
        client.append(t1 - t0)
        server.append(t2 - t1)
        errors.append(mse(estimate, frequencies(data, k)))
        if wire is None:
            wire = wire_bits(oracle, reports)
        del reports
        if time.perf_counter() - started > args.mss_budget:
            break
    truth = frequencies(np.concatenate(datasets[: len(errors)]), k)
    return {
        "protocol": protocol,
        "k": k,
        "epsilon": epsilon,
        "n": int(datasets[0].size),
        "trials": len(errors),
        "params": _public_params(oracle),
        "mse_mean": float(np.mean(errors)),
        "mse_sd": float(np.std(errors, ddof=1)) if len(errors) > 1 else None,
        "closed_form_mse": float(oracle.mse(int(datasets[0].size), truth)),
        "bits_per_report": float(oracle.bits_per_report()),
        "wire_bits_per_report": wire,
        "client_s_mean": float(np.mean(client)),
        "decode_s_mean": float(np.mean(server)),
        "decode_s_sd": float(np.std(server, ddof=1)) if len(server) > 1 else None,
        "decode_s_min": float(np.min(server)),
        # The first decode of a fresh oracle pays its one-off set-up (MSS: the CG solve
        # behind the Toeplitz inverse; PGR: its lift map); the mean includes it.
        "decode_s_first": float(server[0]),
        "decode_cpu_s_mean": float(np.mean(server_cpu)),
    }


def mss_verdicts(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_key = {(c["k"], c["epsilon"], c["protocol"]): c for c in cells if "error" not in c}
    verdicts = []
    for k, epsilon in sorted({(c["k"], c["epsilon"]) for c in cells}):
        mss, ss, pgr = (by_key.get((k, epsilon, name)) for name in ("mss", "ss", "pgr"))
        verdict: dict[str, Any] = {"k": k, "epsilon": epsilon}
        if mss is None:
            verdict["why"] = "MSS not measured (not registered, or it failed)"
            verdicts.append(verdict)
            continue
        if ss is not None:
            verdict["mse_ratio_vs_ss"] = mss["mse_mean"] / ss["mse_mean"]
            # The closed forms on the same data: exact, so free of the trials' noise.
            verdict["exact_mse_ratio_vs_ss"] = mss["closed_form_mse"] / ss["closed_form_mse"]
            verdict["mse_met"] = verdict["mse_ratio_vs_ss"] <= MSS_MSE_RATIO
            verdict["exact_mse_met"] = verdict["exact_mse_ratio_vs_ss"] <= MSS_MSE_RATIO
            verdict["bits_ratio_vs_ss"] = mss["bits_per_report"] / ss["bits_per_report"]
            verdict["bits_met"] = verdict["bits_ratio_vs_ss"] <= MSS_BITS_RATIO
        if pgr is not None:
            verdict["decode_speedup_vs_pgr"] = pgr["decode_s_mean"] / mss["decode_s_mean"]
            verdict["decode_met"] = verdict["decode_speedup_vs_pgr"] >= MSS_DECODE_SPEEDUP
            verdict["decode_cpu_speedup_vs_pgr"] = (
                pgr["decode_cpu_s_mean"] / mss["decode_cpu_s_mean"]
            )
            verdict["first_decode_speedup_vs_pgr"] = pgr["decode_s_first"] / mss["decode_s_first"]
        verdicts.append(verdict)
    return verdicts


def print_mss(section: dict[str, Any]) -> None:
    table = Table(
        title=f"3. MSS vs SS vs PGR: n={section['n']:,} Zipf({ZIPF_EXPONENT}) users, "
        f"up to {section['trials_asked']} trials (fresh data and randomness each)",
        caption="MSE: mean over trials of the unbiased estimate's MSE against the trial's "
        "empirical frequencies (± sd); closed form: oracle.mse(n, f). decode = server "
        "seconds of oracle.estimate(reports) (validation + aggregation + estimation), "
        "mean ± sd over trials, wall clock; decode CPU: its process CPU seconds; 1st "
        "decode: the first trial's, which pays the oracle's one-off set-up. "
        "Ratios: against SS (MSE, bits) and PGR (decode) at the same k and ε.",
    )
    for name in [
        "k",
        "ε",
        "protocol",
        "trials",
        "MSE",
        "closed form",
        "MSE / SS",
        "bits/rep",
        "bits / SS",
        "wire bits",
        "client s",
        "decode s",
        "decode CPU s",
        "1st decode s",
        "PGR decode ×",
        "other CPU",
    ]:
        table.add_column(name, justify="left" if name == "protocol" else "right")
    by_key = {
        (c["k"], c["epsilon"], c["protocol"]): c for c in section["cells"] if "error" not in c
    }
    keys = sorted({(c["k"], c["epsilon"]) for c in section["cells"]})
    for k, epsilon in keys:
        group = [c for c in section["cells"] if c["k"] == k and c["epsilon"] == epsilon]
        ss, pgr = by_key.get((k, epsilon, "ss")), by_key.get((k, epsilon, "pgr"))
        for index, cell in enumerate(group):
            last = index == len(group) - 1
            if "error" in cell:
                table.add_row(
                    f"{k:,}",
                    f"{epsilon:g}",
                    cell["protocol"],
                    f"[red]failed: {cell['error'][:80]}[/]",
                    end_section=last,
                )
                continue
            sd = f" ± {cell['mse_sd']:.2g}" if cell["mse_sd"] is not None else ""
            decode_sd = f" ± {cell['decode_s_sd']:.2g}" if cell["decode_s_sd"] is not None else ""
            table.add_row(
                f"{k:,}",
                f"{epsilon:g}",
                cell["protocol"],
                str(cell["trials"]),
                f"{cell['mse_mean']:.3g}{sd}",
                _fmt(cell["closed_form_mse"], ".3g"),
                _ratio(cell["mse_mean"], ss["mse_mean"] if ss else None),
                _fmt(cell["bits_per_report"], ".0f"),
                _ratio(cell["bits_per_report"], ss["bits_per_report"] if ss else None),
                _fmt(cell["wire_bits_per_report"], ".1f"),
                _fmt(cell["client_s_mean"], ".3g"),
                f"{cell['decode_s_mean']:.3g}{decode_sd}",
                _fmt(cell.get("decode_cpu_s_mean"), ".3g"),
                _fmt(cell.get("decode_s_first"), ".3g"),
                _ratio(pgr["decode_s_mean"], cell["decode_s_mean"]) if pgr else "-",
                _fmt(cell.get("other_cpu_cores"), ".2f"),
                end_section=last,
            )
    console.print(table)
    for verdict in section["verdicts"]:
        where = f"k={verdict['k']:,} ε={verdict['epsilon']:g}"
        if "why" in verdict:
            console.print(f"MSS targets, {where}: [yellow]not evaluated[/]: {verdict['why']}")
            continue
        parts = []
        if "mse_met" in verdict:
            parts.append(
                f"MSE ≤{MSS_MSE_RATIO:g}x SS {_mark(verdict['mse_met'])} "
                f"({verdict['mse_ratio_vs_ss']:.2f}x measured; exact "
                f"{verdict['exact_mse_ratio_vs_ss']:.2f}x {_mark(verdict['exact_mse_met'])})"
            )
            parts.append(
                f"bits ≤{MSS_BITS_RATIO:.0%} of SS {_mark(verdict['bits_met'])} "
                f"({verdict['bits_ratio_vs_ss']:.0%})"
            )
        else:
            parts.append("vs SS: [yellow]SS not measured[/]")
        if "decode_met" in verdict:
            parts.append(
                f"decode ≥{MSS_DECODE_SPEEDUP:g}x faster than PGR "
                f"{_mark(verdict['decode_met'])} ({verdict['decode_speedup_vs_pgr']:.2g}x; "
                f"CPU {verdict['decode_cpu_speedup_vs_pgr']:.2g}x, first decode "
                f"{verdict['first_decode_speedup_vs_pgr']:.2g}x)"
            )
        else:
            parts.append("vs PGR: [yellow]PGR not measured[/]")
        console.print(f"MSS targets, {where}: " + "; ".join(parts))


# --- output helpers -----------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def _ratio(value: float, reference: float | None) -> str:
    if reference is None or not reference:
        return "-"
    return f"{value / reference:.2f}"


def _mark(met: bool) -> str:
    return "[green]met[/]" if met else "[red]missed[/]"


def machine_info() -> dict[str, Any]:
    return _machine.machine_info(
        [
            "privaudit",
            "numpy",
            "scipy",
            "randomgen",
            "pure-ldp",
            "multi-freq-ldpy",
            "numba",
            "xxhash",
            "statsmodels",
        ]
    )


def noisy_cells(sections: dict[str, Any]) -> list[float]:
    """The 'other CPU' figures above the noise threshold, over every section's cells."""
    values = [
        cell.get("other_cpu_cores")
        for section in sections.values()
        for cell in section.get("cells", [])
    ]
    return [value for value in values if value is not None and value > NOISY_OTHER_CPU_CORES]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer | np.floating):
        return value.item()
    return str(value)


# --- command line -------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    def int_list(text: str) -> list[int]:
        return [int(float(part)) for part in text.split(",") if part.strip()]

    def float_list(text: str) -> list[float]:
        return [float(part) for part in text.split(",") if part.strip()]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=lambda s: int(float(s)), default=None, help="users, section 1")
    parser.add_argument("--epsilon", type=float, default=1.0, help="ε of section 1")
    parser.add_argument("--quick", action="store_true", help="a smoke run (< 1 minute)")
    parser.add_argument("--skip-peers", action="store_true", help="do not run the peers")
    parser.add_argument(
        "--sections",
        default="peers,stream,mss",
        help="which sections to run, comma-separated (peers, stream, mss)",
    )
    parser.add_argument(
        "--protocols",
        default="",
        help="peers section: only these protocols, comma-separated (e.g. ss,oue); default all",
    )
    parser.add_argument(
        "--peer-budget",
        type=float,
        default=None,
        help="seconds the slowest peer may take per protocol (sets m)",
    )
    parser.add_argument(
        "--peer-max-n",
        type=lambda s: int(float(s)),
        default=None,
        help="the most users a peer runs on (default 1e5)",
    )
    parser.add_argument(
        "--peer-pilot-n", type=int, default=None, help="users of each peer's timing pilot"
    )
    parser.add_argument(
        "--secure-n",
        type=lambda s: int(float(s)),
        default=200_000,
        help="users randomized with the secure default generator",
    )
    parser.add_argument(
        "--stream-n", type=lambda s: int(float(s)), default=None, help="reports streamed"
    )
    parser.add_argument("--stream-k", type=int, default=STREAM_TARGET_K, help="domain size")
    parser.add_argument(
        "--stream-chunk",
        type=lambda s: int(float(s)),
        default=None,
        help="reports per aggregator.update() call (the budget is checked between chunks)",
    )
    parser.add_argument("--stream-epsilons", type=float_list, default=None, help="e.g. 1,4")
    parser.add_argument(
        "--stream-workers", type=int_list, default=None, help="worker processes, e.g. 1,2"
    )
    parser.add_argument(
        "--stream-budget",
        type=float,
        default=None,
        help="seconds a streaming worker may run before it stops and extrapolates",
    )
    parser.add_argument("--mss-k", type=int_list, default=None, help="e.g. 1024,22000")
    parser.add_argument("--mss-epsilons", type=float_list, default=None, help="e.g. 1,3,5")
    parser.add_argument(
        "--mss-n", type=lambda s: int(float(s)), default=10_000, help="users per trial"
    )
    parser.add_argument("--mss-trials", type=int, default=None, help="trials per cell")
    parser.add_argument(
        "--mss-budget", type=float, default=60.0, help="seconds per MSS-section cell"
    )
    parser.add_argument("--seed", type=int, default=20_251_122)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    args = parser.parse_args(argv)

    quick = args.quick
    defaults: dict[str, Any] = {
        "n": 20_000 if quick else 10**6,
        "peer_budget": 0.3 if quick else 6.0,
        "peer_max_n": 2_000 if quick else 100_000,
        "peer_pilot_n": 200 if quick else 1_000,
        "stream_n": 200_000 if quick else STREAM_TARGET_N,
        "stream_epsilons": [1.0] if quick else [1.0, 4.0],
        "stream_workers": [STREAM_TARGET_WORKERS] if quick else [1, STREAM_TARGET_WORKERS],
        "stream_budget": 5.0 if quick else 60.0,
        "stream_chunk": 1 << 13 if quick else 1 << 16,
        "mss_k": [1024] if quick else [1024, 22_000],
        "mss_epsilons": [1.0, 5.0] if quick else [1.0, 3.0, 5.0],
        "mss_trials": 1 if quick else 20,  # the measured MSE ratio of two means: ~1.5% noise
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if quick:
        args.secure_n = min(args.secure_n, 10_000)
        args.mss_budget = min(args.mss_budget, 5.0)
    args.sections = [part.strip() for part in args.sections.split(",") if part.strip()]
    unknown = set(args.sections) - {"peers", "stream", "mss"}
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    args.protocols = [part.strip() for part in args.protocols.split(",") if part.strip()]
    unknown = set(args.protocols) - {protocol for protocol, _ in PEER_CELLS}
    if unknown:
        parser.error(
            f"unknown --protocols {sorted(unknown)}; the peers section has "
            f"{sorted({protocol for protocol, _ in PEER_CELLS})}"
        )
    if args.n < 100 or args.peer_pilot_n < 10 or args.mss_n < 10 or args.stream_n < 1:
        parser.error("sizes too small")
    if min(args.stream_workers) < 1 or args.mss_trials < 1:
        parser.error("--stream-workers and --mss-trials need positive integers")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    wall = time.perf_counter()
    if "stream" in args.sections:
        start_fork_server()
    oracles = registered_oracles()
    skipped: list[str] = []
    console.print(
        f"registered frequency oracles: {', '.join(oracles)}"
        + ("  [yellow](quick smoke run: not at target sizes)[/]" if args.quick else "")
    )
    sections: dict[str, Any] = {}
    if "peers" in args.sections:
        sections["peers"] = peers_section(args, oracles, skipped)
    if "stream" in args.sections:
        sections["stream"] = stream_section(args, oracles, skipped)
    if "mss" in args.sections:
        sections["mss"] = mss_section(args, oracles, skipped)

    console.print()
    if "peers" in sections:
        print_peers(sections["peers"])
    if "stream" in sections:
        print_stream(sections["stream"])
    if "mss" in sections:
        print_mss(sections["mss"])
    for line in skipped:
        console.print(f"[yellow]skipped[/] {line}")
    noisy = noisy_cells(sections)
    if noisy:
        console.print(
            f"[yellow]warning[/]: other programs used up to {max(noisy):.2f} cores during "
            f"{len(noisy)} cell(s) (columns 'other CPU'): the machine was not quiet, so "
            "those figures understate what it can do"
        )

    document = {
        "benchmark": "ldp",
        "started_at": started.isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - wall,
        "machine": machine_info(),
        "settings": {key: value for key, value in vars(args).items() if key not in ("output",)},
        "data": f"Zipf({ZIPF_EXPONENT}) over [0, k), inverse-CDF sampled from "
        "privaudit.simulation_generator seeds derived from --seed",
        "registered_protocols": list(oracles),
        "peers": {
            "versions": peer_versions(),
            "method": "peers run on the first m of the same users (m per protocol, in each "
            "cell); reports/s = m / client seconds; server seconds at n = server seconds "
            "at m × n/m (marked extrapolated); pure-ldp items are 1-based (fed v + 1), its "
            "count estimates are divided by m; multi-freq-ldpy's MI estimator is clipped "
            "and renormalised, so its MSE is compared in the clip column; numba functions "
            "are warmed up before timing",
        },
        "anchor": "each section's comparison is measured in the same run: the peers "
        "(section 1), the 2-core target (section 2), SS and PGR (section 3)",
        "skipped": skipped,
        "sections": sections,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2, default=_json_default) + "\n")
    console.print(f"wrote {args.output} ({time.perf_counter() - wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Modular subset selection (MSS): subset selection on residues [Arc26]_.

The client
----------
A user with value ``v ∈ [k]`` draws a block ``J`` uniformly from ``[ℓ]``, independently
of ``v``, and reports ``(J, Z)`` where ``Z`` is a subset-selection report [WHW16]_ of the
residue ``v mod m_J`` on the domain ``[m_J]``, with the whole budget ε. The moduli
``m_0 < … < m_{ℓ−1}`` are pairwise coprime. Since ``J`` does not depend on ``v``, the
likelihood ratio of a report between two values is that of one subset-selection report:
at most ``e^ε``, so MSS is ε-LDP.

The server
----------
Let ``A_j ∈ {0,1}^{m_j×k}`` with ``A_j[r, x] = 1{x ≡ r (mod m_j)}``, so that ``A_j f`` is
the residue histogram of block ``j``. With ``c_j[r]`` the number of block-``j`` reports
whose subset holds ``r`` and ``n_j`` the number of block-``j`` reports,

    ŷ_j = (c_j − n_j q_j) / ((n/ℓ)(p_j − q_j))           (unbiased for A_j f)
    f̂   = argmin_z Σ_j w_j ‖A_j z − ŷ_j‖² + λ‖z‖²,   w_j = (n/ℓ)(p_j − q_j)²/(q_j(1 − q_j))

solved through its normal equations ``(N + λI) f̂ = Σ_j w_j A_jᵀ ŷ_j``: ``N`` is symmetric
Toeplitz (``A_jᵀA_j[x, y] = 1{x ≡ y mod m_j}``), so its inverse is fixed by one column
(Gohberg–Semencul, below) and applied with six FFTs, ``O(k log k)`` per estimate with no
iteration; the column costs one conjugate-gradient solve (``O(k ℓ)`` per iteration), once
per oracle. The paper solves the least-squares problem with LSMR [FS11]_ on the sparse,
``√w``-scaled stacked design (``damp = √λ``), ``Θ(r k ℓ)`` for ``r`` iterations; that
solver and plain conjugate gradients are kept and check the default in the tests.
``ŷ_j`` is normalised by the *expected* block size ``n/ℓ`` rather than the observed
``n_j``. That keeps ``n·f̂`` linear in the summed statistics, so estimates from merged
shards equal the one-shot estimate (what the engine's streaming aggregation promises),
it makes ``f̂`` unbiased over the random block assignment with no condition on the
``n_j`` (an empty block is not an error), and it makes the variance below exact. The
ratio form ``c_j/n_j`` of the paper is conditionally unbiased given the ``n_j`` and has
practically the same variance, but it is not additive across shards.

The variance
------------
For a fixed dataset with value distribution ``f`` (the randomness being the blocks and
the subsets), with ``N = Σ_j w_j A_jᵀA_j``, ``K = N + λI`` and ``G = K⁻¹AᵀW``::

    Cov(f̂) = (1/n) [G D Gᵀ − G A diag(f) Aᵀ Gᵀ],
    D_j    = ℓ E_{r ~ A_j f} E[(1_Z − q_j)(1_Z − q_j)ᵀ | r] / (p_j − q_j)²

where ``1_Z`` is the indicator vector of a subset-selection report of residue ``r``
(including the negative covariance between members of one subset); with ``λ = 0`` the
second term is ``diag(f)``. This is exact, for every ``n``: no normal approximation and
no ``n_j ≈ n/ℓ`` approximation is involved. The classic ``f → 0`` approximation
``Cov ≈ N⁻¹`` (the "exact MSE" ``tr(N⁻¹)/k`` of the paper) leaves out the ``f``-dependent
terms and the within-block covariances; it understates the MSE on skewed data at large ε.

``N`` is a symmetric Toeplitz matrix (``N[x, y]`` depends on ``x − y`` only:
``Σ_j w_j 1{m_j | x − y}``), so its inverse has displacement rank 2
(Gohberg–Semencul [GS72]_, Kailath et al. [KKM79]_). This module uses that to get

* ``N⁻¹ b`` for any ``b`` from ``x = N⁻¹ e_0`` by FFT convolutions in ``O(k log k)``
  (``N⁻¹ = (L(x)L(x)ᵀ − L(y)L(y)ᵀ)/x_0``, ``L`` lower triangular Toeplitz): the decoder,
* ``tr(N⁻¹)`` and ``diag(N⁻¹)`` from one solve ``N x = e_0`` in ``O(k)`` more work,
* any diagonal of ``K⁻²`` from four solves and ``O(k)`` work per diagonal, hence the
  exact MSE for a given ``f`` in ``O(k Σ_j k/m_j)`` after the solves,
* the rows of ``K⁻¹`` one after the other in ``O(k)`` each, hence the exact per-value
  variance in ``O(k² ℓ)`` time and ``O(k)`` memory per row,

where ``x`` comes from conjugate gradients with an ``O(kℓ)`` matrix–vector product
(falling back to Levinson recursion if CG stalls) and one refinement step; every other
solve is the FFT product, its residual checked against the CG criterion (``1e-13``
relative) and refined, or handed to CG if ``N`` is too ill-conditioned for it.

The rank of the design
----------------------
For pairwise coprime moduli, ``rank(A) = min(k, Σ_j m_j − ℓ + 1)``. Proof: a function of
``x ∈ ℤ`` of the form ``Σ_j g_j(x mod m_j)`` is a sum of ``m_j``-periodic sequences, so it
satisfies the linear recurrence whose characteristic polynomial is
``lcm_j(z^{m_j} − 1)``, of degree ``D = Σ_j m_j − ℓ + 1`` (coprime moduli share only
the root 1), and conversely every solution is such a sum (the roots are distinct roots of
unity). A solution of an order-``D`` recurrence is fixed by any ``D`` consecutive terms,
and any ``D`` initial terms occur. So restricting to ``[0, k)`` is injective when
``k ≥ D`` and onto when ``k ≤ D``. Full column rank therefore needs exactly
``Σ_j m_j ≥ k + ℓ − 1``, which also implies ``Π_j m_j ≥ k`` (CRT coverage alone is not
enough).

References
----------
.. [Arc26] H. H. Arcolezi, "Private Frequency Estimation via Residue Number Systems",
   AAAI 2026, arXiv:2511.11569.
.. [WHW16] S. Wang, L. Huang, P. Wang, Y. Nie, H. Xu, W. Yang, X.-Y. Li, C. Qiao,
   "Mutual information optimally local private discrete distribution estimation",
   arXiv:1607.08025, 2016.
.. [FS11] D. C.-L. Fong and M. Saunders, "LSMR: An iterative algorithm for sparse
   least-squares problems", SIAM J. Sci. Comput. 33(5), 2011.
.. [GS72] I. C. Gohberg and A. A. Semencul, "On the inversion of finite Toeplitz
   matrices and their continuous analogs", Mat. Issled. 7(2), 1972.
.. [KKM79] T. Kailath, S.-Y. Kung, M. Morf, "Displacement ranks of matrices and linear
   equations", J. Math. Anal. Appl. 68(2), 1979.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from privaudit.errors import DataError, ParameterError
from privaudit.mechanisms.ldp._engine import (
    Field,
    FloatArray,
    FrequencyOracle,
    IntArray,
    PostProcess,
    Reports,
    check_domain,
    check_epsilon,
    check_prior,
    postprocess_frequencies,
)
from privaudit.mechanisms.ldp._subset import (
    ReportForm,
    SubsetRounding,
    SubsetSelection,
    check_subset_bitmaps,
    subset_parameters,
    subset_report_form,
)
from privaudit.mechanisms.ldp._unary import column_bit_counts
from privaudit.registry import mechanisms

__all__ = [
    "MAX_CONDITION",
    "MSE_BUDGET",
    "ModularSubsetSelection",
    "ModuliChoice",
    "choose_moduli",
    "design_rank",
]

MSE_BUDGET = 1.25
"""Default bound on the exact MSE of MSS relative to subset selection, on any dataset,
when the moduli are chosen automatically."""

MAX_CONDITION = 100.0
"""Default bound on the condition number of ``N`` for automatically chosen moduli."""

LSMR_TOLERANCE = 1e-13
"""``atol = btol`` of the LSMR decoder. LSMR stops when ``‖Aᵀr‖ ≤ atol ‖A‖ ‖r‖`` (or
``‖r‖ ≤ btol ‖b‖``); the relative error of the solution is then at most about
``κ(A)²·1e-13 = κ(N)·1e-13 ≤ 1e-11`` for automatic moduli (``κ(N) ≤ 100``), many orders
of magnitude below the statistical error (``≳ n^{-1/2}`` relative) of any estimate, and
small enough that the estimate of merged shards equals the one-shot estimate to 1e-12.
It costs a handful of iterations more than ``1e-8`` would (about 50 instead of 35 at
``k = 1024``)."""

_DEFAULT_LENGTHS = tuple(range(2, 9))
_SPREADS = (0.2, 0.35, 0.5)
_GRID = 32
_PHI_MAX = 1.5
_SEARCH_SIZE = 1024
_REFINE_FAMILIES = 4
_CG_TOLERANCE = 1e-13
_REFINEMENTS = 3  # iterative-refinement steps of the fast solve before falling back to CG
_CACHED_SHIFTS = 4  # Toeplitz-inverse generators kept per design (one per ridge shift)
_MAX_MODULI = 64
_MAX_CHANNEL_OUTPUTS = 100_000
_CHECK_CELLS = 1 << 22  # report cells validated at once (bounded memory)
_SCREEN_WIDTH = 16  # positions-form reports this wide are screened block by block
_WIDE_COUNT = 128  # positions-form reports this wide are counted block by block


# --- moduli ---------------------------------------------------------------------------


def design_rank(k: int, moduli: Sequence[int]) -> int:
    """Rank of the stacked residue design ``A`` for pairwise coprime moduli:
    ``min(k, Σ m_j − ℓ + 1)`` (proved in the module docstring)."""
    return min(int(k), int(sum(moduli)) - len(moduli) + 1)


@functools.lru_cache(maxsize=16)
def _primes_up_to(limit: int) -> IntArray:
    sieve = np.ones(limit + 1, dtype=bool)
    sieve[:2] = False
    for i in range(2, math.isqrt(limit) + 1):
        if sieve[i]:
            sieve[i * i :: i] = False
    primes: IntArray = np.nonzero(sieve)[0].astype(np.int64)
    return primes


@functools.lru_cache(maxsize=8192)
def _block_parameters(
    m: int, epsilon: float, subset_size: int | SubsetRounding
) -> tuple[int, float, float]:
    return subset_parameters(m, epsilon, subset_size)


def _log2_binomial_ceil(m: int, omega: int) -> int:
    log_binomial = (math.lgamma(m + 1) - math.lgamma(omega + 1) - math.lgamma(m - omega + 1)) / (
        math.log(2)
    )
    return max(0, math.ceil(log_binomial - 1e-9))


def _unit_variance(p: float, q: float) -> float:
    return q * (1 - q) / (p - q) ** 2


@dataclass(frozen=True)
class ModuliChoice:
    """The outcome of :func:`choose_moduli`.

    Attributes
    ----------
    moduli
        The chosen pairwise coprime moduli, increasing.
    mse_ratio
        ``tr(N⁻¹)/k`` over subset selection's approximate variance (the ``f → 0``
        oracle; it is the same for every ``n``).
    worst_mse_ratio
        The largest ratio of the *exact* MSE of MSS to that of subset selection over
        all datasets (attained at a point mass, see
        :meth:`ModularSubsetSelection.point_mass_mse`; the same for every ``n``). On
        skewed data at large ε it exceeds ``mse_ratio`` markedly; any dataset's ratio
        is at most this.
    bits_ratio
        :meth:`ModularSubsetSelection.bits_per_report` over subset selection's bits.
    condition
        The condition number of ``N`` (Lanczos estimate from the conjugate-gradient
        solve; it agrees with a dense eigen-solve to a few digits).
    meets_budget
        Whether ``worst_mse_ratio ≤ mse_budget`` and ``condition ≤ max_condition``; if
        no candidate did, the best one found is returned with ``False`` here.
    """

    moduli: tuple[int, ...]
    mse_ratio: float
    worst_mse_ratio: float
    bits_ratio: float
    condition: float
    meets_budget: bool


def choose_moduli(
    k: int,
    epsilon: float,
    *,
    n_moduli: int | None = None,
    subset_size: int | SubsetRounding = "optimal",
    mse_budget: float = MSE_BUDGET,
    max_condition: float = MAX_CONDITION,
) -> ModuliChoice:
    """Choose MSS moduli: the fewest bits per report subject to an MSE budget that
    holds for every dataset.

    The objective is explicit because the two goals pull apart: larger moduli lower the
    MSE towards subset selection's and raise the bits towards its ``⌈log2 C(k, ω)⌉``.
    Among candidate sets of ``ℓ`` distinct primes (so pairwise coprime, with
    ``Σ m ≥ k + ℓ − 1``, hence full column rank and ``Π m ≥ k``), this returns one with
    few expected bits per report whose exact MSE is at most ``mse_budget`` times subset
    selection's on *every* dataset (the worst case is a point mass:
    :meth:`ModularSubsetSelection.point_mass_mse`) and whose ``N`` has condition number
    at most ``max_condition``. The data-free ``f → 0`` oracle ``tr(N⁻¹)/k`` alone is not
    enough: on skewed data at large ε the exact ratio is far above it (at ``k = 1024``,
    ε = 5, moduli with an ``f → 0`` ratio of 1.18 have a worst-case ratio of 1.40 and
    1.39 on Zipf(1.1) data). So the search below runs on the cheap ``f → 0`` oracle with
    an inner budget, the worst case of its pick is computed exactly, and the inner budget
    is tightened until the worst case fits (two or three rounds at large ε, one at small
    ε, where the two ratios agree).

    Candidates: for each ``ℓ`` (2 to 8 unless ``n_moduli`` says), each spread
    ``s ∈ {0.2, 0.35, 0.5}`` and each average size ``a = φk`` on a geometric grid from
    ``(k + ℓ − 1)/ℓ`` to ``1.5k``, the primes nearest to ``a(1 + s(2i/(ℓ−1) − 1))``,
    ``i < ℓ``. Clustered primes are avoided on purpose: they leave nearly null directions
    in ``N``. For each (ℓ, s) the smallest feasible ``φ`` is found by bisection (the MSE
    falls as ``φ`` grows). For ``k > 1024`` that search runs on a domain of 1024 with the
    same ratios (the oracle is close to scale-invariant), and the best few families are
    then verified and adjusted on the true ``k``. If no family is feasible at its largest
    ``φ`` (the MSE need not fall with ``φ`` for a fixed subset size, e.g. ω = 1), a coarse
    scan of every family on the true ``k`` decides (slower: up to ~15 s at
    ``k = 22000``). Each evaluation is one conjugate-
    gradient solve with ``O(kℓ)`` products plus the Gohberg–Semencul trace, so the search
    takes about half a second for ``k = 1024`` and about a second for ``k = 22000`` (one
    core); results are cached.

    Parameters
    ----------
    n_moduli
        Fix ``ℓ`` (1 to 64); ``None`` searches 2 to 8.
    subset_size
        The subset-size rule (or a fixed ω) used in every block.
    mse_budget
        Allowed exact MSE relative to subset selection on any dataset, ``≥ 1``.
    max_condition
        Allowed condition number of ``N``.

    Examples
    --------
    >>> choice = choose_moduli(1024, 1.0)
    >>> choice.meets_budget, choice.worst_mse_ratio <= 1.25, choice.bits_ratio < 0.8
    (True, True, True)
    """
    k = check_domain(k)
    epsilon = check_epsilon(epsilon)
    lengths = _DEFAULT_LENGTHS if n_moduli is None else (_check_n_moduli(n_moduli),)
    _check_rule(subset_size)
    if isinstance(mse_budget, bool) or not isinstance(mse_budget, int | float):
        raise ParameterError(f"mse_budget must be a number >= 1; got {mse_budget!r}")
    if not math.isfinite(mse_budget) or mse_budget < 1:
        raise ParameterError(f"mse_budget must be a finite number >= 1; got {mse_budget!r}")
    if isinstance(max_condition, bool) or not isinstance(max_condition, int | float):
        raise ParameterError(f"max_condition must be a number > 1; got {max_condition!r}")
    if not max_condition > 1:
        raise ParameterError(f"max_condition must be > 1; got {max_condition!r}")
    rule: int | SubsetRounding = (
        int(subset_size) if isinstance(subset_size, int | np.integer) else subset_size
    )
    return _choose_moduli_cached(k, epsilon, lengths, rule, float(mse_budget), float(max_condition))


def _check_n_moduli(n_moduli: object) -> int:
    if isinstance(n_moduli, bool) or not isinstance(n_moduli, int | np.integer):
        raise ParameterError(f"n_moduli must be an integer in [1, {_MAX_MODULI}]; got {n_moduli!r}")
    if not 1 <= n_moduli <= _MAX_MODULI:
        raise ParameterError(f"n_moduli must be in [1, {_MAX_MODULI}]; got {n_moduli}")
    return int(n_moduli)


def _check_rule(subset_size: object) -> None:
    if isinstance(subset_size, str):
        if subset_size not in ("optimal", "round", "ceil"):
            raise ParameterError(
                "subset_size must be an int or one of 'optimal', 'round', 'ceil'; "
                f"got {subset_size!r}"
            )
    elif isinstance(subset_size, bool) or not isinstance(subset_size, int | np.integer):
        raise ParameterError(
            f"subset_size must be an int or a rounding rule for automatic moduli; got "
            f"{subset_size!r}"
        )
    elif subset_size < 1:
        raise ParameterError(f"subset_size must be >= 1; got {subset_size}")


def _snap_to_primes(targets: Sequence[float]) -> tuple[int, ...]:
    """The nearest unused prime (≥ 2) to each target, sorted."""
    limit = 64
    while limit < 2 * max(targets) + 64:
        limit *= 2
    primes = _primes_up_to(limit)
    chosen: set[int] = set()
    for target in targets:
        index = int(np.searchsorted(primes, target))
        low, high = index - 1, index
        while True:
            below = int(primes[low]) if low >= 0 else None
            above = int(primes[high]) if high < primes.size else None
            if below is not None and below in chosen:
                low -= 1
                continue
            if above is not None and above in chosen:
                high += 1
                continue
            if below is None:
                pick = above
            elif above is None or target - below <= above - target:
                pick = below
            else:
                pick = above
            assert pick is not None
            chosen.add(pick)
            break
    return tuple(sorted(chosen))


def _family_moduli(k: int, length: int, spread: float, phi: float) -> tuple[int, ...] | None:
    average = phi * k
    if length == 1:
        targets = [average]
    else:
        targets = [average * (1 + spread * (2 * i / (length - 1) - 1)) for i in range(length)]
    moduli = _snap_to_primes(targets)
    if sum(moduli) < k + length - 1:
        return None
    return moduli


def _expected_bits(moduli: Sequence[int], epsilon: float, rule: int | SubsetRounding) -> float:
    blocks = [_block_parameters(m, epsilon, rule) for m in moduli]
    mean = sum(_log2_binomial_ceil(m, b[0]) for m, b in zip(moduli, blocks, strict=True))
    return math.ceil(math.log2(len(moduli))) + mean / len(moduli)


@dataclass(frozen=True)
class _Evaluation:
    moduli: tuple[int, ...]
    mse_ratio: float
    condition: float
    bits: float


def _evaluate(
    k: int,
    moduli: tuple[int, ...],
    epsilon: float,
    rule: int | SubsetRounding,
    max_condition: float,
) -> _Evaluation | None:
    """The ``f → 0`` oracle of one candidate, or ``None`` if ``N`` is numerically
    singular or its condition number exceeds ``max_condition``."""
    design = _Design.from_rule(k, moduli, epsilon, rule)
    e0 = np.zeros(k)
    e0[0] = 1.0
    # CG needs about √κ/2 · ln(2/tol) ≈ 12√κ iterations for tol = 1e-10.
    budget = 50 + int(15 * math.sqrt(max_condition))
    solution, converged, condition = design.conjugate_gradient(
        e0, 0.0, tolerance=1e-10, max_iterations=budget, abort_condition=max_condition
    )
    if not converged or not math.isfinite(condition) or solution[0] <= 0:
        return None
    diagonal = _gohberg_semencul_diagonal(solution)
    if diagonal.min() < (1 - 1e-8) / design.column[0]:  # (N⁻¹)_xx ≥ 1/N_xx for SPD N
        return None
    _, p, q = _block_parameters(k, epsilon, rule)
    ratio = float(diagonal.sum()) / k / _unit_variance(p, q)
    return _Evaluation(moduli, ratio, condition, _expected_bits(moduli, epsilon, rule))


_BUDGET_ROUNDS = 6
_WORST_CASE_SCAN_K = 4096  # judge every candidate on the exact worst case up to here
_HOPELESS_EXCESS = 20.0  # a worst-case excess this many times the budget's: stop searching


@functools.lru_cache(maxsize=256)
def _choose_moduli_cached(
    k: int,
    epsilon: float,
    lengths: tuple[int, ...],
    rule: int | SubsetRounding,
    mse_budget: float,
    max_condition: float,
) -> ModuliChoice:
    inner_budget = mse_budget
    best: ModuliChoice | None = None
    previous: float | None = None
    for round_index in range(_BUDGET_ROUNDS):
        # Only the first round may fall back to the slow coarse scan on the true k.
        found = _search_moduli(
            k, epsilon, lengths, rule, inner_budget, max_condition, scan=round_index == 0
        )
        if found is None:
            break
        choice = found
        worst = _worst_mse_ratio(k, epsilon, choice.moduli, rule)
        # Judged on the outer budget: an inner search may miss its own (tighter) one.
        meets = worst <= mse_budget and choice.condition <= max_condition
        choice = dataclasses.replace(choice, worst_mse_ratio=worst, meets_budget=meets)
        if best is None or (choice.meets_budget, -choice.worst_mse_ratio) > (
            best.meets_budget,
            -best.worst_mse_ratio,
        ):
            best = choice
        if choice.meets_budget or inner_budget <= 1.0 + 1e-6:
            break
        if worst - 1.0 > _HOPELESS_EXCESS * (mse_budget - 1.0) or (
            previous is not None and worst > previous - 0.01 * (previous - 1.0)
        ):
            # Tightening the f → 0 budget cannot close a gap this large (e.g. ω = 1 at
            # a huge ε, where subset selection is nearly noiseless), or it stopped
            # helping: further rounds would only cost time.
            break
        previous = worst
        # The excess over 1 of the worst case grows roughly in proportion to that of
        # the f → 0 oracle: scale the inner budget down accordingly, with a margin.
        scale = (mse_budget - 1.0) / (worst - 1.0) if worst > 1.0 else 0.5
        inner_budget = 1.0 + (min(inner_budget, choice.mse_ratio) - 1.0) * min(scale, 0.95) * 0.98
    assert best is not None
    hopeless = best.worst_mse_ratio - 1.0 > _HOPELESS_EXCESS * (mse_budget - 1.0)
    if not best.meets_budget and not hopeless and k <= _WORST_CASE_SCAN_K:
        # Small domains, where the two ratios can disagree wildly: judge every candidate
        # of the coarse grid on the worst case itself (cheap at this size).
        scanned = _scan_worst_case(k, epsilon, lengths, rule, mse_budget, max_condition)
        if scanned is not None and (scanned.meets_budget, -scanned.worst_mse_ratio) > (
            best.meets_budget,
            -best.worst_mse_ratio,
        ):
            best = scanned
    return best


def _scan_worst_case(
    k: int,
    epsilon: float,
    lengths: tuple[int, ...],
    rule: int | SubsetRounding,
    mse_budget: float,
    max_condition: float,
) -> ModuliChoice | None:
    """The fewest bits with a worst-case ratio within budget over a coarse candidate grid
    (else the lowest worst-case ratio): candidates in order of bits (cheap to count),
    each judged exactly, until one fits."""
    ss_omega, _, _ = _block_parameters(k, epsilon, rule)
    ss_bits = max(1, _log2_binomial_ceil(k, ss_omega))
    candidates: set[tuple[int, ...]] = set()
    for length in lengths:
        for spread in _SPREADS if length > 1 else (0.0,):
            low = (k + length - 1) / (length * k)
            for phi in np.geomspace(low, max(_PHI_MAX, 1.2 * low), _GRID // 2):
                moduli = _family_moduli(k, length, spread, float(phi))
                if moduli is not None:
                    candidates.add(moduli)
    best: ModuliChoice | None = None
    for moduli in sorted(candidates, key=lambda m: (_expected_bits(m, epsilon, rule), m)):
        evaluation = _evaluate(k, moduli, epsilon, rule, max_condition)
        if evaluation is None:
            continue
        worst = _worst_mse_ratio(k, epsilon, moduli, rule)
        choice = ModuliChoice(
            moduli,
            evaluation.mse_ratio,
            worst,
            evaluation.bits / ss_bits,
            evaluation.condition,
            meets_budget=worst <= mse_budget,
        )
        if choice.meets_budget:
            return choice
        if best is None or worst < best.worst_mse_ratio:
            best = choice
    return best


def _worst_mse_ratio(
    k: int, epsilon: float, moduli: tuple[int, ...], rule: int | SubsetRounding
) -> float:
    """The largest ratio over datasets of the exact MSE of MSS to subset selection's.

    Subset selection's exact MSE at a point mass is ``(k·q(1 − q)/(p − q)² +
    (1 − p − q)/(p − q))/(nk)`` (a pure protocol), the same for every value."""
    mss = ModularSubsetSelection(k=k, epsilon=epsilon, moduli=moduli, subset_size=rule)
    _, p, q = _block_parameters(k, epsilon, rule)
    subset_selection = (k * _unit_variance(p, q) + (1 - p - q) / (p - q)) / k
    return mss.worst_case_mse(1) / subset_selection


def _search_moduli(
    k: int,
    epsilon: float,
    lengths: tuple[int, ...],
    rule: int | SubsetRounding,
    mse_budget: float,
    max_condition: float,
    *,
    scan: bool = True,
) -> ModuliChoice | None:
    """The fewest expected bits whose ``f → 0`` ratio is within ``mse_budget``
    (``worst_mse_ratio`` left at NaN for the caller); ``None`` if the bisection finds
    nothing and ``scan`` is false."""
    ss_omega, _, _ = _block_parameters(k, epsilon, rule)
    ss_bits = max(1, _log2_binomial_ceil(k, ss_omega))
    seen: dict[tuple[int, int, tuple[int, ...]], _Evaluation | None] = {}

    def evaluate(size: int, moduli: tuple[int, ...]) -> _Evaluation | None:
        key = (size, len(moduli), moduli)
        if key not in seen:
            seen[key] = _evaluate(size, moduli, epsilon, rule, max_condition)
        return seen[key]

    def feasible(result: _Evaluation | None) -> bool:
        return (
            result is not None
            and result.mse_ratio <= mse_budget
            and result.condition <= max_condition
        )

    def grid(size: int, length: int) -> FloatArray:
        low = (size + length - 1) / (length * size)
        high = max(_PHI_MAX, 1.2 * low)
        return np.geomspace(low, high, _GRID)

    def candidate(size: int, length: int, spread: float, index: int) -> tuple[int, ...] | None:
        return _family_moduli(size, length, spread, float(grid(size, length)[index]))

    def boundary(size: int, length: int, spread: float) -> int | None:
        """Smallest grid index whose candidate is feasible (bisection; None if none)."""

        def ok(index: int) -> bool:
            moduli = candidate(size, length, spread, index)
            return moduli is not None and feasible(evaluate(size, moduli))

        if not ok(_GRID - 1):
            return None
        low, high = -1, _GRID - 1  # invariant: ok(high), not ok(low) (or low = -1)
        while high - low > 1:
            middle = (low + high) // 2
            if ok(middle):
                high = middle
            else:
                low = middle
        return high

    families = [
        (length, spread) for length in lengths for spread in (_SPREADS if length > 1 else (0.0,))
    ]
    size = min(k, _SEARCH_SIZE)
    found: list[tuple[float, int, float, int]] = []  # (bits at k, ℓ, s, index)
    for length, spread in families:
        index = boundary(size, length, spread)
        if index is None:
            continue
        moduli = candidate(k, length, spread, index)
        if moduli is not None:
            found.append((_expected_bits(moduli, epsilon, rule), length, spread, index))
    found.sort()

    best: _Evaluation | None = None

    def consider(result: _Evaluation | None) -> None:
        nonlocal best
        if feasible(result):
            assert result is not None
            if best is None or (result.bits, result.mse_ratio) < (best.bits, best.mse_ratio):
                best = result

    if size == k:
        for _, length, spread, index in found:
            moduli = candidate(k, length, spread, index)
            assert moduli is not None
            consider(evaluate(k, moduli))
    else:
        for bits, length, spread, index in found[:_REFINE_FAMILIES]:
            if best is not None and bits > best.bits + 1:
                break
            step = index
            first = candidate(k, length, spread, step)
            result = evaluate(k, first) if first is not None else None
            if feasible(result):  # walk down while it stays feasible
                consider(result)
                for _ in range(3):
                    step -= 1
                    lower = candidate(k, length, spread, step) if step >= 0 else None
                    result = evaluate(k, lower) if lower is not None else None
                    if not feasible(result):
                        break
                    consider(result)
            else:  # walk up until feasible
                for _ in range(8):
                    step += 1
                    if step >= _GRID:
                        break
                    upper = candidate(k, length, spread, step)
                    result = evaluate(k, upper) if upper is not None else None
                    if feasible(result):
                        consider(result)
                        break
    if best is not None:
        return ModuliChoice(
            best.moduli,
            best.mse_ratio,
            math.nan,
            best.bits / ss_bits,
            best.condition,
            meets_budget=True,
        )
    if not scan:
        return None
    # The bisection found nothing (the MSE need not fall with φ, e.g. for a fixed ω = 1):
    # scan a coarse grid on k; the fewest bits within budget, else the lowest MSE.
    scanned = [
        evaluate(k, moduli)
        for length, spread in families
        for index in range(0, _GRID, 2)
        if (moduli := candidate(k, length, spread, index)) is not None
    ]
    usable = [result for result in scanned if result is not None]
    if not usable:
        raise ParameterError(
            f"found no usable moduli for k={k}, epsilon={epsilon}; pass moduli= explicitly"
        )
    within = [result for result in usable if feasible(result)]
    if within:
        pick = min(within, key=lambda result: (result.bits, result.mse_ratio))
    else:
        pick = min(usable, key=lambda result: result.mse_ratio)
    return ModuliChoice(
        pick.moduli, pick.mse_ratio, math.nan, pick.bits / ss_bits, pick.condition, bool(within)
    )


# --- the linear algebra of N ----------------------------------------------------------


def _gohberg_semencul_diagonal(first_column: FloatArray) -> FloatArray:
    """``diag(T⁻¹)`` of a symmetric Toeplitz ``T`` from ``x = T⁻¹ e_0``.

    Gohberg–Semencul: ``T⁻¹ = (L(x)L(x)ᵀ − L(y)L(y)ᵀ)/x_0`` with ``L(·)`` the lower
    triangular Toeplitz matrix of a column and ``y = (0, x_{k−1}, …, x_1)``.
    """
    x = first_column
    y = np.concatenate([[0.0], x[:0:-1]])
    diagonal: FloatArray = (np.cumsum(x * x) - np.cumsum(y * y)) / x[0]
    return diagonal


def _dot(a: FloatArray, b: FloatArray) -> float:
    """``a·b`` without BLAS: OpenBLAS threads long dot products, which only costs time
    on a busy machine at these sizes."""
    return float(np.multiply(a, b).sum())


def _lanczos_condition(alphas: Sequence[float], betas: Sequence[float]) -> float:
    """Condition number of the Lanczos tridiagonal matrix behind a CG run."""
    size = len(alphas)
    if size == 0:
        return 1.0
    diagonal = np.empty(size)
    off = np.empty(size - 1)
    for i in range(size):
        diagonal[i] = 1 / alphas[i] + (betas[i - 1] / alphas[i - 1] if i else 0.0)
        if i < size - 1:
            off[i] = math.sqrt(betas[i]) / alphas[i]
    ritz = scipy.linalg.eigvalsh_tridiagonal(diagonal, off)
    return float(ritz[-1] / ritz[0]) if ritz[0] > 0 else math.inf


def _fft_length(size: int) -> int:
    """The smallest ``2^a·c >= size`` with ``c`` in {1, 3, 5, 9, 15, 45}: lengths whose
    real FFTs pocketfft does fastest (measured at 2k − 1 = 43,999: 46,080 took 0.50 ms,
    the 5-smooth 45,000 0.90 ms and 65,536 1.2 ms)."""
    best = 1 << max(0, (size - 1).bit_length())
    for odd in (3, 5, 9, 15, 45):
        power = max(0, -(-size // odd) - 1).bit_length()
        best = min(best, odd << power)
    return best


class _ToeplitzInverse:
    """``T⁻¹ b`` for a symmetric positive definite Toeplitz ``T`` in ``O(k log k)``.

    Gohberg–Semencul [GS72]_: with ``x = T⁻¹ e_0`` and ``y = (0, x_{k−1}, …, x_1)``,
    ``T⁻¹ = (L(x)L(x)ᵀ − L(y)L(y)ᵀ)/x_0``, ``L(·)`` the lower triangular Toeplitz matrix
    of a column. A product with ``L(·)`` is a truncated convolution and one with
    ``L(·)ᵀ`` a reversed one, so a solve is six real FFTs of length ``≥ 2k − 1`` once the
    spectra of ``x`` and ``y`` are kept: no iteration, whatever the right-hand side.
    """

    def __init__(self, first_column: FloatArray) -> None:
        k = first_column.size
        self.size = k
        self.length = _fft_length(2 * k - 1)
        y = np.concatenate([[0.0], first_column[:0:-1]])
        scale = 1.0 / math.sqrt(float(first_column[0]))  # x_0 > 0 (T⁻¹ is SPD)
        self.x_spectrum = np.fft.rfft(first_column * scale, self.length)
        self.y_spectrum = np.fft.rfft(y * scale, self.length)

    def apply(self, b: FloatArray) -> FloatArray:
        """``T⁻¹ b``; ``b`` may have several columns."""
        k, length = self.size, self.length
        x_hat, y_hat = self.x_spectrum, self.y_spectrum
        if b.ndim == 2:
            x_hat, y_hat = x_hat[:, None], y_hat[:, None]
        reversed_b = np.fft.rfft(b[::-1], length, axis=0)
        # L(x)ᵀ b = J L(x) J b: both convolutions of J b, reversed for the next step.
        u = np.fft.irfft(x_hat * reversed_b, length, axis=0)[:k][::-1]
        v = np.fft.irfft(y_hat * reversed_b, length, axis=0)[:k][::-1]
        spectrum = x_hat * np.fft.rfft(u, length, axis=0)
        spectrum -= y_hat * np.fft.rfft(v, length, axis=0)
        out: FloatArray = np.fft.irfft(spectrum, length, axis=0)[:k]
        return out


class _Design:
    """The residue design of one set of moduli on ``[k]`` and its normal matrix
    ``N̄ = Σ_j w̄_j A_jᵀA_j`` per report (``N = n N̄``), ``w̄_j = 1/(ℓ V_j)``."""

    def __init__(
        self,
        k: int,
        moduli: tuple[int, ...],
        omega: Sequence[int],
        p: Sequence[float],
        q: Sequence[float],
    ) -> None:
        self.k = k
        self.moduli = moduli
        self.length = len(moduli)
        self.omega = np.asarray(omega, dtype=np.int64)
        self.p = np.asarray(p, dtype=float)
        self.q = np.asarray(q, dtype=float)
        self.unit_variance = self.q * (1 - self.q) / (self.p - self.q) ** 2
        self.unit_weight = 1.0 / (self.length * self.unit_variance)
        column = np.zeros(k)
        for m, weight in zip(moduli, self.unit_weight, strict=True):
            column[::m] += weight
        self.column = column
        offsets = np.nonzero(column[1:])[0] + 1
        self._offsets = [(int(d), float(column[d])) for d in offsets]
        self._inverses: dict[float, _ToeplitzInverse] = {}

    @classmethod
    def from_rule(
        cls, k: int, moduli: tuple[int, ...], epsilon: float, rule: int | SubsetRounding
    ) -> _Design:
        blocks = [_block_parameters(m, epsilon, rule) for m in moduli]
        return cls(
            k, moduli, [b[0] for b in blocks], [b[1] for b in blocks], [b[2] for b in blocks]
        )

    @functools.cached_property
    def residues(self) -> list[IntArray]:
        x = np.arange(self.k, dtype=np.int64)
        return [x % m for m in self.moduli]

    @functools.cached_property
    def block_starts(self) -> IntArray:
        """Row offset of each block in the stacked design."""
        starts: IntArray = np.concatenate([[0], np.cumsum(self.moduli)[:-1]]).astype(np.int64)
        return starts

    @functools.cached_property
    def indicator(self) -> scipy.sparse.csr_matrix:
        """The stacked 0/1 design ``A`` (``Σ m_j × k``), sparse."""
        rows = np.concatenate(
            [s + r for s, r in zip(self.block_starts, self.residues, strict=True)]
        )
        cols = np.tile(np.arange(self.k), self.length)
        data = np.ones(rows.size)
        shape = (int(sum(self.moduli)), self.k)
        return scipy.sparse.csr_matrix((data, (rows, cols)), shape=shape)

    @functools.cached_property
    def scaled(self) -> scipy.sparse.csr_matrix:
        """``A`` with block ``j``'s rows scaled by ``1/√V_j`` (the unit-weight system)."""
        scale = np.repeat(1.0 / np.sqrt(self.unit_variance), self.moduli)
        scaled: scipy.sparse.csr_matrix = scipy.sparse.diags(scale) @ self.indicator
        return scaled.tocsr()

    def matvec(self, z: FloatArray, shift: float) -> FloatArray:
        """``(N̄ + shift·I) z`` in ``O(k ℓ)`` (``z`` may have several columns)."""
        out: FloatArray = (self.column[0] + shift) * z
        for d, value in self._offsets:
            out[:-d] += value * z[d:]
            out[d:] += value * z[:-d]
        return out

    def conjugate_gradient(
        self,
        b: FloatArray,
        shift: float,
        *,
        tolerance: float,
        max_iterations: int,
        abort_condition: float = math.inf,
    ) -> tuple[FloatArray, bool, float]:
        """Solve ``(N̄ + shift·I) x = b``; also return whether the relative residual
        reached ``tolerance`` and the Lanczos estimate of the condition number (a lower
        bound that converges fast; it is exact once CG has converged in all directions).

        With ``abort_condition``, stop early (not converged) once the estimate exceeds it.
        """
        x = np.zeros_like(b)
        residual = b.copy()
        direction = residual.copy()
        rr = _dot(residual, residual)
        target = tolerance * math.sqrt(rr)
        alphas: list[float] = []
        betas: list[float] = []
        while math.sqrt(rr) > target and len(alphas) < max_iterations:
            product = self.matvec(direction, shift)
            curvature = _dot(direction, product)
            if curvature <= 0:
                return x, False, math.inf
            alpha = rr / curvature
            x += alpha * direction
            residual -= alpha * product
            new_rr = _dot(residual, residual)
            beta = new_rr / rr
            direction = residual + beta * direction
            rr = new_rr
            alphas.append(alpha)
            betas.append(beta)
            if len(alphas) % 25 == 0 and _lanczos_condition(alphas, betas) > abort_condition:
                return x, False, _lanczos_condition(alphas, betas)
        converged = math.sqrt(rr) <= target
        return x, converged, _lanczos_condition(alphas, betas)

    def iterative_solve(self, b: FloatArray, shift: float = 0.0) -> FloatArray:
        """``(N̄ + shift·I)⁻¹ b`` by conjugate gradients to a relative residual of
        ``1e-13`` (Levinson recursion if CG stalls); ``b`` one vector."""
        x, converged, _ = self.conjugate_gradient(
            b, shift, tolerance=_CG_TOLERANCE, max_iterations=max(1000, 2 * self.k)
        )
        if converged:
            return x
        column = self.column.copy()
        column[0] += shift
        fallback: FloatArray = scipy.linalg.solve_toeplitz(column, b)
        return fallback

    def inverse(self, shift: float = 0.0) -> _ToeplitzInverse:
        """The Gohberg–Semencul generator of ``(N̄ + shift·I)⁻¹``: one iterative solve
        the first time, kept for the next (a few shifts at a time)."""
        generator = self._inverses.get(shift)
        if generator is None:
            first_column = self.inverse_first_column(shift)
            generator = _ToeplitzInverse(first_column)
            # CG leaves x with a residual of ~1e-13, which the formula turns into ~1e-12
            # residuals of every solve; one refinement step brings both to ~1e-15.
            e0 = np.zeros(self.k)
            e0[0] = 1.0
            first_column = first_column + generator.apply(e0 - self.matvec(first_column, shift))
            generator = _ToeplitzInverse(first_column)
            if len(self._inverses) >= _CACHED_SHIFTS:
                self._inverses.pop(next(iter(self._inverses)))
            self._inverses[shift] = generator
        return generator

    def solve(self, b: FloatArray, shift: float = 0.0) -> FloatArray:
        """``(N̄ + shift·I)⁻¹ b`` to near machine precision, in ``O(k log k)``.

        The Gohberg–Semencul product, then its residual ``b − (N̄ + shift·I) x``
        (``O(kℓ)``) is checked against the CG criterion ``1e-13 ‖b‖`` and corrected by
        iterative refinement if needed; should that fail (an ill-conditioned ``N̄``),
        conjugate gradients decide. ``b`` may have several columns.
        """
        generator = self.inverse(shift)
        x = generator.apply(b)
        target = _CG_TOLERANCE * np.sqrt(np.sum(b * b, axis=0))
        for refinement in range(_REFINEMENTS + 1):
            residual = b - self.matvec(x, shift)
            if np.all(np.sqrt(np.sum(residual * residual, axis=0)) <= target):
                return x
            if refinement < _REFINEMENTS:
                x += generator.apply(residual)
        if b.ndim == 1:
            return self.iterative_solve(b, shift)
        columns = [self.iterative_solve(b[:, i], shift) for i in range(b.shape[1])]
        return np.stack(columns, axis=1)

    def inverse_first_column(self, shift: float = 0.0) -> FloatArray:
        e0 = np.zeros(self.k)
        e0[0] = 1.0
        return self.iterative_solve(e0, shift)

    def inverse_diagonal(self, shift: float = 0.0) -> FloatArray:
        """``diag((N̄ + shift·I)⁻¹)`` (Gohberg–Semencul)."""
        return _gohberg_semencul_diagonal(self.inverse_first_column(shift))

    def inverse_square_diagonals(
        self, shift: float, offsets: Sequence[int]
    ) -> dict[int, FloatArray]:
        """Diagonals ``d ≥ 0`` of ``K⁻²`` (``K = N̄ + shift·I``): ``out[d][i] = K⁻²[i, i+d]``.

        ``K`` is symmetric Toeplitz, so ``ZK − KZ`` has rank 2 (``Z`` the down-shift) and
        ``M = K⁻²`` has ``ZM − MZ = R`` of rank 4, with generators from four solves. Then
        ``M[i, i+d] = M[i−1, i−1+d] − R[i, i−1+d]``: each diagonal is a cumulative sum.
        """
        k = self.k
        column = self.column.copy()
        column[0] += shift
        u = np.zeros(k)
        u[:-1] = column[1:]
        a1 = self.inverse_first_column(shift)  # K⁻¹ e_0
        b1 = self.solve(u, shift)  # K⁻¹ u
        a2, b2 = b1[::-1], a1[::-1]  # K⁻¹ v and K⁻¹ e_{k−1}, by persymmetry (v = Ju)
        ka1 = self.solve(a1, shift)
        kb1 = self.solve(b1, shift)
        ka2, kb2 = kb1[::-1], ka1[::-1]
        out: dict[int, FloatArray] = {}
        for d in offsets:
            s = np.arange(1, k - d)
            r = (
                a1[s] * kb1[s - 1 + d]
                - a2[s] * kb2[s - 1 + d]
                + ka1[s] * b1[s - 1 + d]
                - ka2[s] * b2[s - 1 + d]
            )
            out[d] = ka1[d] - np.concatenate([[0.0], np.cumsum(r)])
        return out

    def inverse_rows(self, shift: float, chunk: int) -> Iterator[tuple[int, FloatArray]]:
        """The rows of ``K⁻¹``, ``chunk`` at a time, as ``(first row, rows)``.

        From the Stein displacement ``K⁻¹ − Z K⁻¹ Zᵀ = (x xᵀ − y yᵀ)/x_0`` (Gohberg–
        Semencul): ``K⁻¹[i, j] = K⁻¹[i−1, j−1] + (x_i x_j − y_i y_j)/x_0``.
        """
        k = self.k
        x = self.inverse_first_column(shift)
        y = np.concatenate([[0.0], x[:0:-1]])
        x_scaled, y_scaled = x / x[0], y / x[0]
        previous = np.zeros(k)
        for start in range(0, k, chunk):
            stop = min(k, start + chunk)
            rows = np.empty((stop - start, k))
            for i in range(start, stop):
                row = rows[i - start]
                row[0] = x[i]  # the first column (y_0 = 0)
                np.multiply(x_scaled[1:], x[i], out=row[1:])
                row[1:] -= y[i] * y_scaled[1:]
                row[1:] += previous[:-1]
                previous = row
            yield start, rows


def _subset_second_moments(m: int, omega: int, p: float, q: float) -> tuple[float, float]:
    """``(a, b)``: the probability that two given residues are both in a subset-selection
    report of residue ``r``, when one of them is ``r`` (``a``) and when neither is (``b``)."""
    a = p * (omega - 1) / (m - 1)
    if m < 3:
        return a, 0.0  # no pair avoids r; b never enters (F sums to 1)
    b = (p * (omega - 1) * (omega - 2) + (1 - p) * omega * (omega - 1)) / ((m - 1) * (m - 2))
    return a, b


# --- the protocol ---------------------------------------------------------------------


@mechanisms.register("mss")
class ModularSubsetSelection(FrequencyOracle):
    """Modular subset selection [Arc26]_: each user reports a random block ``J`` and a
    subset-selection report of ``v mod m_J`` (see the module docstring).

    ε-LDP, tightly: the block is independent of the value and each block's report is
    ε-LDP subset selection, and two values differ modulo some ``m_j`` (the residues
    determine the value), where the ratio ``e^ε`` is attained. A report carries
    ``⌈log2 ℓ⌉ + ⌈log2 C(m_J, ω_J)⌉`` bits of information (:meth:`bits_per_report`),
    ``⌈log2 ℓ⌉ + ⌈log2 m_J⌉`` when ω = 1.

    On the wire (:meth:`wire_bits_per_report`) a report is the field ``block`` and, in
    the form :attr:`report_form` (part of the fingerprint), either ``subsets``: the
    ``ω_J`` residues in ascending order, then ``-1`` up to ``max ω_j`` columns, each
    in ``⌈log2 (max m_j + 1)⌉`` bits; or ``bits``: a bitmap of ``max m_j`` bits in
    :func:`numpy.packbits` order with exactly ``ω_J`` bits set, all below ``m_J``. The
    bitmap is chosen when it is smaller (:func:`subset_report_form`), as at k = 1024,
    ε = 1: 683 bits against 1823 (with the 3 bits of the block).

    MSS is not a pure protocol: whether a report's support ``{x : x mod m_J ∈ Z}``
    contains ``v`` has probability ``p_J`` for input ``v`` but, for input ``v' ≠ v``,
    ``p_J`` or ``q_J`` depending on whether ``v' ≡ v (mod m_J)``. So the estimator is the
    generalised least-squares decoder of the module docstring, and :attr:`p_star` and
    :attr:`q_star` are averages: ``p* = mean_j p_j`` (exact) and ``q*`` the mean over ``j``
    and over pairs ``v ≠ v'`` of that probability. :meth:`support_counts` returns the
    *equivalent* counts ``n q* + (p* − q*) n f̂`` (so the engine's identity
    ``f̂ = (C/n − q*)/(p* − q*)`` holds); they are additive across batches like any
    support counts, but they are not counts of reports.

    Parameters
    ----------
    k
        Domain size.
    epsilon
        ε of ε-LDP.
    moduli
        Pairwise coprime integers ``≥ 2`` with ``Σ m ≥ k + ℓ − 1`` (full column rank);
        ``None`` (default) chooses them with :func:`choose_moduli` (cached).
    n_moduli
        ``ℓ`` for the automatic choice (``None``: searched over 2 to 8).
    damping
        Ridge ``λ ≥ 0`` of the decoder, in the units of the weights ``w_j`` (reports);
        0 (default) is unbiased, ``λ > 0`` shrinks the estimate towards 0 with bias
        ``−λ(N + λI)⁻¹ f``.
    subset_size
        Subset size rule applied in each block (see :func:`subset_parameters`), one
        integer for every block, or one integer per block.

    Examples
    --------
    >>> from privaudit import simulation_generator
    >>> mss = ModularSubsetSelection(k=100, epsilon=2.0, moduli=(37, 41, 43))
    >>> rng = simulation_generator(0)
    >>> data = rng.integers(0, 10, size=20_000)
    >>> estimate = mss.estimate(mss.randomize(data, rng=rng))
    >>> bool(abs(estimate[:10] - 0.1).max() < 5 * mss.variance(20_000).max() ** 0.5)
    True
    """

    name = "mss"

    def __init__(
        self,
        *,
        k: int,
        epsilon: float,
        moduli: Sequence[int] | None = None,
        n_moduli: int | None = None,
        damping: float = 0.0,
        subset_size: int | SubsetRounding | Sequence[int] = "optimal",
    ) -> None:
        super().__init__(k=k, epsilon=epsilon)
        if isinstance(damping, bool) or not isinstance(damping, int | float | np.floating):
            raise ParameterError(f"damping must be a number >= 0; got {damping!r}")
        if not math.isfinite(damping) or damping < 0:
            raise ParameterError(f"damping must be finite and >= 0; got {damping!r}")
        self.damping = float(damping)
        if n_moduli is not None:
            n_moduli = _check_n_moduli(n_moduli)
        if moduli is None:
            if not isinstance(subset_size, str | int | np.integer) or isinstance(subset_size, bool):
                raise ParameterError(
                    "per-block subset sizes need explicit moduli; pass moduli= as well, "
                    "or give subset_size as one int or rule"
                )
            self.moduli_choice: ModuliChoice | None = choose_moduli(
                self.k, self.epsilon, n_moduli=n_moduli, subset_size=subset_size
            )
            self.moduli: tuple[int, ...] = self.moduli_choice.moduli
        else:
            self.moduli = _check_moduli(moduli, self.k)
            self.moduli_choice = None
            if n_moduli is not None and n_moduli != len(self.moduli):
                raise ParameterError(
                    f"n_moduli={n_moduli} disagrees with the {len(self.moduli)} moduli given; "
                    "pass one or the other"
                )
        self.n_moduli = len(self.moduli)
        self.subset_size_rule = subset_size
        sizes = _per_block_sizes(subset_size, self.n_moduli)
        self._blocks = [
            SubsetSelection(k=m, epsilon=self.epsilon, subset_size=size)
            for m, size in zip(self.moduli, sizes, strict=True)
        ]
        self.subset_sizes = tuple(block.subset_size for block in self._blocks)
        self._design = _Design(
            self.k,
            self.moduli,
            self.subset_sizes,
            [block.p_star for block in self._blocks],
            [block.q_star for block in self._blocks],
        )
        self._starts = np.concatenate([[0], np.cumsum(np.asarray(self.moduli) + 1)[:-1]]).astype(
            np.int64
        )

    # --- identity ---------------------------------------------------------------------

    def fingerprint(self) -> str:
        moduli = ",".join(map(str, self.moduli))
        omegas = ",".join(map(str, self.subset_sizes))
        return f"{super().fingerprint()}:moduli={moduli}:omega={omegas}:form={self.report_form}"

    def public_params(self) -> dict[str, Any]:
        return {
            "moduli": list(self.moduli),
            "subset_size": list(self.subset_sizes),
            "damping": self.damping,
        }

    @functools.cached_property
    def report_form(self) -> ReportForm:
        """``"bitmap"`` or ``"positions"``: whichever spends fewer wire bits (a function
        of the moduli and subset sizes; see the class docstring)."""
        largest = max(self.moduli)
        return subset_report_form(
            largest, max(self.subset_sizes), position_bits=largest.bit_length()
        )

    def report_schema(self) -> list[Field]:
        block = Field("block", 0, 0, self.n_moduli - 1)
        if self.report_form == "bitmap":
            return [block, Field("bits", (max(self.moduli) + 7) // 8, 0, 255)]
        return [block, Field("subsets", max(self.subset_sizes), -1, max(self.moduli) - 1)]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(k={self.k}, epsilon={self.epsilon:g}, "
            f"moduli={self.moduli}, damping={self.damping:g})"
        )

    # --- client -----------------------------------------------------------------------

    def _randomize(self, values: IntArray, rng: np.random.Generator) -> dict[str, Any]:
        n = values.size
        block = rng.integers(0, self.n_moduli, size=n, dtype=np.int64)  # independent of v
        if self.report_form == "bitmap":
            bits = np.zeros((n, (max(self.moduli) + 7) // 8), dtype=np.uint8)
            for j, (m, ss) in enumerate(zip(self.moduli, self._blocks, strict=True)):
                rows = np.nonzero(block == j)[0]
                if rows.size:
                    bits[rows, : (m + 7) // 8] = ss._subsets(values[rows] % m, rng, "bitmap")
            return {"block": block, "bits": bits}
        # Residues and their -1 padding in the narrowest signed type (int16 while
        # max m_j <= 2^15): a quarter of the memory of int64, and faster to validate.
        dtype = np.int16 if max(self.moduli) <= 1 << 15 else np.int32
        subsets = np.full((n, max(self.subset_sizes)), -1, dtype=dtype)
        for j, (m, ss) in enumerate(zip(self.moduli, self._blocks, strict=True)):
            rows = np.nonzero(block == j)[0]
            if rows.size:
                subsets[rows, : ss.subset_size] = ss._subsets(values[rows] % m, rng, "positions")
        return {"block": block, "subsets": subsets}

    def validate_reports(self, reports: Reports) -> Reports:
        """Check a batch (see :meth:`FrequencyOracle.validate_reports`), and that every
        report of block ``j`` is a set of exactly ``ω_j`` residues of ``[m_j]``: in the
        positions form, ``ω_j`` strictly ascending residues below ``m_j`` and then only
        ``-1`` padding; in the bitmap form, exactly ``ω_j`` bits set, all at positions
        below ``m_j``.

        Raises
        ------
        DataError
            Naming the first bad report, its block and what is wrong with it.
        """
        reports = super().validate_reports(reports)
        block = reports.arrays["block"]
        if block.size == 0:
            return reports
        sizes = np.asarray(self.subset_sizes, dtype=np.int64)[block]
        moduli = np.asarray(self.moduli, dtype=np.int64)[block]
        if self.report_form == "bitmap":
            check_subset_bitmaps(reports.arrays["bits"], sizes, moduli, blocks=block)
        else:
            self._check_positions(reports.arrays["subsets"], block, sizes, moduli)
        return reports

    def _positions_are_sets(self, subsets: IntArray, block: IntArray) -> bool:
        """Whether every positions-form report is canonical, block by block: the ``ω_j``
        members strictly ascending (their differences' minimum ``> 0``), the first
        ``>= 0``, the last ``< m_j``, and the padding all ``-1`` (its maximum, since the
        engine has checked ``>= -1``). Reductions over a contiguous copy of each block's
        rows, about half the passes of :meth:`_check_positions` over wide reports."""
        for j, (omega, m) in enumerate(zip(self.subset_sizes, self.moduli, strict=True)):
            rows = subsets[block == j]
            if rows.shape[0] == 0:
                continue
            members, padding = rows[:, :omega], rows[:, omega:]
            if padding.size and int(padding.max()) != -1:
                return False
            if omega > 1 and int(np.diff(members, axis=1).min()) <= 0:
                return False
            if int(members[:, 0].min()) < 0 or int(members[:, -1].max()) >= m:
                return False
        return True

    def _check_positions(
        self, subsets: IntArray, block: IntArray, sizes: IntArray, moduli: IntArray
    ) -> None:
        """Refuse positions-form reports that are not ``ω_j`` strictly ascending residues
        of ``[m_j]`` followed by ``-1`` padding (the engine has checked ``[-1, max m)``).

        Wide reports are screened block by block first (:meth:`_positions_are_sets`);
        the row-by-row check below runs when they are narrow, or to name the first bad
        report."""
        n, width = subsets.shape
        if width >= _SCREEN_WIDTH and self._positions_are_sets(subsets, block):
            return
        chunk = max(1, _CHECK_CELLS // width)
        columns = np.arange(width)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            part = subsets[start:stop]
            omega = sizes[start:stop]
            member = columns[None, :] < omega[:, None]  # the first ω_j columns
            # Canonical iff: only -1 after the first ω_j columns, those strictly
            # ascending, the first >= 0 and the last (the largest) below m_j.
            bad = ((part != -1) > member).any(axis=1)
            bad |= ((part[:, 1:] <= part[:, :-1]) & member[:, 1:]).any(axis=1)
            bad |= part[:, 0] < 0
            bad |= part[np.arange(stop - start), omega - 1] >= moduli[start:stop]
            if bad.any():
                i = start + int(np.flatnonzero(bad)[0])
                raise DataError(self._positions_problem(i, int(block[i]), subsets[i].tolist()))

    def _positions_problem(self, i: int, j: int, row: list[int]) -> str:
        """What is wrong with report ``i`` (block ``j``, positions form)."""
        omega, m = self.subset_sizes[j], self.moduli[j]
        members = row[:omega]
        if sum(r >= 0 for r in row) != omega:
            rule = f"must hold exactly ω_j = {omega} residues, then -1 padding"
        elif any(r < 0 for r in members):
            rule = f"must hold its ω_j = {omega} residues first, then only -1 padding"
        elif max(members) >= m:
            rule = f"holds a residue outside [0, m_j) = [0, {m})"
        else:
            rule = "must list distinct residues in ascending order"
        return f"report {i} (block {j}) {rule}; got {row}"

    # --- server -----------------------------------------------------------------------

    def _statistics_size(self) -> int:
        return int(sum(self.moduli)) + self.n_moduli

    def _statistics(self, reports: Reports) -> IntArray:
        """``[n_j, c_j[0], …, c_j[m_j − 1]]`` for each block ``j``, concatenated."""
        block = reports.arrays["block"]
        size = self._statistics_size()
        if self.report_form == "bitmap":
            bits = reports.arrays["bits"].astype(np.uint8, copy=False)  # validated: 0..255
            statistics = np.zeros(size, dtype=np.int64)
            for j, (start, m) in enumerate(zip(self._starts, self.moduli, strict=True)):
                rows = bits[block == j, : (m + 7) // 8]
                statistics[start + 1 : start + 1 + m] = column_bit_counts(rows, m)
        elif reports.arrays["subsets"].shape[1] < _WIDE_COUNT:
            # Residue r of block j counts at starts[j] + 1 + r; the -1 padding lands on
            # starts[j], the slot of n_j, which is overwritten below.
            positions = reports.arrays["subsets"] + (self._starts[block] + 1)[:, None]
            statistics = np.bincount(positions.ravel(), minlength=size).astype(np.int64)
        else:
            # Wide reports: block by block over the ω_j member columns (no padding), on
            # the narrow residues: 1.4x faster at k = 22,000, ε = 3 than the offset
            # positions above, which must be widened to int64 first.
            subsets = reports.arrays["subsets"]
            statistics = np.zeros(size, dtype=np.int64)
            for j, (start, m, omega) in enumerate(
                zip(self._starts, self.moduli, self.subset_sizes, strict=True)
            ):
                members = subsets[block == j, :omega]
                statistics[start + 1 : start + 1 + m] = np.bincount(members.ravel(), minlength=m)
        statistics[self._starts] = np.bincount(block, minlength=self.n_moduli)
        return statistics

    def _split(self, statistics: IntArray) -> tuple[IntArray, list[IntArray]]:
        statistics = np.asarray(statistics)
        if statistics.shape != (self._statistics_size(),):
            raise DataError(
                f"MSS statistics have {self._statistics_size()} entries; got shape "
                f"{statistics.shape}"
            )
        sizes = statistics[self._starts]
        counts = [
            statistics[start + 1 : start + 1 + m]
            for start, m in zip(self._starts, self.moduli, strict=True)
        ]
        return sizes, counts

    def _solve(self, statistics: IntArray, n: int, *, solver: str = "toeplitz") -> FloatArray:
        """The GLS/ridge estimate from summed statistics (see the module docstring).

        ``solver="toeplitz"`` (default) applies the inverse of the normal matrix
        ``N̄ + λ/n·I`` (symmetric Toeplitz) by the Gohberg–Semencul formula: six FFTs of
        length ``≈ 2k`` and a residual check, ``O(k log k)``, after one conjugate-gradient
        solve for its generator that the design keeps (see :meth:`_Design.solve`).
        ``solver="cg"`` runs conjugate gradients on the normal equations
        (``Σ_j ⌊k/m_j⌋`` non-zero diagonals, so a product costs ``O(k ℓ)``; the
        condition number of automatic moduli, ≤ 100, bounds the iterations).
        ``solver="lsmr"`` runs LSMR [FS11]_ on the stacked sparse design, as the paper
        does. All three solve the same least-squares problem to about ``1e-12``
        relative; the last two are kept as cross-checks of the tests.
        """
        if n <= 0:
            raise DataError("cannot estimate from zero reports")
        sizes, counts = self._split(statistics)
        if int(sizes.sum()) != n:
            raise DataError(
                f"the statistics hold {int(sizes.sum())} reports but n={n}; pass the n the "
                "statistics were summed over"
            )
        design = self._design
        if solver not in ("toeplitz", "cg", "lsmr"):
            raise ParameterError(f"solver must be 'toeplitz', 'cg' or 'lsmr'; got {solver!r}")
        if solver != "lsmr":
            # Aᵀ W ŷ per report: block j adds (c_j − n_j q_j)/(n (p_j − q_j) V_j) at each
            # item's residue.
            rhs = np.zeros(self.k)
            for c, size, p, q, v, residue in zip(
                counts,
                sizes,
                design.p,
                design.q,
                design.unit_variance,
                design.residues,
                strict=True,
            ):
                rhs += ((c - size * q) / (n * (p - q) * v))[residue]
            if solver == "cg":
                by_cg: FloatArray = design.iterative_solve(rhs, self.damping / n)
                return by_cg
            estimate: FloatArray = design.solve(rhs, self.damping / n)
            return estimate
        expected = n / self.n_moduli
        # √w_j ŷ_j with w_j = (n/ℓ)/V_j, divided through by √(n/ℓ): rows of A/√V_j.
        stacked = np.concatenate(
            [
                (c - size * q) / (expected * (p - q) * math.sqrt(v))
                for c, size, p, q, v in zip(
                    counts, sizes, design.p, design.q, design.unit_variance, strict=True
                )
            ]
        )
        result = scipy.sparse.linalg.lsmr(
            design.scaled,
            stacked,
            damp=math.sqrt(self.damping / expected),
            atol=LSMR_TOLERANCE,
            btol=LSMR_TOLERANCE,
            maxiter=max(1000, self.k),
        )
        if result[1] == 7:
            raise ParameterError(
                f"LSMR did not converge in {result[2]} iterations: these moduli make N "
                "ill-conditioned; use the automatic choice (moduli=None)"
            )
        lsmr_estimate: FloatArray = result[0]
        return lsmr_estimate

    def _estimate_from_statistics(
        self, statistics: IntArray, n: int, postprocess: PostProcess
    ) -> FloatArray:
        return postprocess_frequencies(self._solve(statistics, n), postprocess)

    def _support_probabilities(self) -> tuple[float, float]:
        return self._averaged_probabilities

    @functools.cached_property
    def _averaged_probabilities(self) -> tuple[float, float]:
        design = self._design
        k = self.k
        p_star = float(np.mean(design.p))
        q_terms = []
        for m, p, q in zip(self.moduli, design.p, design.q, strict=True):
            sizes = np.bincount(np.arange(k) % m, minlength=m).astype(float)
            same = float((sizes * (sizes - 1)).sum()) / (k * (k - 1))  # P[v' ≡ v], v' ≠ v
            q_terms.append(same * p + (1 - same) * q)
        return p_star, float(np.mean(q_terms))

    def _support_counts(self, statistics: IntArray, n: int) -> FloatArray:
        """Equivalent support counts ``n q* + (p* − q*) n f̂`` (see the class docstring)."""
        p_star, q_star = self._support_probabilities()
        counts: FloatArray = n * q_star + (p_star - q_star) * n * self._solve(statistics, n)
        return counts

    # --- analytic companions ----------------------------------------------------------

    def _frequencies(self, f: npt.ArrayLike) -> FloatArray:
        freq = np.asarray(f, dtype=float)
        if freq.shape != (self.k,):
            raise DataError(f"f must have one frequency per value ({self.k}); got {freq.shape}")
        if not np.all(np.isfinite(freq)) or freq.min() < -1e-12:
            raise DataError("f must hold finite, non-negative frequencies")
        freq = np.clip(freq, 0.0, None)
        total = float(freq.sum())
        if total <= 0:
            raise DataError("f must have a positive sum")
        normalised: FloatArray = freq / total
        return normalised

    def _block_moments(self, j: int) -> tuple[float, float, float, float]:
        """``(γ, β, e, ρ)`` of ``E_r E[(1_Z − q)(1_Z − q)ᵀ | r] = γI + β11ᵀ + e(F1ᵀ + 1Fᵀ)
        + ρ diag F`` for block ``j`` (``F`` its residue distribution, summing to 1)."""
        m, omega = self.moduli[j], self.subset_sizes[j]
        p, q = float(self._design.p[j]), float(self._design.q[j])
        a, b = _subset_second_moments(m, omega, p, q)
        beta = b - q * q
        gamma = q * (1 - q) - beta
        e = a - p * q - b + q * q
        rho = (p - q) * (1 - 2 * q) - 2 * e
        return gamma, beta, e, rho

    def _block_scale(self, j: int) -> float:
        """``s_j = 1/(ℓ V_j² (p_j − q_j)²)``: ``Cov = (1/n) K̄⁻¹[Σ s_j A_jᵀ C_j A_j − …]K̄⁻¹``."""
        design = self._design
        gap = float(design.p[j] - design.q[j])
        return 1.0 / (self.n_moduli * float(design.unit_variance[j]) ** 2 * gap * gap)

    def variance(self, n: int, f: npt.ArrayLike = 0.0) -> Any:
        """Per-value variance of the estimate over a fixed dataset of ``n`` users.

        Parameters
        ----------
        n
            Number of reports.
        f
            The dataset's value frequencies (length ``k``; rescaled to sum to 1, so a
            clipped estimate is accepted): the **exact** variance, from the covariance in
            the module docstring, including the random block assignment, the
            ``f``-dependent subset-selection terms and the covariance between subset
            members; ``O(k Σ_j m_j)`` time and ``O(k)`` memory per row of ``K⁻¹``
            (0.07 s at ``k = 1024``, about 10 s at ``k = 22000`` on one core; use
            :meth:`exact_mse` for the domain average, 0.3 s there). The scalar ``0``
            (default): the ``f → 0`` approximation ``diag(K⁻¹NK⁻¹)`` (``diag(N⁻¹)`` when
            ``damping = 0``), in ``O(k)``.

        Returns
        -------
        numpy.ndarray
            One variance per value (the values differ: residue classes differ in size).
            With ``damping > 0`` this is the variance only, not the squared bias.
        """
        if n <= 0:
            raise ParameterError(f"n must be > 0; got {n}")
        shift = self.damping / n
        design = self._design
        if np.ndim(f) == 0:
            if float(np.asarray(f)) != 0.0:
                raise ParameterError(
                    "MSS has no per-value closed form for a scalar f: pass the whole "
                    "frequency vector (length k), or 0 for the f → 0 approximation"
                )
            approximate = design.inverse_diagonal(shift)
            if shift:
                approximate = approximate - shift * design.inverse_square_diagonals(shift, [0])[0]
            result: FloatArray = approximate / n
            return result
        freq = self._frequencies(f)
        parts = self._residue_distributions(freq)
        moments = [self._block_moments(j) for j in range(self.n_moduli)]
        scales = [self._block_scale(j) for j in range(self.n_moduli)]
        k = self.k
        out = np.empty(k)
        chunk = max(1, min(k, (1 << 17) // k, 16))  # small chunks stay in cache
        for first, rows in design.inverse_rows(shift, chunk):
            count = rows.shape[0]
            total = rows.sum(axis=1)  # (K̄⁻¹ 1)[x]
            value = np.zeros(count)
            for j, m in enumerate(self.moduli):
                gamma, beta, e, rho = moments[j]
                sums = np.zeros((count, m))  # class sums S_j[x, r] = Σ_{y ≡ r} K̄⁻¹[x, y]
                for start in range(0, k, m):
                    width = min(m, k - start)
                    sums[:, :width] += rows[:, start : start + width]
                # S(γI + β11ᵀ + e(F1ᵀ + 1Fᵀ) + ρ diag F)Sᵀ, one row at a time.
                value += scales[j] * (
                    (sums * sums) @ (gamma + rho * parts[j])
                    + (beta * total + 2 * e * (sums @ parts[j])) * total
                )
            index = np.arange(first, first + count)
            own = freq[index]
            if shift:
                diagonal = rows[np.arange(count), index]
                value -= own - 2 * shift * own * diagonal + shift * shift * ((rows * rows) @ freq)
            else:
                value -= own
            out[first : first + count] = value
        out /= n
        return out

    def _residue_distributions(self, freq: FloatArray) -> list[FloatArray]:
        return [
            np.bincount(residue, weights=freq, minlength=m).astype(float)
            for residue, m in zip(self._design.residues, self.moduli, strict=True)
        ]

    def standard_errors(self, n: int, f: npt.ArrayLike) -> FloatArray:
        """Exact standard errors at ``f`` up to k = 4096; above that (where the exact
        per-value variance takes seconds) the f → 0 approximation ``diag(N⁻¹)/n``."""
        if self.k > 4096:
            approximate: FloatArray = np.sqrt(np.asarray(self.variance(n), dtype=float))
            return approximate
        return super().standard_errors(n, f)

    def exact_mse(self, n: int, f: npt.ArrayLike | None = None) -> float:
        """Mean over the domain of ``E[(f̂_v − f_v)²]`` for a fixed dataset of ``n`` users.

        Parameters
        ----------
        f
            ``None``: the ``f → 0`` **approximation** ``tr(K⁻¹NK⁻¹)/k``
            (``tr(N⁻¹)/k`` when ``damping = 0``; the paper's "exact MSE"), in ``O(k)``
            after one solve; it leaves out the ``f``-dependent terms and the covariance
            of subset members, and the squared bias when ``damping > 0``. A frequency
            vector: the **exact** MSE (variance plus squared bias), from the covariance
            in the module docstring, in ``O(k Σ_j k/m_j)`` after four solves.
        """
        if n <= 0:
            raise ParameterError(f"n must be > 0; got {n}")
        design = self._design
        shift = self.damping / n
        k = self.k
        if f is None:
            trace = float(design.inverse_diagonal(shift).sum())
            if shift:
                trace -= shift * float(design.inverse_square_diagonals(shift, [0])[0].sum())
            return trace / (n * k)
        freq = self._frequencies(f)
        parts = self._residue_distributions(freq)
        offsets = sorted({d for m in self.moduli for d in range(0, k, m)})
        diagonals = design.inverse_square_diagonals(shift, offsets)
        ones_inverse = design.solve(np.ones(k), shift)
        ones_inverse_square = design.solve(ones_inverse, shift)
        trace = 0.0
        for j, m in enumerate(self.moduli):
            gamma, beta, e, rho = self._block_moments(j)
            weights = parts[j][design.residues[j]]  # F_j[x mod m_j]
            class_sums = np.bincount(design.residues[j], weights=freq, minlength=m)
            folded = class_sums[design.residues[j]]  # (P_j f)[x]
            trace_p = 0.0
            trace_q = 0.0
            for d in range(0, k, m):
                factor = 1.0 if d == 0 else 2.0
                trace_p += factor * float(diagonals[d].sum())
                trace_q += factor * float(diagonals[d] @ weights[: k - d])
            trace += self._block_scale(j) * (
                gamma * trace_p
                + beta * float(ones_inverse @ ones_inverse)
                + 2 * e * float(ones_inverse_square @ folded)
                + rho * trace_q
            )
        if shift:
            inverse_diagonal = design.inverse_diagonal(shift)
            trace -= (
                1.0
                - 2 * shift * float(freq @ inverse_diagonal)
                + shift * shift * float(freq @ diagonals[0])
            )
            bias = shift * design.solve(freq, shift)
            trace += n * float(bias @ bias)
        else:
            trace -= 1.0
        return trace / (n * k)

    def point_mass_mse(self, n: int) -> FloatArray:
        """The exact MSE (:meth:`exact_mse`) of the dataset where all ``n`` users hold
        ``v``, for every ``v`` at once.

        The exact MSE is affine in ``f`` when ``damping = 0`` (convex otherwise), and so
        is subset selection's, so over all datasets the MSE, and its ratio to subset
        selection's, is largest at one of these point masses. Cost: that of one
        :meth:`exact_mse` (the ``f``-dependent terms are folded per residue class).
        """
        if n <= 0:
            raise ParameterError(f"n must be > 0; got {n}")
        design = self._design
        shift = self.damping / n
        k = self.k
        offsets = sorted({d for m in self.moduli for d in range(0, k, m)})
        diagonals = design.inverse_square_diagonals(shift, offsets)
        ones_inverse = design.solve(np.ones(k), shift)
        ones_inverse_square = design.solve(ones_inverse, shift)
        traces = np.zeros(k)
        for j, m in enumerate(self.moduli):
            gamma, beta, e, rho = self._block_moments(j)
            residues = design.residues[j]
            trace_p = sum(
                (1.0 if d == 0 else 2.0) * float(diagonals[d].sum()) for d in range(0, k, m)
            )
            # With f = e_v the terms linear in f keep only the class of v mod m_j.
            class_weight = np.bincount(residues, weights=ones_inverse_square, minlength=m)
            class_diagonal = np.zeros(m)
            for d in range(0, k, m):
                factor = 1.0 if d == 0 else 2.0
                class_diagonal += factor * np.bincount(
                    residues[: k - d], weights=diagonals[d], minlength=m
                )
            traces += self._block_scale(j) * (
                gamma * trace_p
                + beta * float(ones_inverse @ ones_inverse)
                + 2 * e * class_weight[residues]
                + rho * class_diagonal[residues]
            )
        if shift:
            inverse_diagonal = design.inverse_diagonal(shift)
            own = diagonals[0]  # (K⁻²)_vv: the bias −shift·K⁻¹e_v has this squared norm / shift²
            traces -= 1.0 - 2 * shift * inverse_diagonal + shift * shift * own
            traces += n * shift * shift * own
        else:
            traces -= 1.0
        mses: FloatArray = traces / (n * k)
        return mses

    def worst_case_mse(self, n: int) -> float:
        """The largest exact MSE over all datasets of ``n`` users (attained at a point
        mass, see :meth:`point_mass_mse`)."""
        return float(self.point_mass_mse(n).max())

    def mse(self, n: int, f: npt.ArrayLike | None = None) -> float:
        """:meth:`exact_mse` (``f=None``: the ``f → 0`` approximation)."""
        return self.exact_mse(n, f)

    def bits_per_report(self) -> float:
        """Expected bits of one report: ``⌈log2 ℓ⌉ + mean_j ⌈log2 C(m_j, ω_j)⌉`` (the block
        index, then the rank of the subset among the ``C(m_J, ω_J)`` of block ``J``; ``J``
        is uniform). :meth:`max_bits_per_report` is the worst case."""
        header = math.ceil(math.log2(self.n_moduli)) if self.n_moduli > 1 else 0
        body = [
            _log2_binomial_ceil(m, omega)
            for m, omega in zip(self.moduli, self.subset_sizes, strict=True)
        ]
        return float(header + sum(body) / len(body))

    def max_bits_per_report(self) -> float:
        """Bits of the longest report: ``⌈log2 ℓ⌉ + max_j ⌈log2 C(m_j, ω_j)⌉``."""
        header = math.ceil(math.log2(self.n_moduli)) if self.n_moduli > 1 else 0
        return float(
            header
            + max(
                _log2_binomial_ceil(m, omega)
                for m, omega in zip(self.moduli, self.subset_sizes, strict=True)
            )
        )

    def reconstruction_success(self, prior: npt.ArrayLike | None = None) -> float:
        """Exact success rate of the naive attacker [Arc26]_: pick ``s`` uniformly in
        ``Z``, then guess uniformly in ``{x ∈ [k] : x ≡ s (mod m_J)}``.

        ``(1/ℓ) Σ_j (p_j/ω_j) Σ_v π_v / |{x < k : x ≡ v (mod m_j)}|``; for a uniform
        prior the inner sum is ``min(m_j, k)/k``.
        """
        k = self.k
        checked = check_prior(prior, k)
        pi = np.full(k, 1.0 / k) if checked is None else checked
        total = 0.0
        design = self._design
        for j, m in enumerate(self.moduli):
            sizes = np.bincount(design.residues[j], minlength=m)
            inner = float(pi @ (1.0 / sizes[design.residues[j]]))
            total += float(design.p[j]) / self.subset_sizes[j] * inner
        return total / self.n_moduli

    def paper_reconstruction_success(self) -> float:
        """The paper's Eq. 7, ``(1/ℓ) Σ_j p_j / (ω_j ⌈k/m_j⌉)`` [Arc26]_.

        Not the exact success of the attacker it describes (it treats every residue class
        as having ``⌈k/m_j⌉`` members); use :meth:`reconstruction_success` for that.
        """
        design = self._design
        return float(
            np.mean(
                [
                    float(design.p[j]) / (self.subset_sizes[j] * math.ceil(self.k / m))
                    for j, m in enumerate(self.moduli)
                ]
            )
        )

    def channel(self) -> FloatArray:
        """``P[report = (J, Z) | value = v]`` as a ``(k, Σ_j C(m_j, ω_j))`` matrix, blocks
        in order and subsets in :func:`itertools.combinations` order (small ``k`` only)."""
        outputs = sum(
            math.comb(m, omega) for m, omega in zip(self.moduli, self.subset_sizes, strict=True)
        )
        if outputs > _MAX_CHANNEL_OUTPUTS:
            raise ParameterError(f"too many outputs ({outputs}) to enumerate the channel")
        values = np.arange(self.k)
        parts = [
            ss.channel()[values % m] / self.n_moduli
            for m, ss in zip(self.moduli, self._blocks, strict=True)
        ]
        matrix: FloatArray = np.concatenate(parts, axis=1)
        return matrix

    def condition_number(self) -> float:
        """The condition number of ``N`` (Lanczos estimate, see :class:`ModuliChoice`)."""
        e0 = np.zeros(self.k)
        e0[0] = 1.0
        _, _, condition = self._design.conjugate_gradient(
            e0, 0.0, tolerance=1e-10, max_iterations=max(1000, 2 * self.k)
        )
        return condition


def _check_moduli(moduli: object, k: int) -> tuple[int, ...]:
    if isinstance(moduli, str | bytes) or not isinstance(moduli, Sequence | np.ndarray):
        raise ParameterError(f"moduli must be a sequence of integers; got {moduli!r}")
    values = list(moduli)
    if not 1 <= len(values) <= _MAX_MODULI:
        raise ParameterError(f"give between 1 and {_MAX_MODULI} moduli; got {len(values)}")
    checked: list[int] = []
    for m in values:
        if isinstance(m, bool) or not isinstance(m, int | np.integer):
            raise ParameterError(f"moduli must be integers; got {m!r}")
        if not 2 <= m <= 2**31:
            raise ParameterError(f"each modulus must be in [2, 2^31]; got {m}")
        checked.append(int(m))
    for a, b in itertools.combinations(checked, 2):
        if math.gcd(a, b) != 1:
            raise ParameterError(
                f"moduli must be pairwise coprime; gcd({a}, {b}) = {math.gcd(a, b)}"
            )
    length = len(checked)
    if sum(checked) < k + length - 1:
        raise ParameterError(
            f"moduli {tuple(checked)} give the design rank {sum(checked) - length + 1} < k={k}: "
            f"full column rank needs sum(moduli) >= k + {length - 1} = {k + length - 1}; "
            "use larger or more moduli"
        )
    return tuple(sorted(checked))


def _per_block_sizes(
    subset_size: int | SubsetRounding | Sequence[int], length: int
) -> list[int | SubsetRounding]:
    if isinstance(subset_size, str) or (
        isinstance(subset_size, int | np.integer) and not isinstance(subset_size, bool)
    ):
        _check_rule(subset_size)
        rule: int | SubsetRounding = (
            int(subset_size) if isinstance(subset_size, int | np.integer) else subset_size
        )
        return [rule] * length
    if isinstance(subset_size, Sequence | np.ndarray) and not isinstance(subset_size, bytes):
        sizes = list(subset_size)
        if len(sizes) != length:
            raise ParameterError(f"give one subset size per modulus ({length}); got {len(sizes)}")
        out: list[int | SubsetRounding] = []
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
                raise ParameterError(f"per-block subset sizes must be integers >= 1; got {size!r}")
            out.append(int(size))
        return out
    raise ParameterError(
        f"subset_size must be an int, a rule or a list of ints; got {subset_size!r}"
    )

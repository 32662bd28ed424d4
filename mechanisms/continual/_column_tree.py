"""Per-column binary-tree counters over records in {0,1}^d, vectorised across columns.

The "counters" strategy of :class:`~privaudit.mechanisms.continual.MaxSum` and
:class:`~privaudit.mechanisms.continual.SumSelect`: every column ``j`` runs the binary
mechanism [DNPR10]_ [CSS11]_ on its bits ``x_1[j], x_2[j], ...``; the node that completes
at step ``t`` (height ``h = ctz(t)``, covering ``(t - 2^h, t]``) gets independent noise
in every column, and column ``j``'s running sum at ``t`` is estimated by the sum of the
``popcount(t)`` noisy nodes of the binary expansion of ``t``. The exact node sums add
up to the exact column sum, so the estimate is ``S_j(t) + N_{t,j}`` with
``N_{t,j} = Σ_{h: bit h of t} Z_j(h, t >> h)``; that is how it is computed here.

Privacy (composition across the ``d`` columns, exactly). A record lies in at most
``L = ⌊log2 T⌋ + 1`` used nodes per column and changes each of their sums by at most 1,
so replacing it moves the vector of all ``d·(node count)`` node sums by at most ``d·L``
in ℓ1 and ``√(d·L)`` in ℓ2:

* discrete Laplace node noise of scale ``d·L/ε`` gives ε-DP (each column ``ε/d``-DP,
  composed over ``d`` columns: basic composition, which is exact for the ℓ1 mechanism);
* discrete Gaussian node noise of parameter ``σ² = d·L/(2ρ)`` gives ρ-zCDP
  ([CKS20]_ Theorem 14; each column ``ρ/d``-zCDP, zCDP adds up exactly over columns).

Each node is measured once, when it completes, and a record only enters nodes that
complete at or after its step, so the same argument covers records chosen adaptively
after seeing the earlier releases (adaptive composition of the node measurements).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from privaudit.errors import ParameterError
from privaudit.guarantees import PrivacyGuarantee
from privaudit.mechanisms.continual._noise import BLOCK as _BLOCK
from privaudit.mechanisms.continual._noise import NoiseSpec, NoiseStream
from privaudit.mechanisms.continual._tails import tree_noise_bound

__all__ = ["ColumnTreeNoise", "CountersPlan", "counters_plans", "grid_bits_for"]

IntArray = npt.NDArray[np.int64]

MAX_NOISE_SCALE = 1 << 56  # the samplers' limit, in units
_PRECISION_BITS = 16  # noise scales are integers of at least 2^16 units where possible
_MAX_GRID_BITS = 32


def grid_bits_for(smallest_scale: Fraction) -> int:
    """Bits ``g`` of the unit ``2^-g`` that puts at least ``2^16`` units in the smallest
    noise scale (so rounding the scales up to integers costs a relative ``2^-16``)."""
    whole = math.floor(math.log2(smallest_scale)) if smallest_scale > 0 else 0
    return max(0, min(_MAX_GRID_BITS, _PRECISION_BITS - whole))


@dataclass(frozen=True)
class CountersPlan:
    """The calibrated per-column tree: node noise, its unit, the guarantee it gives."""

    horizon: int
    columns: int
    levels: int
    grid_bits: int  # values and noise are integers in units of 2^-grid_bits
    node_noise: NoiseSpec
    guarantee: PrivacyGuarantee

    @property
    def kind(self) -> str:
        return "laplace" if self.node_noise.laplace_scale is not None else "gaussian"

    def noise_bound_units(self, beta: float) -> int:
        """``A``: every ``|N_{t,j}| <= A`` (units) with probability ``>= 1 - beta``."""
        return tree_noise_bound(
            horizon=self.horizon,
            columns=self.columns,
            beta=beta,
            laplace_scale=self.node_noise.laplace_scale,
            gaussian_sigma2=self.node_noise.gaussian_sigma2,
        )

    def node_scale(self) -> float:
        """The node noise's scale in value units: Laplace ``b``, or Gaussian ``σ``."""
        unit = 2.0**-self.grid_bits
        if self.node_noise.laplace_scale is not None:
            return self.node_noise.laplace_scale * unit
        assert self.node_noise.gaussian_sigma2 is not None
        return math.sqrt(self.node_noise.gaussian_sigma2) * unit


def counters_plans(
    *, horizon: int, columns: int, epsilon: float, rho: float | None, neighbouring: str
) -> list[CountersPlan]:
    """The discrete Laplace plan (ε-DP) and, when ``rho`` is given, the discrete
    Gaussian plan (ρ-zCDP). Scales are rounded *up*, so the realised ε or ρ (in the
    plan's guarantee) is at most the one asked."""
    levels = horizon.bit_length()
    sensitivity = columns * levels  # ℓ1, and the squared ℓ2, of one record
    b = Fraction(sensitivity) / Fraction(epsilon)
    grid = grid_bits_for(b)
    scale = math.ceil(b * (1 << grid))
    _check_scale(scale, "epsilon")
    plans = [
        CountersPlan(
            horizon=horizon,
            columns=columns,
            levels=levels,
            grid_bits=grid,
            node_noise=NoiseSpec(laplace_scale=scale),
            guarantee=PrivacyGuarantee.pure(
                float(Fraction(sensitivity << grid, scale)), neighbouring=neighbouring
            ),
        )
    ]
    if rho is not None:
        target = Fraction(sensitivity) / (2 * Fraction(rho))
        bits = max(0, _PRECISION_BITS - math.ceil(target).bit_length())
        sigma2 = Fraction(math.ceil(target * (1 << bits)), 1 << bits)  # rounded up
        _check_scale(math.isqrt(math.ceil(sigma2)) + 1, "delta")
        plans.append(
            CountersPlan(
                horizon=horizon,
                columns=columns,
                levels=levels,
                grid_bits=0,
                node_noise=NoiseSpec(gaussian_sigma2=sigma2),
                guarantee=PrivacyGuarantee.zcdp(
                    float(Fraction(sensitivity) / (2 * sigma2)), neighbouring=neighbouring
                ),
            )
        )
    return plans


def _check_scale(scale: int, parameter: str) -> None:
    if scale > MAX_NOISE_SCALE:
        raise ParameterError(
            f"the per-column counters need a noise scale of {scale} units, above the "
            f"samplers' 2^56; use a larger epsilon (or {parameter}) or fewer columns",
            parameter=parameter,
        )


class ColumnTreeNoise:
    """The noise ``N_{t,j}`` of the ``d`` tree counters, step after step.

    Per height it keeps the latest node's noise (``d`` integers): ``O(L·d)`` state.
    A batch of ``n`` consecutive steps costs ``O(n·d·L)`` integer additions and draws
    one new node per step and column.
    """

    def __init__(
        self,
        plan: CountersPlan,
        rng: np.random.Generator,
        *,
        block: int | None = None,
        t: int = 0,
        node_noise: Sequence[IntArray | None] = (),
        pending: Sequence[int] = (),
    ) -> None:
        """A fresh tree (``t = 0``), or one restored after ``t`` steps with the latest
        node noise of every height (``node_noise``, ``None`` for the heights not reached
        yet) and the noise drawn ahead (``pending``); see :meth:`export`."""
        self._plan = plan
        d = plan.columns
        self._stream = NoiseStream(
            plan.node_noise,
            rng,
            total=(plan.horizon - t) * d,
            block=block or _BLOCK,
            pending=pending,
        )
        self._last_index = [_latest_node(t, h) for h in range(plan.levels)]
        self._last_noise: list[IntArray] = [np.zeros(d, dtype=np.int64)] * plan.levels
        for height, noise in enumerate(node_noise):
            if noise is not None:
                self._last_noise[height] = np.asarray(noise, dtype=np.int64)

    def export(self, t: int) -> tuple[list[list[int] | None], list[int]]:
        """After ``t`` steps: the latest node noise of every height (``None`` where no
        node was drawn yet) and the noise drawn ahead, for :class:`SelectionState`."""
        nodes = [
            self._last_noise[h].tolist() if self._last_index[h] >= 1 else None
            for h in range(self._plan.levels)
        ]
        assert all(self._last_index[h] == _latest_node(t, h) for h in range(self._plan.levels))
        return nodes, self._stream.pending().tolist()

    def next(self, start: int, n: int) -> IntArray:
        """The noise of steps ``start + 1 .. start + n`` (an ``n × d`` array, units)."""
        d = self._plan.columns
        steps = np.arange(start + 1, start + n + 1, dtype=np.int64)
        noise = np.zeros((n, d), dtype=np.int64)
        for height in range(int(steps[-1]).bit_length()):
            used = (steps >> height) & 1 == 1
            if not used.any():
                continue
            index = steps[used] >> height  # node (height, index) ends at index·2^height
            nodes = np.unique(index)
            fresh = nodes[nodes > self._last_index[height]]
            table = self._stream.take(fresh.size * d).reshape(fresh.size, d)
            if fresh.size < nodes.size:  # the first node was drawn in an earlier batch
                table = np.vstack([self._last_noise[height][None, :], table])
            noise[used] += table[np.searchsorted(nodes, index)]
            self._last_index[height] = int(nodes[-1])
            self._last_noise[height] = table[-1]
        return noise


def _latest_node(t: int, height: int) -> int:
    """The index of the latest node of ``height`` used by steps ``1..t`` (-1: none).

    Step ``s`` uses node ``s >> h`` at every height ``h`` where bit ``h`` of ``s`` is set,
    so these indices are odd; the latest is ``t >> h`` or the odd number below it."""
    index = t >> height
    return -1 if index == 0 else (index - 1) | 1

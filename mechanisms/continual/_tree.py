"""Binary-tree continual counters: the plain binary mechanism and Honaker's online estimator."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from privaudit.errors import ParameterError
from privaudit.mechanisms.continual._base import ContinualCounter, noise_grid_bits
from privaudit.mechanisms.continual._state import (
    check_array_names,
    state_array,
    state_float,
    state_int,
)
from privaudit.registry import mechanisms

__all__ = ["BinaryTreeCounter", "HonakerCounter"]

_GRID_BITS_MAX = 32  # node sums are Python ints: only the noise scale limits the grid


def _levels(T: int) -> int:  # noqa: N803
    """``L``: the heights ``0 .. ⌊log2 T⌋`` of the dyadic nodes a stream of ``T`` completes."""
    return T.bit_length()


def _max_weight_at_most(T: int, weights: list[float]) -> float:  # noqa: N803
    """``max_{1 <= t <= T} Σ_{bit j of t set} weights[j]`` for positive weights.

    For ``t < T`` let ``i`` be the highest bit where they differ (``T`` has a 1 there):
    ``T`` with bit ``i`` cleared and every lower bit set covers ``t``'s bits, so the
    maximum is among ``T`` and these candidates.
    """
    candidates = [T] + [
        (T & ~((1 << (i + 1)) - 1)) | ((1 << i) - 1) for i in range(T.bit_length()) if T >> i & 1
    ]
    return max(
        sum(weights[j] for j in range(t.bit_length()) if t >> j & 1) for t in candidates if t >= 1
    )


def _tree_grid_bits(levels: int, epsilon: float | None, noise_multiplier: float | None) -> int:
    if epsilon is not None:
        return min(_GRID_BITS_MAX, noise_grid_bits(levels / epsilon))
    assert noise_multiplier is not None
    return min(_GRID_BITS_MAX, noise_grid_bits(levels**0.5 * noise_multiplier))


class _DyadicTreeCounter(ContinualCounter):
    """What both tree counters share: ``L`` levels, and every item in one node per level."""

    def _setup(self) -> None:
        self.levels = _levels(self.T)
        self._grid_bits = _tree_grid_bits(self.levels, self.epsilon, self.noise_multiplier)
        self._unit = 2.0**-self._grid_bits  # one grid unit, in value units
        self._setup_tree()

    def _setup_tree(self) -> None:
        """The counter's own streaming state."""

    @property
    def grid_bits(self) -> int:
        return self._grid_bits

    def _l1_units(self) -> int:
        return self.levels << self._grid_bits

    def _l2_squared_units(self) -> int:
        return self.levels << (2 * self._grid_bits)

    @classmethod
    def state_size_bound(cls, T: int) -> int:  # noqa: N803
        return 2 * _levels(T)

    def _node_sum(self, value: object, name: str, height: int) -> int:
        """An exact node sum of a state: ``2^height`` items of at most ``2^k`` units each."""
        return state_int(value, name, 0, (1 << height) << self._grid_bits)


def _refuse_value(name: str, height: int, t: int, value: object) -> ParameterError:
    return ParameterError(
        f"state.{name}[{height}] must be empty (null) after t={t} pushes; got {value!r}",
        parameter=f"state.{name}",
    )


@mechanisms.register("continual.tree")
class BinaryTreeCounter(_DyadicTreeCounter):
    """The binary mechanism for continual counting [DNPR10]_ [CSS11]_.

    Each dyadic interval ``(t - 2^j, t]`` with ``2^j`` dividing ``t`` is a node of height
    ``j``; the running sum after ``t`` items is the sum of the ``popcount(t)`` nodes of
    the binary expansion of ``t``. Each node gets independent noise when it completes,
    and only the nodes in use are kept: at most ``L = ⌊log2 T⌋ + 1`` exact partial sums
    and ``L`` noisy ones, an ``O(log T)`` state; a push costs amortised ``O(1)`` (one
    node completes per push) plus one noise draw.

    Every item lies in at most ``L`` nodes, so the ℓ1 sensitivity is ``L`` and the ℓ2
    sensitivity ``√L``. With ``epsilon``, each node gets discrete Laplace noise of scale
    ``L/ε`` and the ``T`` releases are ε-DP; with ``noise_multiplier`` σ, discrete
    Gaussian noise of variance ``σ²L`` and they are ρ-zCDP with ``ρ = 1/(2σ²)``
    ([CKS20]_: the discrete Gaussian has the Rényi divergences of the continuous one for
    integer shifts). Both scales are in grid units (``2^-32``) and rounded up, so the
    realised ε or ρ is at most the stated one. ``Var(t) = popcount(t) · Var(node)``,
    which is ``2L² popcount(t)/ε²`` or ``σ² L popcount(t)`` up to a relative ``2^-60``
    (the discrete variances).

    Parameters
    ----------
    T
        The horizon: how many items the stream may hold.
    epsilon, noise_multiplier
        Exactly one: ε for pure DP (discrete Laplace), or σ for zCDP (discrete Gaussian).
    rng
        ``None`` (default) for the secure ChaCha20 source; a seeded generator from
        :func:`privaudit.simulation_generator` only to simulate.
    draw_ahead
        How many noise draws to sample at once when the drawn-ahead noise runs out
        (default ``2^16``, at most what the horizon needs). Noise is data-independent,
        so this changes neither its law nor the guarantee; a small value keeps
        :meth:`state` short (it holds the noise drawn but not used yet).

    The state (:meth:`state`, :meth:`from_state`) holds, per height ``j``, the exact
    sum (``partial``) and the released noisy sum (``noisy``) of the node of the binary
    expansion of ``t``, or 0 and ``null`` where bit ``j`` of ``t`` is clear.

    References
    ----------
    .. [DNPR10] C. Dwork, M. Naor, T. Pitassi and G. N. Rothblum, "Differential privacy
       under continual observation", STOC 2010.
    .. [CSS11] T.-H. H. Chan, E. Shi and D. Song, "Private and continual release of
       statistics", ACM TISSEC 2011.

    Examples
    --------
    >>> from privaudit import simulation_generator
    >>> counter = BinaryTreeCounter(T=8, noise_multiplier=1.0, rng=simulation_generator(0))
    >>> releases = [counter.push(1.0) for _ in range(8)]
    >>> counter.variance(7), counter.max_variance()  # popcount(7) = 3 nodes, L = 4
    (12.0, 12.0)
    >>> counter.guarantee.notion.value, counter.guarantee.rho
    ('zcdp', 0.5)
    """

    name = "continual.tree"

    def _setup_tree(self) -> None:
        self._partial: list[int] = [0] * self.levels  # exact sums of the open/used nodes
        self._noisy: list[int | None] = [None] * self.levels  # noisy sums of the used nodes
        self._release_units = 0  # the sum of the noisy nodes of the binary expansion of t
        self._zeros: list[int] = [0] * self.levels  # slices of these reset merged nodes
        self._nones: list[int | None] = [None] * self.levels

    def _advance(self, x: int) -> float:
        t = self._t
        height = (t & -t).bit_length() - 1  # the node completed now: (t - 2^height, t]
        partial, noisy = self._partial, self._noisy
        release = self._release_units
        if height:  # the lower nodes of t - 1 (all of heights < height) merge into it
            x += sum(partial[:height])
            release -= sum(noisy[:height])  # type: ignore[arg-type]  # all set: t - 1 ends in 1s
            partial[:height] = self._zeros[:height]
            noisy[:height] = self._nones[:height]
        partial[height] = x
        noisy_total = x + self._noise_stream.take_one()
        noisy[height] = noisy_total
        release += noisy_total
        self._release_units = release
        return release * self._unit

    def _noise_total(self) -> int:
        return self.T  # one node completes per push

    def _unit_variance_factor(self, t: int) -> float:
        return float(t.bit_count())

    def max_variance(self) -> float:
        return self.noise_variance * _max_weight_at_most(self.T, [1.0] * self.levels)

    @property
    def state_size(self) -> int:
        return sum(1 for v in self._noisy if v is not None) + sum(1 for v in self._partial if v)

    def _export_arrays(self) -> dict[str, list[int | float | None]]:
        return {"partial": list(self._partial), "noisy": list(self._noisy)}

    def _import_arrays(self, arrays: Mapping[str, Sequence[int | float | None]]) -> None:
        check_array_names(arrays, ("partial", "noisy"), self.name)
        partial = state_array(arrays, "partial", self.levels)
        noisy = state_array(arrays, "noisy", self.levels)
        t = self._t
        for j in range(self.levels):
            if t >> j & 1:
                self._partial[j] = self._node_sum(partial[j], f"arrays.partial[{j}]", j)
                self._noisy[j] = state_int(noisy[j], f"arrays.noisy[{j}]")
            elif partial[j] != 0 or isinstance(partial[j], bool) or noisy[j] is not None:
                raise _refuse_value("arrays.noisy/partial", j, t, (partial[j], noisy[j]))
        self._release_units = sum(v for v in self._noisy if v is not None)


@mechanisms.register("continual.honaker")
class HonakerCounter(_DyadicTreeCounter):
    """Honaker's variance-reduced binary tree, online [Hon15]_ [KMSTTX21]_.

    Every node of the dyadic tree gets independent noise (an item lies in ``L`` of
    them, so the sensitivities and guarantees are those of :class:`BinaryTreeCounter`).
    When a node of height ``j >= 1`` completes, its estimate combines its own noisy sum
    with the sum of its two children's estimates, weighted by inverse variance (the
    bottom-up half of Honaker's estimator, which is all an online release may use):
    with node variance 1, ``V_0 = 1`` and ``V_j = 2V_{j-1}/(1 + 2V_{j-1}) =
    2^j/(2^{j+1} - 1)``, falling to 1/2. The release after ``t`` items is the sum of the
    estimates of the nodes of the binary expansion of ``t`` (independent: disjoint
    subtrees), so ``Var(t) = Var(node) · Σ_{bit j of t} 2^j/(2^{j+1} - 1)``.

    State: per height, the exact sum and the estimate of the latest completed node,
    ``O(log T)``; a push completes ``1 + (trailing zeros of t)`` nodes (2 on average).
    The estimates are floats, computed from the noisy integer sums only (post-processing).

    Parameters
    ----------
    T, epsilon, noise_multiplier, rng, draw_ahead
        As for :class:`BinaryTreeCounter`.

    The state (:meth:`state`, :meth:`from_state`) holds, per height ``j``, the exact
    sum (``exact``) and the estimate (``estimate``, a float) of the latest completed
    node, ``null`` while no node of that height has completed.

    References
    ----------
    .. [Hon15] J. Honaker, "Efficient use of differentially private binary trees",
       TPDP 2015.
    .. [KMSTTX21] P. Kairouz, B. McMahan, S. Song, O. Thakkar, A. Thakurta and Z. Xu,
       "Practical and private (deep) learning without sampling or shuffling", ICML 2021
       (the online estimator, ``EfficientTreeAggregator`` in TensorFlow Privacy).

    Examples
    --------
    >>> from privaudit import simulation_generator
    >>> counter = HonakerCounter(T=8, noise_multiplier=1.0, rng=simulation_generator(0))
    >>> releases = counter.push_many([0.5] * 8)
    >>> round(counter.variance(7) / 4, 6)  # 1 + 2/3 + 4/7 per unit node variance
    2.238095
    """

    name = "continual.honaker"

    def _setup_tree(self) -> None:
        variances = [1.0]
        for _ in range(1, self.levels):
            variances.append(2.0 * variances[-1] / (1.0 + 2.0 * variances[-1]))
        self.node_variances = variances  # V_j, per unit node variance
        # The weight of a node's own noisy sum; 1 - w goes to its children's estimates.
        self._own_weight = [1.0] + [
            2.0 * variances[j - 1] / (1.0 + 2.0 * variances[j - 1]) for j in range(1, self.levels)
        ]
        self._exact: list[int | None] = [None] * self.levels  # latest completed node, per height
        self._estimate: list[float | None] = [None] * self.levels
        # _upper[j]: the sum of the estimates of the nodes of t's binary expansion at
        # heights >= j, added from the top down; the release is _upper[0]. A push at
        # height h leaves the heights above h alone, so only _upper[:h + 1] change.
        self._upper: list[float] = [0.0] * (self.levels + 1)

    def _advance(self, x: int) -> float:
        t = self._t
        height = (t & -t).bit_length() - 1
        take = self._noise_stream.take_one
        exact_sums, estimates = self._exact, self._estimate
        exact = x
        estimate = float(x + take())  # a leaf's estimate is its noisy value
        for j in range(1, height + 1):
            left_exact, left_estimate = exact_sums[j - 1], estimates[j - 1]
            assert left_exact is not None and left_estimate is not None
            exact_sums[j - 1], estimates[j - 1] = exact, estimate  # the right child
            exact += left_exact
            w = self._own_weight[j]
            estimate = w * float(exact + take()) + (1.0 - w) * (left_estimate + estimate)
        exact_sums[height], estimates[height] = exact, estimate
        upper = self._upper
        total = upper[height + 1] + estimate
        upper[: height + 1] = [total] * (height + 1)  # no bit of t below height is set
        return total * self._unit

    def _noise_total(self) -> int:
        return 2 * self.T  # push t completes 1 + (trailing zeros of t) nodes

    def _unit_variance_factor(self, t: int) -> float:
        return sum(self.node_variances[j] for j in range(t.bit_length()) if t >> j & 1)

    def max_variance(self) -> float:
        return self.noise_variance * _max_weight_at_most(self.T, self.node_variances)

    @property
    def state_size(self) -> int:
        return 2 * sum(1 for v in self._estimate if v is not None)

    def _noise_used_after(self, t: int) -> int:
        # Push s draws 1 + (trailing zeros of s); Σ_{s<=t} tz(s) = t - popcount(t) (Legendre).
        return 2 * t - t.bit_count()

    def _export_arrays(self) -> dict[str, list[int | float | None]]:
        return {"exact": list(self._exact), "estimate": list(self._estimate)}

    def _import_arrays(self, arrays: Mapping[str, Sequence[int | float | None]]) -> None:
        check_array_names(arrays, ("exact", "estimate"), self.name)
        exact = state_array(arrays, "exact", self.levels)
        estimate = state_array(arrays, "estimate", self.levels)
        completed = self._t.bit_length()  # heights j with 2^j <= t have completed a node
        for j in range(self.levels):
            if j < completed:
                self._exact[j] = self._node_sum(exact[j], f"arrays.exact[{j}]", j)
                self._estimate[j] = state_float(estimate[j], f"arrays.estimate[{j}]")
            elif exact[j] is not None or estimate[j] is not None:
                raise _refuse_value("arrays.exact/estimate", j, self._t, (exact[j], estimate[j]))
        upper = self._upper
        for j in range(self.levels - 1, -1, -1):
            node = self._estimate[j]
            upper[j] = (
                upper[j + 1] + node if self._t >> j & 1 and node is not None else upper[j + 1]
            )

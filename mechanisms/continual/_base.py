"""What every continual counter shares: parameters, input checks, exact noise, guarantee."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any, ClassVar, Literal, Self, cast

import numpy as np
import numpy.typing as npt

from privaudit.errors import DataError, LimitExceededError, ParameterError
from privaudit.guarantees import PrivacyGuarantee
from privaudit.mechanisms.continual._discrete import (
    discrete_gaussian_variance,
    discrete_laplace_variance,
)
from privaudit.mechanisms.continual._noise import NoiseSpec, NoiseStream
from privaudit.mechanisms.continual._state import (
    STATE_VERSION,
    CounterState,
    check_calibration,
    check_mechanism,
    check_version,
    state_int,
)
from privaudit.randomness import RandomSource, is_secure, resolve_rng
from privaudit.registry import mechanisms

__all__ = ["NEIGHBOURING", "ContinualCounter", "check_draw_ahead", "noise_grid_bits"]

FloatArray = npt.NDArray[np.float64]

NEIGHBOURING = "replace one element x_t of the stream by any other value in [0, 1]"
MAX_HORIZON = 1 << 24
_NOISE_BLOCK = 1 << 16  # noise is data-independent, so it is drawn ahead in blocks
_NOISE_LIMIT = 1 << 62  # one noise draw, in units, is far inside int64 (scales <= 2^56)
_MAX_NOISE_SCALE = 1 << 56  # the samplers' int64 limit, in grid units
_MIN_GRID_BITS = 16


def check_draw_ahead(draw_ahead: object) -> int:
    """``draw_ahead`` (how many noise draws to make at once; ``None``: 2^16), checked."""
    if draw_ahead is None:
        return _NOISE_BLOCK
    if (
        isinstance(draw_ahead, bool)
        or not isinstance(draw_ahead, int | np.integer)
        or not 1 <= draw_ahead <= MAX_HORIZON
    ):
        raise ParameterError(
            f"draw_ahead must be an integer in [1, 2^24] (or None for {_NOISE_BLOCK}); "
            f"got {draw_ahead!r}",
            parameter="draw_ahead",
        )
    return int(draw_ahead)


def noise_grid_bits(noise_scale: float) -> int:
    """The most bits ``b`` with a noise scale (value units) of at most ``2^54`` units of
    ``2^-b``, so that the samplers' integers fit ``int64`` with room to spare."""
    if not (math.isfinite(noise_scale) and noise_scale > 0):
        raise ParameterError(f"the noise scale must be finite and positive; got {noise_scale!r}")
    bits = 54 - math.ceil(math.log2(noise_scale))
    if bits < _MIN_GRID_BITS:
        raise ParameterError(
            f"a noise scale of {noise_scale:g} leaves fewer than {_MIN_GRID_BITS} bits for the "
            "input grid; use a larger epsilon or a smaller noise_multiplier"
        )
    return bits


class ContinualCounter(ABC):
    """A counter that releases the running sum ``x_1 + ... + x_t`` after every push.

    Inputs are snapped to the grid ``2^-k Z`` (``k`` is :attr:`grid_bits`, at least 24)
    by rounding to nearest, and all sums and noise are integers on that grid, so no
    float arithmetic happens before a value is private. The releases are unbiased for
    the sum of the snapped inputs, which is within ``t · 2^-(k+1)`` of the true sum.

    Subclasses define the strategy (which noisy linear measurements are taken) through
    :meth:`_unit_sensitivity` and the streaming update :meth:`_advance`.
    """

    name: ClassVar[str]

    def __init__(
        self,
        *,
        T: int,  # noqa: N803  (the horizon is T in every paper)
        epsilon: float | None = None,
        noise_multiplier: float | None = None,
        rng: RandomSource = None,
        draw_ahead: int | None = None,
    ) -> None:
        if isinstance(T, bool) or not isinstance(T, int | np.integer) or not 1 <= T <= MAX_HORIZON:
            raise ParameterError(
                f"T (the horizon) must be an integer in [1, 2^24]; got {T!r}", parameter="T"
            )
        self.T = int(T)
        if (epsilon is None) == (noise_multiplier is None):
            raise ParameterError(
                "give exactly one of epsilon (discrete Laplace noise, pure ε-DP) and "
                "noise_multiplier (discrete Gaussian noise, ρ-zCDP with ρ = 1/(2σ²)); got "
                f"epsilon={epsilon!r}, noise_multiplier={noise_multiplier!r}"
            )
        for label, value in (("epsilon", epsilon), ("noise_multiplier", noise_multiplier)):
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float | np.integer | np.floating)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ParameterError(
                    f"{label} must be a finite number > 0; got {value!r}", parameter=label
                )
        self.epsilon = None if epsilon is None else float(epsilon)
        self.noise_multiplier = None if noise_multiplier is None else float(noise_multiplier)
        sigma = self.noise_multiplier
        if sigma is not None and not (sigma * sigma > 0 and math.isfinite(0.5 / (sigma * sigma))):
            raise ParameterError(
                f"noise_multiplier={noise_multiplier!r} is so small that ρ = 1/(2σ²) is not a "
                "finite float; use a noise_multiplier of at least 1e-150",
                parameter="noise_multiplier",
            )
        self.draw_ahead = check_draw_ahead(draw_ahead)
        self._rng = resolve_rng(rng)
        self._t = 0
        self._setup()
        self._grid_scale = 2.0**self.grid_bits
        if self.epsilon is not None:
            # Integer scale, rounded up: the realised ε = Δ₁/scale is at most the one asked.
            scale = math.ceil(Fraction(self._l1_units()) / Fraction(self.epsilon))
            self._laplace_scale: int | None = scale
            self._sigma2: Fraction | None = None
            self._noise_variance_units = discrete_laplace_variance(scale)
            proposal = scale
        else:
            assert self.noise_multiplier is not None
            sigma2 = Fraction(self.noise_multiplier) ** 2 * self._l2_squared_units()
            self._sigma2 = Fraction(math.ceil(sigma2))  # rounded up: ρ at most the one asked
            self._laplace_scale = None
            self._noise_variance_units = discrete_gaussian_variance(self._sigma2)
            proposal = math.isqrt(int(self._sigma2)) + 1
        if proposal > _MAX_NOISE_SCALE:
            raise ParameterError(
                f"the noise scale is {proposal} grid units, above the samplers' 2^56; "
                "use a larger epsilon or a smaller noise_multiplier"
            )
        self._noise_stream = self._new_noise_stream(self._noise_total())

    # --- what subclasses provide ------------------------------------------------------

    @property
    @abstractmethod
    def grid_bits(self) -> int:
        """``k``: inputs are snapped to multiples of ``2^-k``."""

    @property
    def sensitivity_norm(self) -> Literal["l1", "l2"]:
        """The norm of :attr:`sensitivity`: ℓ1 for Laplace noise, ℓ2 for Gaussian."""
        return "l1" if self.epsilon is not None else "l2"

    @abstractmethod
    def _setup(self) -> None:
        """Build the strategy (called once, before the noise is calibrated)."""

    @abstractmethod
    def _l1_units(self) -> int:
        """The largest ℓ1 column norm of the strategy, in noise units (exact)."""

    @abstractmethod
    def _l2_squared_units(self) -> int:
        """The largest squared ℓ2 column norm of the strategy, in noise units (exact)."""

    @abstractmethod
    def _advance(self, x: int) -> float:
        """Take one snapped input (an integer number of grid units); return the release."""

    @abstractmethod
    def _unit_variance_factor(self, t: int) -> float:
        """``Var(release_t)`` divided by the variance of one noise draw (value units)."""

    @abstractmethod
    def _noise_total(self) -> int:
        """How many noise draws a whole stream of ``T`` items takes (at most)."""

    @property
    @abstractmethod
    def state_size(self) -> int:
        """How many numbers the stream's state holds now (strategy tables excluded)."""

    @classmethod
    @abstractmethod
    def state_size_bound(cls, T: int) -> int:  # noqa: N803
        """The most numbers :meth:`state` holds (drawn-ahead noise excluded) over a
        stream of horizon ``T``, known before the counter is built."""

    @abstractmethod
    def _export_arrays(self) -> dict[str, list[int | float | None]]:
        """The counter's own numbers for :meth:`state`."""

    @abstractmethod
    def _import_arrays(self, arrays: Mapping[str, Sequence[int | float | None]]) -> None:
        """Check and load :meth:`_export_arrays`'s numbers (``self._t`` is already set)."""

    def _noise_used_after(self, t: int) -> int:
        """How many noise draws the first ``t`` pushes use (one per push unless overridden)."""
        return t

    # --- the public API -----------------------------------------------------------------

    @property
    def sensitivity(self) -> float:
        """The sensitivity of the noisy measurements to one input, in value units.

        ℓ1 norm (with ``epsilon``) or ℓ2 norm (with ``noise_multiplier``) of the
        largest column of the strategy matrix; see :attr:`sensitivity_norm`.
        """
        unit = 2.0 ** -self._noise_unit_bits()
        if self.epsilon is not None:
            return float(self._l1_units()) * unit
        return math.sqrt(self._l2_squared_units()) * unit

    @property
    def guarantee(self) -> PrivacyGuarantee:
        """ε-DP (``epsilon``) or ρ-zCDP with ρ = 1/(2σ²) (``noise_multiplier``), for the
        whole stream of ``T`` releases, neighbours differing in one element."""
        if self.epsilon is not None:
            return PrivacyGuarantee.pure(self.epsilon, neighbouring=NEIGHBOURING)
        assert self.noise_multiplier is not None
        return PrivacyGuarantee.zcdp(
            1.0 / (2.0 * self.noise_multiplier**2), neighbouring=NEIGHBOURING
        )

    @property
    def noise_variance(self) -> float:
        """The exact variance of one noise draw, in value units."""
        return self._noise_variance_units / 4.0 ** self._noise_unit_bits()

    @property
    def t(self) -> int:
        """How many items have been pushed."""
        return self._t

    @property
    def secure(self) -> bool:
        """Whether the noise comes from the ChaCha20 release source."""
        return is_secure(self._rng)

    def push(self, x: float) -> float:
        """Add ``x`` in [0, 1] to the stream and return the private running sum.

        Raises
        ------
        DataError
            If ``x`` is not a finite number in [0, 1].
        LimitExceededError
            If ``T`` items have already been pushed.
        """
        # The common case (a float in [0, 1], room left) costs two comparisons; anything
        # else (ints, NumPy scalars, NaN, out of range, past T) takes the checked path.
        if type(x) is not float or not 0.0 <= x <= 1.0 or self._t >= self.T:
            x = _check_item(x)
            self._check_room(1)
        self._t += 1
        return self._advance(round(x * self._grid_scale))  # exact: a power-of-two scaling

    def push_many(self, xs: npt.ArrayLike) -> FloatArray:
        """Push every element of ``xs`` in order; return their releases.

        All of ``xs`` is checked before any is pushed, so a bad element consumes none.
        """
        values = np.asarray(xs, dtype=float).ravel() if np.size(xs) else np.empty(0)
        if values.size and not (
            np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()
        ):
            bad = values[~(np.isfinite(values) & (values >= 0) & (values <= 1))][0]
            raise DataError(f"every item must be a finite number in [0, 1]; got {bad!r}")
        self._check_room(values.size)
        self._noise_stream.reserve(
            self._noise_used_after(self._t + values.size) - self._noise_used_after(self._t)
        )
        out = np.empty(values.size)
        for index, value in enumerate(values.tolist()):
            self._t += 1
            out[index] = self._advance(self._snap(value))
        return out

    def variance(self, t: int) -> float:
        """The exact variance of the release after ``t`` pushes (``1 <= t <= T``)."""
        if isinstance(t, bool) or not isinstance(t, int | np.integer) or not 1 <= t <= self.T:
            raise ParameterError(f"t must be an integer in [1, {self.T}]; got {t!r}")
        return self.noise_variance * self._unit_variance_factor(int(t))

    @abstractmethod
    def max_variance(self) -> float:
        """The largest :meth:`variance` over ``t = 1..T``."""

    def rounding_bound(self, t: int) -> float:
        """The largest gap between the sum of ``t`` inputs and the sum the releases estimate."""
        return t * 2.0 ** -(self.grid_bits + 1)

    # --- durable state --------------------------------------------------------------------

    def state(self) -> CounterState:
        """Everything needed to continue this stream exactly, as plain numbers.

        The state holds the exact sums still in use, the noisy values already released
        through them, and the noise drawn ahead but not used yet (``pending_noise``;
        pass a small ``draw_ahead`` to keep it short). It holds no randomness source or
        seed. It is as sensitive as the data: the exact sums are not private.
        """
        return CounterState(
            version=STATE_VERSION,
            mechanism=self.name,
            T=self.T,
            epsilon=self.epsilon,
            noise_multiplier=self.noise_multiplier,
            calibration=self._calibration(),
            t=self._t,
            arrays={name: tuple(values) for name, values in self._export_arrays().items()},
            pending_noise=tuple(self._noise_stream.pending().tolist()),
        )

    @classmethod
    def from_state(
        cls,
        state: CounterState | Mapping[str, Any],
        *,
        rng: RandomSource = None,
        draw_ahead: int | None = None,
    ) -> Self:
        """Continue a stream from :meth:`state` (or its :meth:`CounterState.to_dict`).

        The restored counter releases exactly what the exported one would have: the
        noise of every node that has influenced a release, and any noise drawn ahead,
        are taken from the state, never drawn again. Noise needed beyond them comes
        from ``rng`` (``None``: the secure source). Called on
        :class:`ContinualCounter` itself, the counter class is looked up by the state's
        ``mechanism``.

        Raises
        ------
        ParameterError
            If the state is malformed or does not fit the counter: another version or
            mechanism, parameters this version calibrates differently, a count past the
            horizon, arrays of the wrong names, lengths, types or ranges, or more
            drawn-ahead noise than the horizon needs.
        """
        if isinstance(state, Mapping):
            state = CounterState.from_dict(state)
        if not isinstance(state, CounterState):
            raise ParameterError(
                f"state must be a CounterState or its to_dict(); got {type(state).__name__}"
            )
        check_version(state.version, STATE_VERSION, "counter")
        target: type[ContinualCounter] = cls
        if getattr(cls, "name", None) is None:  # the abstract base: dispatch by name
            found = mechanisms.get(state.mechanism) if state.mechanism in mechanisms else None
            if not (isinstance(found, type) and issubclass(found, ContinualCounter)):
                raise ParameterError(
                    f"state.mechanism {state.mechanism!r} is not a continual counter",
                    parameter="state.mechanism",
                )
            target = found
        else:
            check_mechanism(state.mechanism, cls, cls.name)
        counter = target(
            T=state.T,
            epsilon=state.epsilon,
            noise_multiplier=state.noise_multiplier,
            rng=rng,
            draw_ahead=draw_ahead,
        )
        check_calibration(state.calibration, counter._calibration())
        counter._t = state_int(state.t, "t", 0, counter.T)
        used = counter._noise_used_after(counter._t)
        if used + len(state.pending_noise) > counter._noise_total():
            raise ParameterError(
                f"state.pending_noise holds {len(state.pending_noise)} draws; after "
                f"t={counter._t} the horizon needs at most {counter._noise_total() - used}",
                parameter="state.pending_noise",
            )
        pending = [
            state_int(v, "pending_noise", -_NOISE_LIMIT, _NOISE_LIMIT) for v in state.pending_noise
        ]
        counter._import_arrays(state.arrays)
        counter._noise_stream = counter._new_noise_stream(
            counter._noise_total() - used, pending=pending
        )
        return cast(Self, counter)

    # --- helpers ------------------------------------------------------------------------

    def _noise_unit_bits(self) -> int:
        """Noise and measurements are integers in units of ``2^-this``."""
        return self.grid_bits

    def _new_noise_stream(self, total: int, *, pending: Sequence[int] = ()) -> NoiseStream:
        """The noise drawn ahead for the rest of the stream (``total`` draws at most)."""
        spec = NoiseSpec(laplace_scale=self._laplace_scale, gaussian_sigma2=self._sigma2)
        return NoiseStream(spec, self._rng, total, block=self.draw_ahead, pending=pending)

    def _noise(self, n: int) -> list[int]:
        """The next ``n`` noise draws (integers, in noise units)."""
        draws: list[int] = self._noise_stream.take(n).tolist()
        return draws

    def _one_noise(self) -> int:
        """The next noise draw (integer, in noise units)."""
        return self._noise_stream.take_one()

    def _calibration(self) -> str:
        """The noise law and grids derived from the parameters (checked on restore)."""
        law = NoiseSpec(laplace_scale=self._laplace_scale, gaussian_sigma2=self._sigma2).law
        return f"{law}; grid_bits={self.grid_bits}; noise_unit_bits={self._noise_unit_bits()}"

    def _snap(self, value: float) -> int:
        return round(value * self._grid_scale)  # exact: a power-of-two scaling

    def _check_room(self, n: int) -> None:
        if self._t + n > self.T:
            raise LimitExceededError(
                f"this counter's horizon is T={self.T} items and {self._t} were pushed; "
                f"{n} more would pass it. Start a new counter (with its own budget) for more.",
                horizon=self.T,
                pushed=self._t,
            )

    def __repr__(self) -> str:
        noise = (
            f"epsilon={self.epsilon:g}"
            if self.epsilon is not None
            else f"noise_multiplier={self.noise_multiplier:g}"
        )
        return f"{type(self).__name__}(T={self.T}, {noise}, t={self._t})"


def _check_item(x: object) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float | np.integer | np.floating):
        raise DataError(f"an item must be a number in [0, 1]; got {x!r}")
    value = float(x)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise DataError(f"an item must be a finite number in [0, 1]; got {x!r}; clip it first")
    return value

"""The exported state of a continual counter: versioned, JSON-safe, validated on import.

A counter's future releases depend on its past only through a small set of numbers:
the exact sums of the nodes (or items) still in use, the noisy values already released
through them, and any noise drawn ahead but not yet used. :class:`CounterState` holds
exactly these, as plain integers, floats and ``None``, so a service can store it in a
database and continue the stream after a restart. Restoring never redraws the noise of
a node that has influenced a release: drawing it again would give an observer two
independent noisy views of the same sum, and the guarantee would no longer hold.

The state holds no randomness source and no seed: a restored counter draws its future
noise from the secure source unless the caller passes a generator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from privaudit.errors import ParameterError

__all__ = ["SELECTION_STATE_VERSION", "STATE_VERSION", "CounterState", "SelectionState"]

STATE_VERSION = 1
"""The layout of :class:`CounterState`; a state of another version is refused."""

SELECTION_STATE_VERSION = 1
"""The layout of :class:`SelectionState`; a state of another version is refused."""

_INT_LIMIT = 1 << 63  # every integer of a state fits a signed 64-bit word

Value = int | float | None


@dataclass(frozen=True, slots=True)
class CounterState:
    """Everything a continual counter needs to continue its stream exactly.

    Attributes
    ----------
    version
        :data:`STATE_VERSION` when exported.
    mechanism
        The counter's registry name (``"continual.tree"``, ...).
    T
        The horizon.
    epsilon, noise_multiplier
        The noise choice (exactly one is set), as given to the constructor.
    calibration
        The noise law and input grid the counter derived from its parameters (for
        instance ``"laplace scale=...; grid_bits=32"``); a state is refused by a
        version of privaudit that would calibrate the same parameters differently.
    t
        How many items were pushed.
    arrays
        The counter's own numbers, by name: see each counter's ``state()``.
    pending_noise
        Noise drawn ahead (it is data-independent) and not used yet, in the order it
        will be used; the noise of every node that has influenced a release is part of
        ``arrays`` instead.

    Examples
    --------
    >>> state = CounterState.from_dict(
    ...     {"version": 1, "mechanism": "continual.tree", "T": 4, "epsilon": 1.0,
    ...      "noise_multiplier": None, "calibration": "c", "t": 0,
    ...      "arrays": {"partial": [0, 0, 0], "noisy": [None, None, None]},
    ...      "pending_noise": []}
    ... )
    >>> state.arrays["noisy"], state.to_dict()["arrays"]["partial"]
    ((None, None, None), [0, 0, 0])
    """

    version: int
    mechanism: str
    T: int
    epsilon: float | None
    noise_multiplier: float | None
    calibration: str
    t: int
    arrays: Mapping[str, tuple[Value, ...]] = field(default_factory=dict)
    pending_noise: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        frozen = {str(name): tuple(values) for name, values in self.arrays.items()}
        object.__setattr__(self, "arrays", MappingProxyType(frozen))
        object.__setattr__(self, "pending_noise", tuple(self.pending_noise))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (``json.dumps`` round-trips every float exactly)."""
        return {
            "version": self.version,
            "mechanism": self.mechanism,
            "T": self.T,
            "epsilon": self.epsilon,
            "noise_multiplier": self.noise_multiplier,
            "calibration": self.calibration,
            "t": self.t,
            "arrays": {name: list(values) for name, values in self.arrays.items()},
            "pending_noise": list(self.pending_noise),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CounterState:
        """Read a state written by :meth:`to_dict`, checking every field's type.

        Whether the numbers fit the counter is checked by ``from_state``.

        Raises
        ------
        ParameterError
            If a field is missing, unknown or of the wrong type.
        """
        _check_fields(data, {f.name for f in fields(cls)}, "a counter state")
        arrays = _lists(data["arrays"], "arrays")
        return cls(
            version=state_int(data["version"], "version"),
            mechanism=_string(data["mechanism"], "mechanism"),
            T=state_int(data["T"], "T"),
            epsilon=_optional_float(data["epsilon"], "epsilon"),
            noise_multiplier=_optional_float(data["noise_multiplier"], "noise_multiplier"),
            calibration=_string(data["calibration"], "calibration"),
            t=state_int(data["t"], "t"),
            arrays=arrays,
            pending_noise=tuple(
                state_int(value, "pending_noise")
                for value in _sequence(data["pending_noise"], "pending_noise")
            ),
        )


@dataclass(frozen=True, slots=True)
class SelectionState:
    """Everything :class:`~privaudit.mechanisms.continual.MaxSum` or
    :class:`~privaudit.mechanisms.continual.SumSelect` needs to continue its stream exactly.

    Attributes
    ----------
    version
        :data:`SELECTION_STATE_VERSION` when exported.
    mechanism
        ``"continual.max_sum"`` or ``"continual.sum_select"``.
    parameters
        The constructor's parameters: ``d``, ``horizon``, ``epsilon``, ``delta``,
        ``strategy`` (as asked: ``"auto"`` too), ``beta`` and ``on_exhausted``.
    calibration
        The strategy in use and the plan derived from the parameters (noise laws, grid,
        for the sparse vector ``K`` and ``τ``); a state is refused by a version of
        privaudit that would calibrate the same parameters differently.
    t
        How many records were pushed.
    sums
        The exact column sums ``S_j(t)`` (``d`` integers).
    arrays
        The strategy's numbers, by name. ``"counters"``: ``node_noise``, the noise of
        the latest node of every height, ``L × d`` integers row by row (``null`` rows for
        the heights no step has reached yet). ``"sparse-vector"``: one-number arrays
        ``held`` (MaxSum: the released value in grid units; SumSelect: the index),
        ``refreshes``, ``exhausted`` (0 or 1) and ``threshold_noise`` (the current
        round's threshold noise ``ν``; ``null`` before the first record).
    pending
        Noise drawn ahead and not used yet, per noise stream (``node``; or
        ``threshold``, ``query``, ``refresh``), in the order it will be used.

    Examples
    --------
    >>> state = SelectionState.from_dict(
    ...     {"version": 1, "mechanism": "continual.max_sum",
    ...      "parameters": {"d": 2, "horizon": 4}, "calibration": "c", "t": 0,
    ...      "sums": [0, 0], "arrays": {"node_noise": [None] * 6}, "pending": {"node": []}}
    ... )
    >>> state.sums, state.to_dict()["pending"]
    ((0, 0), {'node': []})
    """

    version: int
    mechanism: str
    parameters: Mapping[str, Any]
    calibration: str
    t: int
    sums: tuple[int, ...]
    arrays: Mapping[str, tuple[Value, ...]] = field(default_factory=dict)
    pending: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))
        object.__setattr__(self, "sums", tuple(self.sums))
        for name in ("arrays", "pending"):
            frozen = {str(key): tuple(values) for key, values in getattr(self, name).items()}
            object.__setattr__(self, name, MappingProxyType(frozen))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (``json.dumps`` round-trips every float exactly)."""
        return {
            "version": self.version,
            "mechanism": self.mechanism,
            "parameters": dict(self.parameters),
            "calibration": self.calibration,
            "t": self.t,
            "sums": list(self.sums),
            "arrays": {name: list(values) for name, values in self.arrays.items()},
            "pending": {name: list(values) for name, values in self.pending.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelectionState:
        """Read a state written by :meth:`to_dict`, checking every field's type.

        Whether the numbers fit the mechanism is checked by ``from_state``.

        Raises
        ------
        ParameterError
            If a field is missing, unknown or of the wrong type.
        """
        _check_fields(data, {f.name for f in fields(cls)}, "a selection state")
        parameters = data["parameters"]
        if not isinstance(parameters, Mapping) or not all(isinstance(k, str) for k in parameters):
            raise ParameterError(
                "state.parameters must map names to values", parameter="state.parameters"
            )
        pending = _lists(data["pending"], "pending")
        return cls(
            version=state_int(data["version"], "version"),
            mechanism=_string(data["mechanism"], "mechanism"),
            parameters=parameters,
            calibration=_string(data["calibration"], "calibration"),
            t=state_int(data["t"], "t"),
            sums=tuple(state_int(v, "sums") for v in _sequence(data["sums"], "sums")),
            arrays=_lists(data["arrays"], "arrays"),
            pending={
                name: tuple(state_int(v, f"pending.{name}") for v in values)
                for name, values in pending.items()
            },
        )


def state_int(value: object, name: str, low: int = -_INT_LIMIT, high: int = _INT_LIMIT - 1) -> int:
    """``value`` as an int in ``[low, high]`` (``bool`` and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(
            f"state.{name} must hold integers; got {value!r}", parameter=f"state.{name}"
        )
    if not low <= value <= high:
        raise ParameterError(
            f"state.{name} must lie in [{low}, {high}]; got {value}", parameter=f"state.{name}"
        )
    return value


def state_float(value: object, name: str) -> float:
    """``value`` as a finite float (an int is accepted; ``bool`` is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParameterError(
            f"state.{name} must hold numbers; got {value!r}", parameter=f"state.{name}"
        )
    number = float(value)
    if not math.isfinite(number):
        raise ParameterError(
            f"state.{name} must hold finite numbers; got {value!r}", parameter=f"state.{name}"
        )
    return number


def state_array(arrays: Mapping[str, Sequence[Value]], name: str, length: int) -> Sequence[Value]:
    """The array ``name`` of a state, checked to hold ``length`` values."""
    values = arrays[name]
    if len(values) != length:
        raise ParameterError(
            f"state.arrays.{name} must hold {length} values for this counter; got {len(values)}",
            parameter=f"state.arrays.{name}",
        )
    return values


def check_array_names(arrays: Mapping[str, object], names: Sequence[str], mechanism: str) -> None:
    """Refuse a state whose arrays are not exactly ``names``."""
    if set(arrays) != set(names):
        raise ParameterError(
            f"a {mechanism} state has the arrays {sorted(names)}; got {sorted(arrays)}",
            parameter="state.arrays",
        )


def check_version(version: int, expected: int, what: str) -> None:
    """Refuse a state of another layout version."""
    if version != expected:
        raise ParameterError(
            f"this privaudit reads {what} states of version {expected}; got version {version}",
            parameter="state.version",
        )


def check_mechanism(mechanism: str, cls: type, name: str) -> None:
    """Refuse a state of another mechanism than ``cls`` (registered as ``name``)."""
    if mechanism != name:
        raise ParameterError(
            f"this is a {mechanism!r} state; {cls.__name__} restores {name!r} states only",
            parameter="state.mechanism",
        )


def check_calibration(stored: str, derived: str) -> None:
    """Refuse a state whose parameters this version would calibrate differently."""
    if stored != derived:
        raise ParameterError(
            f"the state was calibrated as {stored!r}; this privaudit calibrates the same "
            f"parameters as {derived!r}, so the stream cannot be continued with the same noise",
            parameter="state.calibration",
        )


def _check_fields(data: object, expected: set[str], what: str) -> None:
    """Refuse anything but a mapping with exactly the ``expected`` keys."""
    if not isinstance(data, Mapping):
        raise ParameterError(f"{what} must be a mapping; got {type(data).__name__}")
    if set(data) != expected:
        missing, unknown = sorted(expected - set(data)), sorted(set(data) - expected)
        raise ParameterError(
            f"{what} has exactly the fields {sorted(expected)}; "
            f"missing {missing}, unknown {unknown}",
            parameter="state",
        )


def _lists(value: object, name: str) -> dict[str, tuple[Any, ...]]:
    """A mapping of names to lists, as a dict of tuples."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ParameterError(f"state.{name} must map names to lists", parameter=f"state.{name}")
    return {key: tuple(_sequence(values, f"{name}.{key}")) for key, values in value.items()}


def _optional_float(value: object, name: str) -> float | None:
    return None if value is None else state_float(value, name)


def _string(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ParameterError(f"state.{name} must be a string; got {value!r}")
    return value


def _sequence(value: object, name: str) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise ParameterError(
            f"state.{name} must be a list; got {type(value).__name__}", parameter=f"state.{name}"
        )
    return value

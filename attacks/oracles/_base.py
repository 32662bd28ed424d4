"""The one ``Oracle`` through which every black-box attack queries a model.

An oracle answers a batch of inputs with one row of class scores per input, and it
owns the bookkeeping that every attack needs and no attack should redo: it counts the
examples it was asked about, refuses a call that would go over the query budget
*before* asking the model anything, splits large calls into batches, enforces a
per-call time limit, and checks every answer (shape, finite values, probabilities
that sum to 1). Concrete oracles only implement ``_predict_batch``.

Attack code that needs a scikit-learn-like ``predict_proba`` (or ART's
``predict_fn``) can be handed the oracle's bound method; the budget still applies.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
from scipy.special import softmax

from privaudit.errors import BudgetExhaustedError, DataError, LimitExceededError, ParameterError

__all__ = ["CallableOracle", "Oracle", "OutputKind"]

OutputKind = Literal["probabilities", "logits"]
_OUTPUT_KINDS: tuple[str, ...] = ("probabilities", "logits")
_SUM_TOLERANCE = 1e-4  # float32 softmax rows sum to 1 within ~1e-6; be lenient, not lax


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ParameterError(f"{name} must be a positive integer; got {value!r}", parameter=name)
    return int(value)


def _check_timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ParameterError(
            f"timeout_s must be a positive number of seconds or None; got {value!r}",
            parameter="timeout_s",
        )
    return float(value)


class Oracle(ABC):
    """Query access to a classifier: inputs in, one row of class scores per input out.

    Parameters
    ----------
    query_budget
        The most examples this oracle answers over its lifetime (``None``: no limit).
        A call that would go over it raises :class:`~privaudit.errors.BudgetExhaustedError`
        before the model sees any of it.
    batch_size
        The most examples sent to the model at once; larger calls are split.
    timeout_s
        Wall-clock limit of one call (all its batches). Remote oracles also bound
        every request by what is left of it. In-process oracles check it between
        batches, so a call can overrun by at most one batch (a batch already running
        in this process cannot be interrupted safely; run untrusted models in a
        worker process that can be killed).

    Attributes
    ----------
    output : {"probabilities", "logits"}
        What the model natively answers; :meth:`predict` returns it unchanged and
        :meth:`predict_proba` always returns probabilities.
    queries_used : int
        Examples answered so far (a batch counts once it has been sent).
    n_calls : int
        Batches sent so far.
    n_classes : int or None
        The number of score columns, known once the model has answered (or from the
        model's metadata).
    """

    output: OutputKind = "probabilities"
    kind: ClassVar[str] = "oracle"
    """A short name for error messages and reports (``"sklearn"``, ``"endpoint"``)."""

    def __init__(
        self,
        *,
        query_budget: int | None = None,
        batch_size: int = 1024,
        timeout_s: float | None = 600.0,
    ) -> None:
        self.query_budget = (
            None if query_budget is None else _positive_int("query_budget", query_budget)
        )
        self.batch_size = _positive_int("batch_size", batch_size)
        self.timeout_s = _check_timeout(timeout_s)
        self.queries_used = 0
        self.n_calls = 0
        self.n_classes: int | None = None
        self._lock = threading.Lock()

    # -- the model-specific part --------------------------------------------------

    @abstractmethod
    def _predict_batch(self, batch: np.ndarray, *, deadline: float | None) -> np.ndarray:
        """Answer one batch: ``(m, C)`` scores of kind :attr:`output`.

        ``deadline`` is a ``time.monotonic()`` value (or ``None``) that remote
        oracles use to bound their requests.
        """

    def close(self) -> None:  # noqa: B027 - a no-op unless the oracle holds connections
        """Release connections or sessions (nothing for in-process models)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the shared part -----------------------------------------------------------

    @property
    def queries_left(self) -> int | None:
        """Examples that may still be queried (``None``: no budget)."""
        if self.query_budget is None:
            return None
        return self.query_budget - self.queries_used

    def predict(self, features: npt.ArrayLike) -> np.ndarray:
        """Return the model's native scores (:attr:`output`), shape ``(n, C)``.

        Raises
        ------
        DataError
            If the inputs are not a finite numeric array with one row per example, or
            the model's answer is malformed.
        BudgetExhaustedError
            If answering would go over :attr:`query_budget` (nothing is sent).
        LimitExceededError
            If the call runs past :attr:`timeout_s`.
        """
        inputs = self._check_inputs(features)
        n = inputs.shape[0]
        with self._lock:
            if self.query_budget is not None and self.queries_used + n > self.query_budget:
                raise BudgetExhaustedError(
                    f"this {self.kind} oracle's query budget is {self.query_budget} examples; "
                    f"{self.queries_used} are used, so {n} more cannot be answered "
                    f"({self.query_budget - self.queries_used} left). Query fewer examples, "
                    "or ask the operator for a larger budget",
                    budget=self.query_budget,
                    used=self.queries_used,
                    requested=n,
                )
            # Reserve the whole call now, so concurrent calls cannot overspend together.
            self.queries_used += n
        reserved = n
        started = time.monotonic()
        deadline = None if self.timeout_s is None else started + self.timeout_s
        answers: list[np.ndarray] = []
        try:
            for start in range(0, n, self.batch_size):
                if deadline is not None and start > 0 and time.monotonic() > deadline:
                    raise LimitExceededError(
                        f"the {self.kind} oracle call ran past its time limit of "
                        f"{self.timeout_s:g} s after {start} of {n} examples; query fewer "
                        "examples per call or raise timeout_s",
                        limit="timeout_s",
                        timeout_s=self.timeout_s,
                    )
                batch = inputs[start : start + self.batch_size]
                with self._lock:
                    self.n_calls += 1
                reserved -= batch.shape[0]  # sent: it counts from now on
                answer = self._predict_batch(batch, deadline=deadline)
                answers.append(self._check_answer(answer, batch.shape[0]))
        finally:
            if reserved:
                with self._lock:
                    self.queries_used -= reserved  # never sent: give the budget back
        if not answers:
            return np.zeros((0, self.n_classes or 0), dtype=np.float64)
        return np.concatenate(answers, axis=0)

    def predict_proba(self, features: npt.ArrayLike) -> np.ndarray:
        """Return class probabilities ``(n, C)`` (a softmax of logits where needed)."""
        scores = self.predict(features)
        if self.output == "logits":
            return np.asarray(softmax(scores, axis=1), dtype=np.float64)
        return scores

    def _check_inputs(self, features: npt.ArrayLike) -> np.ndarray:
        try:
            inputs = np.asarray(features, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise DataError(
                f"oracle inputs must be a numeric array with one row per example; {error}"
            ) from error
        if inputs.ndim < 2:
            raise DataError(
                "oracle inputs must have one row per example, shape (n, features...); got "
                f"shape {inputs.shape} (reshape a single example with x[None])"
            )
        if not np.all(np.isfinite(inputs)):
            raise DataError("oracle inputs contain NaN or infinite values; pass finite numbers")
        return inputs

    def _check_answer(self, answer: Any, n: int) -> np.ndarray:
        try:
            scores = np.asarray(answer, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise DataError(f"the {self.kind} model answered non-numeric scores: {error}") from None
        if scores.ndim != 2 or scores.shape[0] != n or scores.shape[1] < 2:
            raise DataError(
                f"the {self.kind} model must answer {n} rows of at least 2 class scores, "
                f"shape ({n}, classes); got shape {scores.shape}"
            )
        if self.n_classes is not None and scores.shape[1] != self.n_classes:
            raise DataError(
                f"the {self.kind} model answered {scores.shape[1]} classes, but earlier "
                f"answers (or its metadata) had {self.n_classes}"
            )
        if not np.all(np.isfinite(scores)):
            raise DataError(f"the {self.kind} model answered NaN or infinite scores")
        if self.output == "probabilities":
            sums = scores.sum(axis=1)
            if scores.min() < 0 or not np.allclose(sums, 1.0, rtol=0, atol=_SUM_TOLERANCE):
                raise DataError(
                    f"the {self.kind} model was declared to answer probabilities, but its rows "
                    f"are not non-negative summing to 1 (sums from {sums.min():.6g} to "
                    f"{sums.max():.6g}); declare output='logits' if it answers raw scores"
                )
        self.n_classes = int(scores.shape[1])
        return scores

    def __repr__(self) -> str:
        budget = "unlimited" if self.query_budget is None else str(self.query_budget)
        return (
            f"{type(self).__name__}(output={self.output!r}, queries_used={self.queries_used}, "
            f"query_budget={budget})"
        )


class CallableOracle(Oracle):
    """An oracle around a Python function ``f(batch) -> (m, C)`` scores.

    For models that live in the caller's process (a notebook's model, a wrapped
    third-party API client); the function is trusted code.

    Examples
    --------
    >>> import numpy as np
    >>> oracle = CallableOracle(lambda x: np.tile([0.25, 0.75], (len(x), 1)), query_budget=3)
    >>> oracle.predict_proba(np.zeros((2, 4))).tolist(), oracle.queries_left
    ([[0.25, 0.75], [0.25, 0.75]], 1)
    """

    kind = "callable"

    def __init__(
        self,
        function: Callable[[np.ndarray], npt.ArrayLike],
        *,
        output: OutputKind = "probabilities",
        query_budget: int | None = None,
        batch_size: int = 1024,
        timeout_s: float | None = 600.0,
    ) -> None:
        super().__init__(query_budget=query_budget, batch_size=batch_size, timeout_s=timeout_s)
        if not callable(function):
            raise ParameterError(
                f"function must be callable, f(batch) -> scores; got {type(function).__name__}",
                parameter="function",
            )
        self.function = function
        self.output = check_output_kind(output)

    def _predict_batch(self, batch: np.ndarray, *, deadline: float | None) -> np.ndarray:
        return np.asarray(self.function(batch))


def check_output_kind(output: object) -> OutputKind:
    """Return ``output`` if it is ``"probabilities"`` or ``"logits"``; else ParameterError."""
    if output == "probabilities":
        return "probabilities"
    if output == "logits":
        return "logits"
    raise ParameterError(
        f"output must be one of {', '.join(_OUTPUT_KINDS)} (what the model answers); "
        f"got {output!r}",
        parameter="output",
    )

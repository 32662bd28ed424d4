"""The signal every membership attack reads: the logit-scaled confidence of the true label.

For a model's predicted class probabilities ``p`` and an example's label ``y``, the
signal is

.. math:: \\phi = \\log p_y - \\log \\sum_{y' \\ne y} p_{y'}

the log-odds that the model gives the correct label (the "logit scaling" of [CCN22]_,
Section IV-C): it turns the heavy-tailed confidence ``p_y`` into a statistic that is
close to Gaussian across retrainings, which is what LiRA's parametric test assumes.
Higher ``φ`` means a more confident, lower-loss prediction; the cross-entropy loss is
``softplus(−φ)``, a decreasing function of ``φ``, and ``p_y = sigmoid(φ)``, so every
attack (LOSS, LiRA, RMIA) reads the same array.

Numerical stability: the complement ``Σ_{y'≠y} p_{y'}`` is summed from the other
classes instead of computed as ``1 − p_y`` (which loses every digit once ``p_y`` is
within 1e-16 of 1), and both terms are floored at ``floor`` so that a probability of
exactly 0 or 1 (common for random forests) gives a finite signal of at most
``±log(1/floor)``. From logits the signal is computed with ``logsumexp`` and needs no
floor.

References
----------
.. [CCN22] N. Carlini, S. Chien, M. Nasr, S. Song, A. Terzis, F. Tramèr, "Membership
   Inference Attacks From First Principles", IEEE S&P 2022, arXiv:2112.03570.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.special import expit, logsumexp

from privaudit.errors import DataError, ParameterError

__all__ = [
    "logit_confidence",
    "logit_confidence_from_logits",
    "logit_confidence_from_loss",
    "true_label_probability",
]

DEFAULT_FLOOR = 1e-12
"""Default floor on ``p_y`` and on its complement: signals lie in about [−27.6, 27.6]."""


def _labels_for(values: np.ndarray, labels: npt.ArrayLike) -> np.ndarray:
    """Check that ``labels`` index the last axis of ``values`` and broadcast over the rest."""
    label_array = np.asarray(labels)
    if label_array.ndim != 1 or not np.issubdtype(label_array.dtype, np.integer):
        raise DataError(
            "labels must be a 1-D array of integer class indices; "
            f"got dtype {label_array.dtype} and shape {label_array.shape}"
        )
    n_classes = values.shape[-1]
    if label_array.size and (label_array.min() < 0 or label_array.max() >= n_classes):
        raise DataError(
            f"labels must lie in [0, {n_classes}) (one column per class); "
            f"got values from {label_array.min()} to {label_array.max()}"
        )
    # The example axis is the first axis of length n that precedes the class axis.
    axis = _example_axis(values.shape, label_array.size)
    shape = [1] * (values.ndim - 1)
    shape[axis] = label_array.size
    return np.broadcast_to(label_array.reshape(shape), values.shape[:-1])


def _example_axis(shape: tuple[int, ...], n: int) -> int:
    """The example axis of ``(..., n, [augmentations,] classes)``: models may lead."""
    # Accepted layouts: (n, C), (n, A, C), (M, n, C), (M, n, A, C).
    batch = shape[:-1]
    if len(batch) in (1, 2) and batch[0] == n:
        return 0
    if len(batch) in (2, 3) and batch[1] == n:
        return 1
    raise DataError(
        f"cannot find the example axis of length {n} (the number of labels) in an array of "
        f"shape {shape}; expected (n, classes), (n, augmentations, classes), "
        "(models, n, classes) or (models, n, augmentations, classes)"
    )


def _checked_float(name: str, values: npt.ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim < 2:
        raise DataError(f"{name} must have a class axis last; got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise DataError(f"{name} contain NaN or infinite values; pass finite numbers")
    return array


def logit_confidence(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, *, floor: float = DEFAULT_FLOOR
) -> np.ndarray:
    """Logit-scaled confidence ``log p_y − log Σ_{y'≠y} p_{y'}`` from class probabilities.

    Parameters
    ----------
    probabilities
        Predicted class probabilities, classes on the last axis: ``(n, C)``,
        ``(n, A, C)`` (``A`` augmented queries), ``(M, n, C)`` or ``(M, n, A, C)``
        (``M`` models). Each row must be non-negative and sum to 1 (within 1e-6).
    labels
        True class index of each of the ``n`` examples.
    floor
        Lower bound applied to ``p_y`` and to its complement before taking logs, so
        that probabilities of exactly 0 or 1 give finite signals (|φ| <= log(1/floor)).

    Returns
    -------
    numpy.ndarray
        The signal, with the class axis removed.

    Examples
    --------
    >>> import numpy as np
    >>> phi = logit_confidence(np.array([[0.8, 0.2], [0.5, 0.5], [1.0, 0.0]]), [0, 1, 0])
    >>> np.round(phi, 3).tolist()
    [1.386, 0.0, 27.631]
    """
    if not 0.0 < floor < 0.5:
        raise ParameterError(f"floor must be in (0, 0.5); got {floor!r}", parameter="floor")
    probs = _checked_float("probabilities", probabilities)
    if probs.min() < 0 or not np.allclose(probs.sum(axis=-1), 1.0, atol=1e-6):
        raise DataError(
            "probabilities must be non-negative and sum to 1 over the last (class) axis; "
            "pass softmax outputs (use logit_confidence_from_logits for raw logits)"
        )
    label_grid = _labels_for(probs, labels)
    p_true = np.take_along_axis(probs, label_grid[..., None], axis=-1)[..., 0]
    # Sum the other classes directly: 1 − p_y would round to 0 for confident models.
    onehot = np.arange(probs.shape[-1]) == label_grid[..., None]
    p_rest = np.where(onehot, 0.0, probs).sum(axis=-1)
    signal = np.log(np.maximum(p_true, floor)) - np.log(np.maximum(p_rest, floor))
    return np.asarray(signal, dtype=np.float64)


def logit_confidence_from_logits(logits: npt.ArrayLike, labels: npt.ArrayLike) -> np.ndarray:
    """Logit-scaled confidence from raw logits (pre-softmax scores), without a floor.

    ``φ = z_y − logsumexp_{y'≠y} z_{y'}``, which equals :func:`logit_confidence` of
    ``softmax(z)`` and is exact for any finite logits.

    Examples
    --------
    >>> import numpy as np
    >>> float(logit_confidence_from_logits(np.array([[50.0, 0.0, 0.0]]), [0])[0])
    49.3068528194...
    """
    z = _checked_float("logits", logits)
    if z.shape[-1] < 2:
        raise DataError(f"logits need at least 2 classes; got shape {z.shape}")
    label_grid = _labels_for(z, labels)
    z_true = np.take_along_axis(z, label_grid[..., None], axis=-1)[..., 0]
    onehot = np.arange(z.shape[-1]) == label_grid[..., None]
    z_rest = logsumexp(np.where(onehot, -np.inf, z), axis=-1)
    return np.asarray(z_true - z_rest, dtype=np.float64)


def logit_confidence_from_loss(loss: npt.ArrayLike) -> np.ndarray:
    """Logit-scaled confidence from per-example cross-entropy losses ``−log p_y``.

    ``φ = −ℓ − log(1 − e^{−ℓ})``, computed with ``expm1``; a loss of exactly 0 gives
    ``+inf`` and is refused.

    Examples
    --------
    >>> import numpy as np
    >>> np.round(logit_confidence_from_loss(np.log([2.0, 5.0])), 4).tolist()
    [0.0, -1.3863]
    """
    values = np.asarray(loss, dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise DataError(
            "losses must be finite and > 0 (a loss of 0 means p_y = 1 exactly, an infinite "
            "signal); compute signals from probabilities with a floor instead"
        )
    return np.asarray(-values - np.log(-np.expm1(-values)), dtype=np.float64)


def true_label_probability(signals: npt.ArrayLike) -> np.ndarray:
    """``p_y = sigmoid(φ)``: the true-label probability that a signal stands for."""
    return np.asarray(expit(np.asarray(signals, dtype=np.float64)), dtype=np.float64)


def signals_from_outputs(
    outputs: npt.ArrayLike, labels: npt.ArrayLike, *, output: str, floor: float = DEFAULT_FLOOR
) -> np.ndarray:
    """The logit-scaled confidence of model outputs of kind ``output``: ``"logits"`` (via
    :func:`logit_confidence_from_logits`) or ``"probabilities"`` (via
    :func:`logit_confidence`, floored at ``floor``)."""
    if output == "logits":
        return logit_confidence_from_logits(outputs, labels)
    return logit_confidence(outputs, labels, floor=floor)

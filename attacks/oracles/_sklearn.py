"""A scikit-learn classifier as an oracle, loaded from a skops file (never pickle).

skops stores a model as a zip of JSON and ``.npy`` entries and rebuilds only types
that are trusted: scikit-learn's estimators and a few NumPy/SciPy types by default,
plus the ones passed as ``trusted=``. :class:`SklearnOracle` passes an explicit
allow-list, :data:`TRUSTED_SKOPS_TYPES`, and refuses a file that holds any other type
(a custom class, ``builtins.eval``, ...) before building anything, listing them.

skops checks *types*, not *values*: a crafted tree whose node indices point outside
its node array loads fine and then reads out of bounds in ``predict`` (scikit-learn
does not bounds-check them). That is why skops does not trust
``sklearn.tree._tree.Tree`` by default. We do, because every tree is checked after
loading and before any prediction: each split's children must come later in the node
array (so every walk ends) and lie inside it, each leaf must have no children, and
each split's feature must exist. HistGradientBoosting's ``TreePredictor`` is not
trusted (export those models as ONNX).
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from privaudit.attacks.oracles._base import Oracle
from privaudit.attacks.oracles._formats import require_format
from privaudit.errors import DataError, LimitExceededError, MissingDependencyError

__all__ = ["TRUSTED_SKOPS_TYPES", "SklearnOracle"]

TRUSTED_SKOPS_TYPES: tuple[str, ...] = (
    # Tree node storage of DecisionTree*, RandomForest*, ExtraTrees*, GradientBoosting*:
    # trusted because check_trees() bounds-checks every node before use.
    "sklearn.tree._tree.Tree",
    # The fitted optimizer state an MLPClassifier keeps (arrays and floats; unused
    # by predict_proba, and it defines no custom __setstate__).
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
)
"""Types beyond skops' defaults (scikit-learn estimators, NumPy and SciPy types) that
:class:`SklearnOracle` lets skops build."""

DEFAULT_MAX_BYTES = 256 * 2**20
_MAX_EXPANSION = 20  # unpacked bytes per packed byte before a skops zip counts as a bomb
_MAX_OBJECTS = 2_000_000


def _skops() -> Any:
    try:
        import skops.io
    except ImportError as error:
        raise MissingDependencyError(
            "loading scikit-learn models needs skops; run: pip install 'privaudit[audit]'"
        ) from error
    return skops.io


class SklearnOracle(Oracle):
    """Query a fitted scikit-learn classifier through its ``predict_proba``.

    Build it from a skops file with :meth:`load`, or around a model already in this
    process with ``SklearnOracle(model=...)``.

    Parameters
    ----------
    model
        A fitted classifier with ``predict_proba``.
    query_budget, batch_size, timeout_s
        See :class:`~privaudit.attacks.oracles.Oracle`.

    Attributes
    ----------
    classes : numpy.ndarray
        The model's ``classes_``: column ``j`` of the answers is the probability of
        ``classes[j]``.
    n_features : int or None
        The number of input features the model was fitted on.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    >>> oracle = SklearnOracle(model=LogisticRegression().fit(X, y), query_budget=10)
    >>> oracle.predict_proba(X).shape, oracle.queries_left
    ((4, 2), 6)
    """

    kind = "sklearn"
    output = "probabilities"

    def __init__(
        self,
        *,
        model: Any,
        query_budget: int | None = None,
        batch_size: int = 4096,
        timeout_s: float | None = 600.0,
    ) -> None:
        super().__init__(query_budget=query_budget, batch_size=batch_size, timeout_s=timeout_s)
        if not callable(getattr(model, "predict_proba", None)):
            raise DataError(
                f"the scikit-learn model must be a classifier with predict_proba; got "
                f"{type(model).__module__}.{type(model).__qualname__}"
            )
        classes = getattr(model, "classes_", None)
        if classes is None:
            raise DataError(
                f"the scikit-learn model {type(model).__qualname__} is not fitted (it has no "
                "classes_); fit it before saving"
            )
        self.model = model
        self.classes = np.asarray(classes)
        if self.classes.ndim != 1 or self.classes.size < 2:
            raise DataError(
                f"the model must be a single-output classifier with at least 2 classes; its "
                f"classes_ has shape {self.classes.shape}"
            )
        self.n_classes = int(self.classes.size)
        n_features = getattr(model, "n_features_in_", None)
        self.n_features = None if n_features is None else int(n_features)
        check_trees(model)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        extra_trusted_types: Iterable[str] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
        query_budget: int | None = None,
        batch_size: int = 4096,
        timeout_s: float | None = 600.0,
    ) -> SklearnOracle:
        """Load a classifier saved with ``skops.io.dump``.

        Parameters
        ----------
        path
            The skops file (its content is checked, not its name).
        extra_trusted_types
            Fully qualified type names to trust beyond skops' defaults and
            :data:`TRUSTED_SKOPS_TYPES`: an operator's decision, for types they have
            reviewed.
        max_bytes
            The largest file accepted; its unpacked entries may total at most 20
            times that.

        Raises
        ------
        UnsupportedFormatError
            If the file is not a skops file (a pickle, a joblib dump, ...).
        DataError
            If it holds a type that is not trusted (the message lists them), it is
            corrupt, or its model is not a fitted classifier with sound trees.
        LimitExceededError
            If the file, or what it unpacks to, is too large.
        """
        file = Path(path)
        require_format(file, "skops", max_bytes=max_bytes)
        _check_unpacked_size(file, max_bytes * _MAX_EXPANSION)
        sio = _skops()
        trusted = [*TRUSTED_SKOPS_TYPES, *extra_trusted_types]
        try:
            found = sio.get_untrusted_types(file=file)
        except Exception as error:
            raise DataError(f"{file.name!r} is not a readable skops file: {error}") from None
        refused = sorted(set(found) - set(trusted))
        if refused:
            raise DataError(
                f"{file.name!r} holds types that privaudit does not trust, so it was not "
                f"loaded: {', '.join(refused)}. Trusted are scikit-learn's estimators, "
                f"NumPy and SciPy types, and {', '.join(TRUSTED_SKOPS_TYPES)}. Save a plain "
                "scikit-learn classifier (no custom classes or functions), export the model "
                "as ONNX, or, if you operate this service and have reviewed a type, pass it "
                "in extra_trusted_types",
                untrusted_types=refused,
            )
        try:
            model = sio.load(file, trusted=[name for name in found if name in trusted])
        except Exception as error:
            raise DataError(f"{file.name!r} could not be loaded by skops: {error}") from None
        return cls(
            model=model, query_budget=query_budget, batch_size=batch_size, timeout_s=timeout_s
        )

    def _predict_batch(self, batch: np.ndarray, *, deadline: float | None) -> np.ndarray:
        flat = batch.reshape(batch.shape[0], -1)
        if self.n_features is not None and flat.shape[1] != self.n_features:
            raise DataError(
                f"the scikit-learn model takes {self.n_features} features per example; got "
                f"{flat.shape[1]}"
            )
        with warnings.catch_warnings():
            # Models fitted on a DataFrame warn about unnamed columns; the order is the contract.
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            return np.asarray(self.model.predict_proba(flat))


def _check_unpacked_size(file: Path, limit: int) -> None:
    with zipfile.ZipFile(file) as archive:
        total = sum(info.file_size for info in archive.infolist())
    if total > limit:
        raise LimitExceededError(
            f"{file.name!r} unpacks to {total} bytes, over the limit of {limit}; this looks "
            "like a zip bomb, or the model is too large for this service",
            limit="unpacked_bytes",
        )


def _objects(root: Any) -> Iterator[Any]:
    """Every object reachable from ``root`` through attributes and containers."""
    seen: set[int] = set()
    pending = [root]
    while pending:
        item = pending.pop()
        if id(item) in seen or isinstance(item, str | bytes | int | float | bool | type(None)):
            continue
        seen.add(id(item))
        if len(seen) > _MAX_OBJECTS:
            raise LimitExceededError(
                f"the model holds more than {_MAX_OBJECTS} objects", limit="objects"
            )
        yield item
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            pending.extend(item)
        elif isinstance(item, np.ndarray):
            if item.dtype == object:
                pending.extend(item.ravel().tolist())
        elif hasattr(item, "__dict__"):
            pending.extend(vars(item).values())


def check_trees(model: Any) -> int:
    """Bounds-check every decision tree inside ``model``; return how many were checked.

    For each fitted ``DecisionTree*`` (alone, or inside a forest, boosting or a
    pipeline), with ``m`` nodes and ``d`` input features: a split node ``i`` has both
    children in ``(i, m)`` and its feature in ``[0, d)``; a leaf has both children
    equal to ``-1``. Children after their parent make every walk from the root end.

    Raises
    ------
    DataError
        On the first tree that breaks a rule (which is what a crafted file does to
        read out of bounds in ``predict``).
    """
    try:
        from sklearn.tree._tree import Tree
    except ImportError:  # no scikit-learn, so no trees
        return 0
    checked = 0
    items = list(_objects(model))
    owned = {id(vars(item).get("tree_")) for item in items if hasattr(item, "__dict__")}
    if any(isinstance(item, Tree) and id(item) not in owned for item in items):
        raise DataError(
            "the model holds a decision tree outside a DecisionTree estimator's tree_; the "
            "file is corrupt or crafted, and was not used"
        )
    for item in items:
        tree = vars(item).get("tree_") if hasattr(item, "__dict__") else None
        if not isinstance(tree, Tree):
            continue
        n_features = getattr(item, "n_features_in_", tree.n_features)
        where = f"tree {checked} ({type(item).__qualname__})"
        if tree.n_features != n_features:
            raise DataError(
                f"{where} splits on {tree.n_features} features but its estimator takes "
                f"{n_features}; the file is corrupt or crafted"
            )
        left = np.asarray(tree.children_left)
        right = np.asarray(tree.children_right)
        feature = np.asarray(tree.feature)
        m = int(tree.node_count)
        index = np.arange(m)
        leaf = (left == -1) & (right == -1)
        split = ~leaf
        children_bad = (left <= index) | (right <= index) | (left >= m) | (right >= m)
        bad = (
            (left.shape != (m,))
            or (right.shape != (m,))
            or (feature.shape != (m,))
            or bool(np.any(split & children_bad))
            or bool(np.any(split & ((feature < 0) | (feature >= n_features))))
        )
        if m < 1 or bad:
            raise DataError(
                f"{where} has node indices or features out of bounds (a split's children must "
                f"come after it and lie in [0, {m}), its feature in [0, {n_features}); a leaf "
                "has no children); the file is corrupt or crafted, and was not used"
            )
        checked += 1
    return checked

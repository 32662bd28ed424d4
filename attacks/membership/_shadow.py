"""The shadow-model attack of Shokri et al. [SSSS17]_: learned per-class attack classifiers.

References
----------
.. [SSSS17] R. Shokri, M. Stronati, C. Song, V. Shmatikov, "Membership Inference
   Attacks Against Machine Learning Models", IEEE S&P 2017, arXiv:1610.05820.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from privaudit.attacks.membership._base import MembershipAttack
from privaudit.attacks.membership._inputs import AuditSignals, check_signals
from privaudit.errors import DataError, MissingDependencyError
from privaudit.registry import attacks

__all__ = ["ShadowModelAttack"]


def _default_classifier(random_state: int | None) -> Any:
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError as error:
        raise MissingDependencyError(
            "ShadowModelAttack trains scikit-learn classifiers; run: pip install 'privaudit[audit]'"
        ) from error
    return RandomForestClassifier(
        n_estimators=50, min_samples_leaf=0.01, random_state=random_state, n_jobs=1
    )


@attacks.register("shadow")
class ShadowModelAttack(MembershipAttack):
    """One attack classifier per class, trained on the reference (shadow) models [SSSS17]_.

    Every (reference model, example) pair is a training example for the attack: its
    features are what the reference model output on the example, its label whether
    the example was in that model's training set. As in the paper, one classifier is
    trained per true class of the example; the target's outputs are then scored by the
    classifier of their class, and the score is the predicted probability of "member".
    A class whose pairs are all members or all non-members uses a classifier trained
    on every class instead.

    Parameters
    ----------
    classifier
        An unfitted scikit-learn classifier with ``predict_proba``, cloned for each
        class; ``None`` uses ``RandomForestClassifier(n_estimators=50,
        min_samples_leaf=0.01)``: leaves of at least 1% of the training pairs keep
        the estimated membership probability smooth enough to rank weak signals
        (with tiny leaves the ranking drowns in noise), and it is fast on two cores
        (gradient boosting scored no higher on the digits demo, several times slower).
    random_state
        Seed of the default classifier.

    Attributes
    ----------
    scores_ : numpy.ndarray
        ``(n,)`` predicted membership probabilities of the target (higher = member).
    classifiers_ : dict
        The fitted classifier per class label (key ``None``: the all-class fallback, when one
        was needed).

    Notes
    -----
    The features are the signals (one per augmented query) unless ``features`` is
    given to :meth:`fit`, e.g. the full probability vectors ``(K + 1, n, C)`` that the
    paper's attack models read. Shokri et al. train shadow models on disjoint data of
    the same distribution; here the reference models of the LiRA-style keep matrix
    play that part.
    """

    min_reference: ClassVar[int] = 1

    def __init__(self, *, classifier: Any = None, random_state: int | None = None) -> None:
        if classifier is not None and not (
            hasattr(classifier, "fit") and hasattr(classifier, "predict_proba")
        ):
            raise DataError(
                "classifier must be a scikit-learn classifier with fit and predict_proba; "
                f"got {classifier!r}"
            )
        self.classifier = classifier
        self.random_state = random_state

    def fit(
        self,
        signals: npt.ArrayLike,
        keep: npt.ArrayLike,
        labels: npt.ArrayLike | None = None,
        *,
        features: npt.ArrayLike | None = None,
    ) -> Self:
        """Train the attack classifiers on the reference models and score the target.

        Parameters
        ----------
        labels
            Required: the class of each example selects its attack classifier.
        features
            Optional ``(K + 1, n, d)`` attack features in place of the signals.
        """
        if labels is None:
            raise DataError("ShadowModelAttack trains one attack classifier per class: pass labels")
        self._features = None
        if features is not None:
            array = check_signals(features, name="features")
            if array.shape[:2] != np.shape(signals)[:2]:
                raise DataError(
                    f"features must have shape (models, n, d) = {np.shape(signals)[:2]} + (d,) "
                    f"to match signals; got {array.shape}"
                )
            self._features = array
        return super().fit(signals, keep, labels)

    def _make_classifier(self) -> Any:
        if self.classifier is None:
            return _default_classifier(self.random_state)
        from sklearn.base import clone

        return clone(self.classifier)

    def _score(self, data: AuditSignals) -> np.ndarray:
        assert data.labels is not None
        features = data.signals if self._features is None else self._features
        reference, member = features[1:], data.reference_keep
        n_features = features.shape[2]
        self.classifiers_: dict[int | None, Any] = {}

        def all_classes() -> Any:
            if None not in self.classifiers_:
                self.classifiers_[None] = self._make_classifier().fit(
                    reference.reshape(-1, n_features), member.reshape(-1)
                )
            return self.classifiers_[None]

        scores = np.empty(data.n_examples)
        for label in np.unique(data.labels):
            columns = np.flatnonzero(data.labels == label)
            answers = member[:, columns].reshape(-1)
            if answers.any() and not answers.all():
                rows = reference[:, columns].reshape(-1, n_features)
                model = self._make_classifier().fit(rows, answers)
            else:
                model = all_classes()
            self.classifiers_[int(label)] = model
            proba = model.predict_proba(features[0, columns])
            scores[columns] = proba[:, list(model.classes_).index(True)]
        return scores

"""BayesianEpsilon(method="hierarchical"): real PyMC sampling of per-model random effects.

Games are simulated with a fixed seed. "Absent" correlation: every trained model has the
same error rates, so pooling is right and the random-effects interval must agree with the
joint-beta one. "Present": each model draws its own rates from a Beta law (intra-model
correlation ρ = 1/9), so pooled counts overstate the evidence and the random-effects
interval must be clearly wider.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from privaudit.errors import DataError, MissingDependencyError, ParameterError
from privaudit.estimators import BayesianEpsilon, ClopperPearsonEpsilon, Rigor


def _game(
    *, models: int, guesses: int, fpr: float, fnr: float, concentration: float | None, seed: int
) -> dict[str, np.ndarray]:
    """Per-model confusion counts; rates vary across models unless concentration is None."""
    rng = np.random.default_rng(seed)
    if concentration is None:
        fpr_m, fnr_m = np.full(models, fpr), np.full(models, fnr)
    else:
        fpr_m = rng.beta(fpr * concentration, (1 - fpr) * concentration, models)
        fnr_m = rng.beta(fnr * concentration, (1 - fnr) * concentration, models)
    negatives = guesses // 2
    positives = guesses - negatives
    fp = rng.binomial(negatives, fpr_m)
    fn = rng.binomial(positives, fnr_m)
    return {"tp": positives - fn, "fn": fn, "tn": negatives - fp, "fp": fp}


@pytest.mark.slow  # 200 models: about a minute of NUTS on 2 cores
def test_matches_joint_beta_when_guesses_are_independent() -> None:
    """200 models x 10 guesses, identical rates. Across seeds 0-3 of the sampler the
    endpoints stayed within 0.02 of the joint-beta interval (MCMC error of a 2.5% quantile
    from ~1800 effective draws is about 0.01), so a 0.05 tolerance fails by chance with
    probability well below 1e-4."""
    counts = _game(models=200, guesses=10, fpr=0.1, fnr=0.3, concentration=None, seed=5)
    pooled = BayesianEpsilon().fit(**counts)
    hierarchical = BayesianEpsilon(method="hierarchical", random_state=0).fit(**counts)
    assert hierarchical.interval_ == pytest.approx(pooled.interval_, abs=0.05)
    assert hierarchical.median_ == pytest.approx(pooled.median_, abs=0.03)
    diagnostics = hierarchical.draws_.diagnostics()
    assert diagnostics["divergences"] == 0 and diagnostics["r_hat"] <= 1.01
    assert diagnostics["correlation_fp_mean"] < 0.05  # the data say "little correlation"
    assert hierarchical.result_.rigor is Rigor.HEURISTIC
    assert hierarchical.result_.evidence["models"] == 200
    assert "random-effects" in hierarchical.result_.reason


def test_widens_the_interval_when_guesses_within_a_model_are_correlated() -> None:
    """40 models x 50 guesses, per-model rates ~ Beta with concentration 8. The pooled
    joint-beta interval is [1.87, 2.27] (width 0.41); the random-effects interval
    measured [1.66, 2.40] (width 0.74). Requiring >= 1.4x leaves room for MCMC error
    (about 0.02 per endpoint)."""
    counts = _game(models=40, guesses=50, fpr=0.1, fnr=0.3, concentration=8.0, seed=5)
    pooled = BayesianEpsilon().fit(**counts)
    hierarchical = BayesianEpsilon(
        method="hierarchical", draws=1000, tune=1000, random_state=0
    ).fit(**counts)
    pooled_width = pooled.interval_[1] - pooled.interval_[0]
    width = hierarchical.interval_[1] - hierarchical.interval_[0]
    assert width >= 1.4 * pooled_width
    diagnostics = hierarchical.draws_.diagnostics()
    assert diagnostics["correlation_fp_mean"] > 0.05 and diagnostics["correlation_fn_mean"] > 0.05
    # The posterior of ε is a proper law: a CDF from 0 to 1 on the grid, median at 0.5.
    assert hierarchical.cdf(hierarchical.median_) == pytest.approx(0.5, abs=0.01)
    grid = hierarchical.posterior_grid(points=50)
    assert np.all(np.diff(grid.cdf) >= 0)


def test_per_model_arrays_are_pooled_by_the_other_methods() -> None:
    counts = _game(models=8, guesses=20, fpr=0.2, fnr=0.2, concentration=None, seed=1)
    sums = {name: int(values.sum()) for name, values in counts.items()}
    for estimator in (BayesianEpsilon(), ClopperPearsonEpsilon()):
        from_arrays = type(estimator)().fit(**counts)
        from_sums = estimator.fit(**sums)
        assert from_arrays.interval_ == pytest.approx(from_sums.interval_, abs=1e-12)
        # 20 guesses per model pooled as independent: labelled heuristic, with the reason.
        assert from_arrays.result_.rigor is Rigor.HEURISTIC
        assert "20 guesses per trained model" in from_arrays.result_.reason
        assert from_arrays.per_model_counts_ is not None
        assert from_arrays.per_model_counts_.models == 8


def test_one_guess_per_model_keeps_the_rigorous_label() -> None:
    estimator = ClopperPearsonEpsilon().fit(tp=[1, 0, 1], fn=[0, 1, 0], tn=[0, 0, 0], fp=[0, 0, 0])
    assert estimator.result_.rigor is Rigor.RIGOROUS


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"tp": [1, 2], "fn": [1], "tn": [1, 1], "fp": [0, 0]}, "one entry per trained model"),
        ({"tp": [1, -2], "fn": [1, 1], "tn": [1, 1], "fp": [0, 0]}, ">= 0"),
        ({"tp": [1.5, 2], "fn": [1, 1], "tn": [1, 1], "fp": [0, 0]}, "integer counts"),
        ({"tp": [[1]], "fn": [[1]], "tn": [[1]], "fp": [[1]]}, "1-D"),
        ({"tp": [0, 1], "fn": [0, 1], "tn": [0, 1], "fp": [0, 1]}, "at least one guess"),
    ],
)
def test_bad_per_model_counts_are_refused(counts: dict[str, list[int]], message: str) -> None:
    with pytest.raises(DataError, match=message):
        BayesianEpsilon().fit(**counts)


def test_hierarchical_needs_per_model_counts() -> None:
    with pytest.raises(ParameterError, match="one count per trained model"):
        BayesianEpsilon(method="hierarchical").fit(tp=10, fn=2, tn=9, fp=3)
    with pytest.raises(ParameterError, match="at least 2 models"):
        BayesianEpsilon(method="hierarchical").fit(tp=[10], fn=[2], tn=[9], fp=[3])
    with pytest.raises(ParameterError, match="draws"):
        BayesianEpsilon(method="hierarchical", draws=10)


def test_a_missing_pymc_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymc", None)  # makes `import pymc` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"privaudit\[bayes\]"):
        BayesianEpsilon(method="hierarchical").fit(tp=[5, 5], fn=[1, 1], tn=[5, 5], fp=[1, 1])


def test_the_default_path_never_imports_pymc() -> None:
    import subprocess

    code = (
        "import sys; from privaudit.estimators import BayesianEpsilon;"
        "BayesianEpsilon().fit(tp=[5, 5], fn=[1, 1], tn=[5, 5], fp=[1, 1]);"
        "assert 'pymc' not in sys.modules, 'pymc was imported'"
    )
    subprocess.run([sys.executable, "-P", "-c", code], check=True)

"""Bad input gives a ParameterError that names the parameter; unfitted state says so."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from privaudit.errors import NotFittedError, ParameterError
from privaudit.estimators import (
    BayesianEpsilon,
    ClopperPearsonEpsilon,
    EpsilonEstimate,
    JeffreysEpsilon,
    Rigor,
)

GOOD = {"tp": 10, "fn": 2, "tn": 9, "fp": 3}


@pytest.mark.parametrize("estimator", [BayesianEpsilon, ClopperPearsonEpsilon, JeffreysEpsilon])
@pytest.mark.parametrize(
    ("counts", "parameter"),
    [
        ({**GOOD, "tp": -1}, "tp"),
        ({**GOOD, "fp": 2.5}, "fp"),
        ({**GOOD, "fn": 2.0}, "fn"),  # a float, even a whole one: counts are ints
        ({**GOOD, "tn": True}, "tn"),
        ({**GOOD, "tn": "9"}, "tn"),
    ],
)
def test_bad_counts(estimator: Any, counts: dict[str, Any], parameter: str) -> None:
    with pytest.raises(ParameterError) as caught:
        estimator().fit(**counts)
    assert caught.value.details["parameter"] == parameter
    assert parameter in str(caught.value)


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": math.nan}, "alpha"),
        ({"delta": 1.0}, "delta"),
        ({"delta": -1e-5}, "delta"),
        ({"sided": "upper"}, "sided"),
        ({"prior": "flat"}, "prior"),
        ({"draws": 10}, "draws"),
        ({"chains": 1}, "chains"),
        ({"random_state": -1}, "random_state"),
        ({"method": "mcmc"}, "method"),
        ({"threat_model": "grey-box"}, "threat_model"),
        ({"guesses_per_model": 0}, "guesses_per_model"),
    ],
)
def test_bad_parameters(options: dict[str, Any], parameter: str) -> None:
    with pytest.raises(ParameterError) as caught:
        BayesianEpsilon(**options)
    assert caught.value.details["parameter"] == parameter


def test_not_fitted_and_numpy_counts() -> None:
    estimator = BayesianEpsilon()
    for read in (lambda: estimator.interval_, lambda: estimator.cdf(1.0), estimator.posterior_grid):
        with pytest.raises(NotFittedError, match="fit"):
            read()
    with pytest.raises(AttributeError):
        estimator.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    fitted = estimator.fit(tp=np.int64(10), fn=np.int32(2), tn=9, fp=3)
    assert fitted is estimator and fitted.counts_.positives == 12


def test_result_is_json_ready_and_readable() -> None:
    result = ClopperPearsonEpsilon(sided="lower").fit(tp=50, fn=0, tn=50, fp=0).result_
    assert isinstance(result, EpsilonEstimate)
    document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert document["upper"] is None and document["rigor"] == Rigor.RIGOROUS.value
    assert document["evidence"] == {"tp": 50, "fn": 0, "tn": 50, "fp": 0}
    assert str(result).startswith("ε >= ")

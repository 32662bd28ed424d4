"""The Oracle's bookkeeping: counting, budget, batching, time limit, answer checks."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy.special import softmax

from privaudit.attacks.oracles import CallableOracle
from privaudit.errors import BudgetExhaustedError, DataError, LimitExceededError, ParameterError


class Recorder:
    """A linear softmax model that records the size of every batch it is sent."""

    def __init__(self, n_features: int = 3, n_classes: int = 4) -> None:
        self.weights = np.arange(n_features * n_classes, dtype=float).reshape(n_features, -1) / 10
        self.batches: list[int] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(batch.shape[0])
        return np.asarray(softmax(batch @ self.weights, axis=1))


def test_counts_queries_and_batches() -> None:
    model = Recorder()
    oracle = CallableOracle(model, batch_size=4, query_budget=20)
    inputs = np.linspace(0, 1, 30).reshape(10, 3)
    answer = oracle.predict_proba(inputs)
    np.testing.assert_allclose(answer, model.__call__(inputs), rtol=1e-12)
    assert model.batches[:-1] == [4, 4, 2]  # the last entry is the reference call above
    assert (oracle.queries_used, oracle.n_calls, oracle.queries_left) == (10, 3, 10)
    assert oracle.n_classes == 4


def test_budget_is_checked_before_the_model_sees_anything() -> None:
    model = Recorder()
    oracle = CallableOracle(model, query_budget=5)
    oracle.predict(np.zeros((4, 3)))
    with pytest.raises(BudgetExhaustedError, match=r"budget is 5 examples; 4 are used") as info:
        oracle.predict(np.zeros((2, 3)))
    assert info.value.details == {"budget": 5, "used": 4, "requested": 2}
    assert model.batches == [4]  # the refused call reached no model
    assert oracle.queries_used == 4
    oracle.predict(np.zeros((1, 3)))  # what is left can still be spent
    assert oracle.queries_left == 0


def test_concurrent_calls_cannot_overspend() -> None:
    oracle = CallableOracle(Recorder(), query_budget=50, batch_size=1)
    refused: list[int] = []

    def call() -> None:
        try:
            oracle.predict(np.zeros((10, 3)))
        except BudgetExhaustedError:
            refused.append(1)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (oracle.queries_used, len(refused)) == (50, 3)


def test_unsent_batches_give_their_budget_back() -> None:
    def failing(batch: np.ndarray) -> np.ndarray:
        raise DataError("the model broke")

    oracle = CallableOracle(failing, batch_size=2, query_budget=10)
    with pytest.raises(DataError, match="broke"):
        oracle.predict(np.zeros((6, 3)))
    assert oracle.queries_used == 2  # the first batch was sent; the other 4 examples were not


def test_time_limit_is_checked_between_batches() -> None:
    model = Recorder()
    oracle = CallableOracle(model, batch_size=2, timeout_s=1e-9)
    with pytest.raises(LimitExceededError, match=r"time limit of 1e-09 s after 2 of 6") as info:
        oracle.predict(np.zeros((6, 3)))
    assert info.value.details["limit"] == "timeout_s"
    assert model.batches == [2]
    assert oracle.queries_used == 2


def test_logits_become_probabilities() -> None:
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    oracle = CallableOracle(lambda batch: logits[: len(batch)], output="logits")
    np.testing.assert_allclose(oracle.predict(np.zeros((2, 1))), logits)
    np.testing.assert_allclose(oracle.predict_proba(np.zeros((2, 1))), softmax(logits, axis=1))


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (np.full((3, 2), 0.7), "are not non-negative summing to 1"),
        (np.full((2, 2), 0.5), r"must answer 3 rows .* got shape \(2, 2\)"),
        (np.full((3, 1), 1.0), "at least 2 class scores"),
        (np.array([[np.nan, 1.0]] * 3), "NaN or infinite"),
        ([["a", "b"]] * 3, "non-numeric"),
    ],
)
def test_malformed_answers_are_refused(answer: object, message: str) -> None:
    oracle = CallableOracle(lambda batch: answer)
    with pytest.raises(DataError, match=message):
        oracle.predict(np.zeros((3, 2)))


def test_the_number_of_classes_must_not_change() -> None:
    widths = iter([3, 4])
    oracle = CallableOracle(lambda batch: np.full((len(batch), next(widths)), 0.0), output="logits")
    oracle.predict(np.zeros((1, 2)))
    with pytest.raises(DataError, match="answered 4 classes, but earlier answers"):
        oracle.predict(np.zeros((1, 2)))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (np.zeros(3), "one row per example"),
        (np.array([[np.inf, 0.0]]), "NaN or infinite"),
        ([["x", "y"]], "numeric array"),
    ],
)
def test_malformed_inputs_are_refused(inputs: object, message: str) -> None:
    model = Recorder()
    oracle = CallableOracle(model)
    with pytest.raises(DataError, match=message):
        oracle.predict(inputs)  # type: ignore[arg-type]
    assert oracle.queries_used == 0 and model.batches == []


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"query_budget": 0}, "query_budget"),
        ({"batch_size": True}, "batch_size"),
        ({"timeout_s": -1.0}, "timeout_s"),
        ({"output": "labels"}, "output"),
    ],
)
def test_bad_parameters_are_refused_early(options: dict[str, object], parameter: str) -> None:
    with pytest.raises(ParameterError) as info:
        CallableOracle(Recorder(), **options)  # type: ignore[arg-type]
    assert info.value.details["parameter"] == parameter


def test_no_examples_no_query() -> None:
    oracle = CallableOracle(Recorder(), query_budget=1)
    assert oracle.predict(np.zeros((0, 3))).shape == (0, 0)
    assert oracle.queries_used == 0 and oracle.n_calls == 0

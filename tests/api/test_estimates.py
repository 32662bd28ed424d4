"""POST /v1/estimates/epsilon over real HTTP: the library's answer, auth, 422 problems
for bad bodies, and the size limits of the settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from live import LiveServer

import privaudit.api.routes.estimates  # noqa: F401  (registers the estimates:run scope)
from privaudit import simulation_generator
from privaudit.estimators import BayesianEpsilon, ClopperPearsonEpsilon, estimate_from_scores

PATH = "/v1/estimates/epsilon"
COUNTS = {"tp": 450, "fn": 50, "tn": 450, "fp": 50}


def assert_same(got: dict[str, object], expected: dict[str, object]) -> None:
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert got[key] == value, key


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with small estimate limits, so the limits can be reached cheaply."""
    live = LiveServer(
        data_dir=Path(tmp_path_factory.mktemp("estimates")),
        settings={"estimate_max_scores": 400, "estimate_max_thresholds": 5, "job_workers": 0},
    ).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(small: LiveServer) -> Iterator[httpx.Client]:
    with small.client(small.create_key("estimator", scopes=["estimates:run"])) as made:
        yield made


def test_counts_give_the_librarys_interval(client: httpx.Client) -> None:
    response = client.post(PATH, json={"counts": COUNTS, "delta": 1e-5})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = BayesianEpsilon(delta=1e-5).fit(**COUNTS).result_.to_dict()
    assert body["source"] == "counts" and body["threshold"] is None
    assert_same(body["estimate"], expected)
    exact = client.post(
        PATH,
        json={"counts": COUNTS, "method": "clopper-pearson", "sided": "lower", "alpha": 0.01},
    ).json()["estimate"]
    bound = ClopperPearsonEpsilon(alpha=0.01, sided="lower").fit(**COUNTS).interval_[0]
    assert exact["lower"] == pytest.approx(bound) and exact["upper"] is None
    assert exact["rigor"] == "rigorous"


def test_scores_give_a_lower_bound_with_the_threshold(client: httpx.Client) -> None:
    rng = simulation_generator(4)
    member = rng.random(400) < 0.5
    scores = rng.laplace(np.where(member, 1.0, 0.0), 0.5)
    payload = {
        "scores": scores.tolist(),
        "is_member": member.tolist(),
        "method": "clopper-pearson",
        "seed": 3,
        "threat_model": "black-box",
    }
    body = client.post(PATH, json=payload).json()
    expected = estimate_from_scores(
        scores, member, threat_model="black-box", rng=simulation_generator(3)
    )
    assert body["source"] == "scores"
    assert body["threshold"]["value"] == expected.threshold
    assert body["threshold"]["selection"] == "split"
    assert_same(body["estimate"], expected.clopper_pearson.to_dict())
    grid = {"threshold_selection": "bonferroni", "thresholds": [0.0, 0.25, 0.5, 0.75, 1.0]}
    bonferroni = client.post(PATH, json={**payload, **grid}).json()
    assert bonferroni["threshold"]["tried"] == 5
    assert bonferroni["threshold"]["value"] in grid["thresholds"]


def test_a_key_is_required_and_needs_the_scope(small: LiveServer) -> None:
    with small.client(None) as anonymous:
        response = anonymous.post(PATH, json={"counts": COUNTS})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    with small.client(small.create_key("reader", scopes=["jobs:read"])) as reader:
        response = reader.post(PATH, json={"counts": COUNTS})
    assert response.status_code == 403
    assert response.json()["scope"] == "estimates:run"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"counts": COUNTS, "scores": [1.0], "is_member": [True]},
        {"scores": [1.0, 2.0]},
        {"counts": {**COUNTS, "tp": -1}},
        {"counts": {**COUNTS, "tp": 1.5}},
        {"counts": {**COUNTS, "extra": 1}},
        {"counts": COUNTS, "alpha": 0},
        {"counts": COUNTS, "delta": 1},
        {"counts": COUNTS, "method": "magic"},
        {"scores": [1.0, 2.0], "is_member": [True, False], "method": "jeffreys"},
        {"scores": [1.0, 2.0, 3.0], "is_member": [True, False]},
        {"scores": [1.0, 2.0], "is_member": [True, True]},
        {"scores": [1.0, 2.0], "is_member": [True, False], "threshold_selection": "bonferroni"},
        {"scores": ["a", "b"], "is_member": [True, False]},
    ],
)
def test_bad_bodies_are_422_problems(client: httpx.Client, body: dict[str, object]) -> None:
    response = client.post(PATH, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 422


def test_limits_are_enforced(client: httpx.Client) -> None:
    too_many = client.post(
        PATH, json={"scores": [0.0] * 401, "is_member": [True, False] * 200 + [True]}
    )
    assert too_many.status_code == 422
    assert too_many.json()["code"] == "limit_exceeded"
    grid = {
        "scores": [0.0, 1.0] * 50,
        "is_member": [False, True] * 50,
        "threshold_selection": "bonferroni",
        "thresholds": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
    }
    response = client.post(PATH, json=grid)
    assert response.status_code == 422 and response.json()["code"] == "limit_exceeded"

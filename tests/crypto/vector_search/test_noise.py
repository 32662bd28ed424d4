"""Calibrated score noise: its guarantee and its effect on decrypted scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privaudit.crypto.vector_search import DataParty, Querier, ScoreNoise
from privaudit.errors import DataError, ParameterError
from privaudit.guarantees import Notion
from privaudit.randomness import simulation_generator


def test_for_rho_inverts_rho_per_query() -> None:
    for metric in ("cosine", "inner_product", "squared_l2"):
        noise = ScoreNoise.for_rho(0.1, metric=metric, vector_norm_bound=2.0)
        assert math.isclose(noise.rho_per_query(metric), 0.1)
    assert ScoreNoise(1.0, 2.0, 3.0).sensitivity("squared_l2") == 4 + 24


def test_guarantee_composes_over_queries() -> None:
    guarantee = ScoreNoise.for_rho(0.01, metric="cosine").guarantee("cosine", queries=7)
    assert guarantee.notion is Notion.ZCDP and math.isclose(guarantee.rho or 0, 0.07)
    assert "replace one vector" in guarantee.neighbouring


def test_bad_noise_parameters() -> None:
    with pytest.raises(ParameterError):
        ScoreNoise(sigma=0.0)
    with pytest.raises(ParameterError):
        ScoreNoise.for_rho(-1.0, metric="cosine")
    with pytest.raises(ParameterError, match="metric"):
        ScoreNoise(1.0).sensitivity("hamming")


def test_noise_reaches_the_decrypted_scores_and_the_party_accounts_for_it() -> None:
    # 2,000 scores with sigma = 0.05: the sample standard deviation lies within 10 % of
    # sigma except with probability about 1e-10 (chi-square with 1,999 d.o.f.).
    rng = simulation_generator(11)
    dimension = 8
    vectors = rng.normal(size=(2000, dimension))
    noise = ScoreNoise(sigma=0.05)
    party = DataParty(
        party_id="p", dimension=dimension, score_noise=noise, rng=simulation_generator(12)
    ).ingest(vectors)
    querier = Querier(dimension=dimension)
    query = rng.normal(size=dimension)
    answer = party.search(
        querier.encrypt_query(query), querier_id="alice", context=querier.public_context()
    )
    assert answer.noise_sigma == 0.05
    scores = querier.decrypt_scores(answer).scores
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    errors = scores - unit @ (query / np.linalg.norm(query))
    assert abs(float(np.std(errors)) / 0.05 - 1) < 0.1
    assert abs(float(np.mean(errors))) < 0.01
    guarantee = party.privacy_guarantee("alice")
    assert guarantee is not None and math.isclose(guarantee.rho or 0, 2**2 / (2 * 0.05**2))
    assert party.privacy_guarantee("bob") is None


def test_norm_bound_enforced_at_ingest() -> None:
    party = DataParty(
        party_id="p",
        dimension=2,
        metric="inner_product",
        score_noise=ScoreNoise(sigma=1.0, vector_norm_bound=1.0),
    )
    with pytest.raises(DataError, match="norm <= 1"):
        party.ingest([[3.0, 4.0]])
    party.ingest([[0.6, 0.8]])

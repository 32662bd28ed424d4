"""Empirical ε, synchronously: ``POST /v1/estimates/epsilon``.

The body holds either the confusion matrix of a membership game (``counts``) or the
attack's ``scores`` with ``is_member`` labels; the answer is the estimate of
:mod:`privaudit.estimators` with its labels (see docs/estimators.md). Nothing is
stored, so there is nothing to scope to the tenant beyond the key check; every size a
client controls is bounded by a setting.
"""

from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, model_validator

from privaudit.api.deps import SettingsDep, require_scope
from privaudit.api.keys import Principal, register_scope
from privaudit.api.routes._responses import problems
from privaudit.api.routing import JSONSchemaRoute
from privaudit.api.schemas import StrictRequest
from privaudit.errors import LimitExceededError, ParameterError
from privaudit.estimators import (
    BayesianEpsilon,
    ClopperPearsonEpsilon,
    EpsilonEstimate,
    JeffreysEpsilon,
    ThreatModel,
    estimate_from_scores,
)
from privaudit.estimators._counts import CountsEstimator
from privaudit.randomness import simulation_generator

register_scope("estimates:run", "compute empirical epsilon estimates (nothing is stored)")

router = APIRouter(
    prefix="/v1/estimates",
    tags=["estimates"],
    responses=problems(401, 403, 413, 422, 500),
    route_class=JSONSchemaRoute,
)

Runner = Annotated[Principal, Depends(require_scope("estimates:run"))]

MAX_COUNT = 2**53  # counts beyond this are not exact as JSON numbers
ESTIMATORS: dict[str, type[CountsEstimator]] = {
    "bayes": BayesianEpsilon,
    "clopper-pearson": ClopperPearsonEpsilon,
    "jeffreys": JeffreysEpsilon,
}
Method = Literal["bayes", "clopper-pearson", "jeffreys"]
ThreatModelName = Literal[tuple(t.value for t in ThreatModel)]  # type: ignore[valid-type]


class CountsIn(StrictRequest):
    """The confusion matrix of a membership game (members are positives)."""

    tp: int = Field(ge=0, le=MAX_COUNT, description="Members guessed member.")
    fn: int = Field(ge=0, le=MAX_COUNT, description="Members guessed non-member.")
    tn: int = Field(ge=0, le=MAX_COUNT, description="Non-members guessed non-member.")
    fp: int = Field(ge=0, le=MAX_COUNT, description="Non-members guessed member.")


class EpsilonRequest(StrictRequest):
    """Either ``counts``, or ``scores`` with ``is_member``."""

    counts: CountsIn | None = None
    scores: list[float] | None = Field(
        default=None, description="One score per challenge; higher means more likely a member."
    )
    is_member: list[bool] | None = Field(default=None, description="One label per score.")
    delta: float = Field(default=1e-5, ge=0, lt=1)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    method: Method = Field(
        default="bayes",
        description="bayes (joint-beta, heuristic), clopper-pearson (rigorous) or jeffreys "
        "(heuristic). With scores: bayes or clopper-pearson.",
    )
    sided: Literal["two", "lower"] = Field(
        default="two", description="Counts only: an interval, or a lower bound. Scores: lower."
    )
    threat_model: ThreatModelName = "unspecified"  # type: ignore[valid-type]
    guesses_per_model: int = Field(default=1, ge=1, le=MAX_COUNT)
    threshold_selection: Literal["split", "bonferroni"] = Field(
        default="split", description="Scores only: how the decision threshold is chosen."
    )
    thresholds: list[float] | None = Field(
        default=None, description="Scores only: the grid fixed in advance (bonferroni)."
    )
    seed: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="Scores only: seeds the random split."
    )

    @model_validator(mode="after")
    def _one_source(self) -> "EpsilonRequest":
        has_scores = self.scores is not None or self.is_member is not None
        if (self.counts is None) == (not has_scores):
            raise ValueError("give either counts, or scores with is_member (not both)")
        if has_scores and (self.scores is None or self.is_member is None):
            raise ValueError("scores and is_member go together")
        if has_scores and self.method == "jeffreys":
            raise ValueError("with scores, method must be bayes or clopper-pearson")
        if has_scores and self.sided != "lower" and "sided" in self.model_fields_set:
            raise ValueError("with scores the estimate is a lower bound: leave sided out")
        return self


class EpsilonEstimateOut(BaseModel):
    method: str
    lower: float | None = Field(description="null: infinite.")
    upper: float | None = Field(description="null: unbounded (one-sided or a perfect attack).")
    point: float | None
    alpha: float
    sided: str
    delta: float
    rigor: Literal["rigorous", "heuristic"]
    reason: str
    threat_model: str
    evidence: dict[str, int]


class ThresholdOut(BaseModel):
    value: float = Field(description="Guess member iff score >= value.")
    selection: str
    tried: int
    selection_size: int
    evaluation_size: int


class EpsilonResponse(BaseModel):
    source: Literal["counts", "scores"]
    estimate: EpsilonEstimateOut
    threshold: ThresholdOut | None = None


def _out(estimate: EpsilonEstimate) -> EpsilonEstimateOut:
    document: dict[str, Any] = estimate.to_dict()  # infinite bounds are None
    return EpsilonEstimateOut(**document)


@router.post("/epsilon", response_model=EpsilonResponse)
def estimate_epsilon(
    body: EpsilonRequest, principal: Runner, settings: SettingsDep
) -> EpsilonResponse:
    """An ε interval from counts, or a lower bound from scores (threshold chosen honestly)."""
    common = {"delta": body.delta, "alpha": body.alpha, "threat_model": body.threat_model}
    if body.counts is not None:
        estimator = ESTIMATORS[body.method](
            sided=body.sided, guesses_per_model=body.guesses_per_model, **common
        )
        estimator.fit(**body.counts.model_dump())
        return EpsilonResponse(source="counts", estimate=_out(estimator.result_))
    assert body.scores is not None and body.is_member is not None
    if len(body.scores) > settings.estimate_max_scores:
        raise LimitExceededError(
            f"at most {settings.estimate_max_scores} scores per request; got {len(body.scores)}",
            limit=settings.estimate_max_scores,
        )
    if body.thresholds is not None and len(body.thresholds) > settings.estimate_max_thresholds:
        raise LimitExceededError(
            f"at most {settings.estimate_max_thresholds} thresholds; got {len(body.thresholds)}",
            limit=settings.estimate_max_thresholds,
        )
    if body.guesses_per_model != 1:
        raise ParameterError(
            "guesses_per_model applies to counts only", parameter="guesses_per_model"
        )
    result = estimate_from_scores(
        np.asarray(body.scores, dtype=float),
        np.asarray(body.is_member, dtype=bool),
        threshold_selection=body.threshold_selection,
        thresholds=body.thresholds,
        rng=simulation_generator(body.seed),
        **common,
    )
    chosen = result.clopper_pearson if body.method == "clopper-pearson" else result.bayesian
    return EpsilonResponse(
        source="scores",
        estimate=_out(chosen),
        threshold=ThresholdOut(
            value=result.threshold,
            selection=result.threshold_selection,
            tried=result.thresholds_tried,
            selection_size=result.selection_size,
            evaluation_size=result.evaluation_size,
        ),
    )

"""Empirical privacy estimators: ε from the outcomes of attacks, with honest labels.

Every estimator is configured by keyword-only parameters, ``fit`` returns ``self``,
and fitted state ends in ``_``. Each result is an :class:`EpsilonEstimate` that says
whether it is ``rigorous`` or ``heuristic`` (:class:`Rigor`), why, and under which
:class:`ThreatModel`. See docs/estimators.md.

* :func:`epsilon_from_rates`: the ε one (FPR, FNR) pair exhibits.
* :class:`BayesianEpsilon`: joint-beta posterior credible interval (heuristic).
* :class:`ClopperPearsonEpsilon`: exact binomial confidence rectangle (rigorous).
* :class:`JeffreysEpsilon`: Jeffreys confidence rectangle (heuristic).
* :class:`OneRunAudit`: one training run with canaries (rigorous).
* :func:`estimate_from_scores`: attack scores, with the threshold chosen honestly.
* :func:`audit_mechanism`: run a mechanism on two neighbouring inputs and bound its ε.
"""

from privaudit.estimators._audit import MechanismAudit, audit_mechanism
from privaudit.estimators._bayes import BayesianEpsilon, PosteriorGrid
from privaudit.estimators._frequentist import ClopperPearsonEpsilon, JeffreysEpsilon
from privaudit.estimators._one_run import OneRunAudit, one_run_p_value
from privaudit.estimators._rates import epsilon_from_rates
from privaudit.estimators._result import EpsilonEstimate, Rigor, ThreatModel
from privaudit.estimators._scores import ScoreEstimate, estimate_from_scores

__all__ = [
    "BayesianEpsilon",
    "ClopperPearsonEpsilon",
    "EpsilonEstimate",
    "JeffreysEpsilon",
    "MechanismAudit",
    "OneRunAudit",
    "PosteriorGrid",
    "Rigor",
    "ScoreEstimate",
    "ThreatModel",
    "audit_mechanism",
    "epsilon_from_rates",
    "estimate_from_scores",
    "one_run_p_value",
]

"""Local differential privacy: frequency oracles on one engine.

Every protocol is a :class:`FrequencyOracle` with the same keyword-only constructor
``Proto(*, k, epsilon, ...)`` and the same methods: ``randomize`` (vectorised over
users, secure randomness by default), ``estimate`` (unbiased; optional biased
post-processing), ``aggregator`` (streaming, mergeable), ``variance`` (closed form),
``bits_per_report``, ``guarantee`` and ``reconstruction_success``.
"""

from privaudit.mechanisms.ldp._engine import (
    Aggregator,
    FrequencyOracle,
    Reports,
    project_to_simplex,
)
from privaudit.mechanisms.ldp._grr import GRR
from privaudit.mechanisms.ldp._hadamard import HadamardResponse
from privaudit.mechanisms.ldp._hashing import BLH, OLH, LocalHashing
from privaudit.mechanisms.ldp._longitudinal import (
    ALLOMFREE,
    LGRR,
    LOSUE,
    LOUE,
    LSUE,
    AllomfreeMemo,
    LongitudinalProtocol,
    Memo,
)
from privaudit.mechanisms.ldp._modular import ModularSubsetSelection, ModuliChoice, choose_moduli
from privaudit.mechanisms.ldp._multidim import (
    RSFD,
    SMP,
    SPL,
    MultiAggregator,
    MultidimensionalProtocol,
    MultiReports,
)
from privaudit.mechanisms.ldp._projective import ProjectiveGeometryResponse
from privaudit.mechanisms.ldp._subset import SubsetSelection, subset_parameters
from privaudit.mechanisms.ldp._unary import OUE, SUE, UnaryEncoding

__all__ = [
    "ALLOMFREE",
    "BLH",
    "GRR",
    "LGRR",
    "LOSUE",
    "LOUE",
    "LSUE",
    "OLH",
    "OUE",
    "RSFD",
    "SMP",
    "SPL",
    "SUE",
    "Aggregator",
    "AllomfreeMemo",
    "FrequencyOracle",
    "HadamardResponse",
    "LocalHashing",
    "LongitudinalProtocol",
    "Memo",
    "ModularSubsetSelection",
    "ModuliChoice",
    "MultiAggregator",
    "MultiReports",
    "MultidimensionalProtocol",
    "ProjectiveGeometryResponse",
    "Reports",
    "SubsetSelection",
    "UnaryEncoding",
    "choose_moduli",
    "project_to_simplex",
    "subset_parameters",
]

"""privaudit: privacy and security analysis as a library, a CLI and a REST service.

The kernel (this package) holds what every capability shares: the error hierarchy
(:mod:`privaudit.errors`), randomness (:mod:`privaudit.randomness`), registries
(:mod:`privaudit.registry`) and the :class:`PrivacyGuarantee` value type. The
capabilities are subpackages: :mod:`privaudit.mechanisms`, :mod:`privaudit.estimators`,
:mod:`privaudit.attacks`, :mod:`privaudit.crypto`; the REST service is
:mod:`privaudit.api`.
"""

from privaudit.errors import PrivauditError
from privaudit.guarantees import Notion, PrivacyGuarantee
from privaudit.randomness import secure_generator, simulation_generator

__version__ = "0.1.0"

__all__ = [
    "Notion",
    "PrivacyGuarantee",
    "PrivauditError",
    "__version__",
    "secure_generator",
    "simulation_generator",
]

"""Where privaudit's randomness comes from.

There are exactly two kinds of random source, and every function that draws random
numbers says in its signature which one it uses:

* **Release randomness** (:func:`secure_generator`): anything a released value depends
  on (the noise of a mechanism, a user's randomized report). It is a
  :class:`numpy.random.Generator` driven by ChaCha20 [Ber08]_ (20 rounds, via
  ``randomgen``) and keyed with 256 bits from the operating system's CSPRNG, so an
  observer of past outputs cannot predict future ones. It cannot be seeded.
* **Simulation randomness** (:func:`simulation_generator`): experiments, audits,
  benchmarks and tests, where reproducibility matters more than secrecy. It is a
  seeded PCG64 ``Generator``.

Mechanisms take ``rng: numpy.random.Generator | None = None``; ``None`` means release
randomness. Passing a seeded generator is an explicit choice to simulate, and
:func:`is_secure` tells the two apart.

Note that a secure *source* is necessary but not sufficient: samplers built on it
must also avoid floating-point artefacts [Mir12]_; mechanism docstrings say how.

References
----------
.. [Ber08] D. J. Bernstein, "ChaCha, a variant of Salsa20", SASC 2008.
.. [Mir12] I. Mironov, "On significance of the least significant bits for
   differential privacy", CCS 2012.

Examples
--------
>>> from privaudit.randomness import secure_generator, simulation_generator, is_secure
>>> is_secure(secure_generator())
True
>>> rng = simulation_generator(7)
>>> is_secure(rng), float(rng.random()) == float(simulation_generator(7).random())
(False, True)
"""

from __future__ import annotations

import secrets

import numpy as np

from privaudit.errors import MissingDependencyError, ParameterError

__all__ = ["RandomSource", "is_secure", "resolve_rng", "secure_generator", "simulation_generator"]

RandomSource = np.random.Generator | None
"""What a mechanism accepts: ``None`` for release randomness, or a generator."""

_CHACHA_ROUNDS = 20


def secure_generator() -> np.random.Generator:
    """Return a fresh cryptographically secure generator (ChaCha20, OS-entropy key).

    Returns
    -------
    numpy.random.Generator
        A generator with the full NumPy ``Generator`` API whose bit stream comes from
        ChaCha20 keyed by :func:`secrets.randbits`.
    """
    try:
        from randomgen import ChaCha
    except ImportError as error:  # pragma: no cover - a core dependency
        raise MissingDependencyError(
            "secure randomness needs 'randomgen'; run: pip install randomgen"
        ) from error
    key = secrets.randbits(256)
    return np.random.Generator(ChaCha(key=key, counter=0, rounds=_CHACHA_ROUNDS))


def simulation_generator(seed: int | np.random.SeedSequence | None) -> np.random.Generator:
    """Return a seeded, reproducible generator for simulations, audits and tests.

    Parameters
    ----------
    seed
        A non-negative integer or a :class:`numpy.random.SeedSequence`. ``None`` draws a
        fresh seed (still a *simulation* generator, never used for releases).

    Raises
    ------
    ParameterError
        If ``seed`` is a negative integer or not an integer.
    """
    if isinstance(seed, bool) or not (
        seed is None or isinstance(seed, int | np.integer | np.random.SeedSequence)
    ):
        raise ParameterError(
            f"seed must be a non-negative int, a numpy SeedSequence or None; got {seed!r}"
        )
    if isinstance(seed, int | np.integer) and seed < 0:
        raise ParameterError(f"seed must be non-negative; got {seed}")
    return np.random.Generator(np.random.PCG64(seed))


def is_secure(rng: np.random.Generator) -> bool:
    """Return whether ``rng`` is driven by the ChaCha20 release source."""
    bit_generator = rng.bit_generator
    if type(bit_generator).__name__ != "ChaCha":
        return False
    return int(bit_generator.state["state"]["rounds"]) >= _CHACHA_ROUNDS


def resolve_rng(rng: RandomSource) -> np.random.Generator:
    """Map a mechanism's ``rng`` argument to a generator: ``None`` means secure.

    Raises
    ------
    ParameterError
        If ``rng`` is neither ``None`` nor a :class:`numpy.random.Generator` (a bare
        integer seed is refused on purpose: seeding must be an explicit choice made
        with :func:`simulation_generator`).
    """
    if rng is None:
        return secure_generator()
    if not isinstance(rng, np.random.Generator):
        raise ParameterError(
            "rng must be None (secure release randomness) or a numpy.random.Generator; "
            f"got {type(rng).__name__}. For a reproducible simulation pass "
            "privaudit.randomness.simulation_generator(seed)."
        )
    return rng

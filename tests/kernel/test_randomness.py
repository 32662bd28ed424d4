"""Release randomness is ChaCha20 from OS entropy; simulation randomness is seeded."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from privaudit.errors import ParameterError
from privaudit.randomness import is_secure, resolve_rng, secure_generator, simulation_generator


def test_secure_generator_is_chacha20_with_20_rounds() -> None:
    rng = secure_generator()
    assert type(rng.bit_generator).__name__ == "ChaCha"
    assert rng.bit_generator.state["state"]["rounds"] == 20
    assert is_secure(rng)


def test_two_secure_generators_never_repeat_each_other() -> None:
    # Two independent 256-bit keys: equal first draws have probability 2^-64 * 1000.
    first = secure_generator().integers(0, 2**63, size=1000)
    second = secure_generator().integers(0, 2**63, size=1000)
    assert not np.array_equal(first, second)
    assert len(set(first.tolist()) & set(second.tolist())) == 0


def test_secure_stream_is_uniform() -> None:
    # Kolmogorov-Smirnov on 200k uniforms from an unseeded source: a false failure
    # happens with probability 1e-6 (the threshold), independent of the code.
    sample = secure_generator().random(200_000)
    assert stats.kstest(sample, "uniform").pvalue > 1e-6


def test_secure_generator_cannot_be_weakened_to_fewer_rounds() -> None:
    from randomgen import ChaCha

    weak = np.random.Generator(ChaCha(seed=1, rounds=8))
    assert not is_secure(weak)
    assert not is_secure(np.random.default_rng(1))


def test_simulation_generator_reproduces_and_is_not_secure() -> None:
    assert simulation_generator(3).random(5).tolist() == simulation_generator(3).random(5).tolist()
    assert not is_secure(simulation_generator(3))


@pytest.mark.parametrize("seed", [-1, 1.5, "7", True])
def test_simulation_generator_refuses_bad_seeds(seed: object) -> None:
    with pytest.raises(ParameterError, match="seed"):
        simulation_generator(seed)  # type: ignore[arg-type]


def test_resolve_rng_defaults_to_secure_and_refuses_bare_seeds() -> None:
    assert is_secure(resolve_rng(None))
    seeded = simulation_generator(1)
    assert resolve_rng(seeded) is seeded
    with pytest.raises(ParameterError, match="simulation_generator"):
        resolve_rng(42)  # type: ignore[arg-type]

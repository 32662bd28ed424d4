"""CKKS parameters: 128-bit security and depth one, checked at start-up."""

from __future__ import annotations

import pytest

from privaudit.crypto.vector_search import (
    SearchParameters,
    bsgs_steps,
    fold_window,
    galois_elements,
)
from privaudit.crypto.vector_search._kernel import query_period
from privaudit.errors import ParameterError


def test_defaults_are_128_bit_depth_one() -> None:
    params = SearchParameters()
    assert params.poly_modulus_degree == 8192 and params.coeff_modulus_bits == (60, 40, 60)
    assert params.total_modulus_bits <= params.max_modulus_bits_128 == 218
    context = params.seal_context()
    assert context.parameters_set()
    # One rescale from the first data level reaches the last one: depth exactly one.
    assert context.first_context_data().next_context_data().parms_id() == (context.last_parms_id())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"poly_modulus_degree": 4096}, "128-bit security"),  # 160 > 109 bits
        ({"coeff_modulus_bits": (60, 40, 40, 60)}, "three prime sizes"),
        ({"coeff_modulus_bits": (45, 40, 45), "scale_bits": 40}, "at least 10 bits"),
        ({"coeff_modulus_bits": (60, 30, 60)}, "middle prime"),
        ({"poly_modulus_degree": 8000}, "one of"),
        ({"coeff_modulus_bits": (60, 40, 61)}, "three prime sizes"),
    ],
)
def test_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        SearchParameters(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dimension", "period", "steps"),
    [
        (1, 1, (1, 1)),
        (16, 8, (2, 4)),
        (384, 192, (16, 12)),
        (768, 384, (16, 24)),
        (1000, 512, (16, 32)),
    ],
)
def test_query_period_and_bsgs_steps(dimension: int, period: int, steps: tuple[int, int]) -> None:
    # Two coordinates per slot; the period is ⌈d/2⌉ or the next power of two, whichever
    # costs fewer products per vector (500 / 3597 > 512 / 4096, 192 / 3905 < 256 / 4096).
    assert query_period(dimension) == period
    assert bsgs_steps(dimension) == steps


@pytest.mark.parametrize(
    ("dimension", "window"), [(6, 2), (12, 4), (16, None), (100, None), (384, 128), (768, 256)]
)
def test_fold_window(dimension: int, window: int | None) -> None:
    # 2048 mod p shifts the second half: 2048 mod 192 = 128, so windows of 128 at
    # offsets 0 and 128 cover all 192 pairs; 2048 mod 8 = 0 shifts nothing; for p = 50
    # (2048 mod 50 = 48) the window of 48 saves too little to be worth a rotation.
    assert fold_window(dimension) == window


def test_galois_elements_are_rotation_one_baby_step_and_conjugation() -> None:
    params = SearchParameters()
    two_n = 2 * params.poly_modulus_degree
    assert galois_elements(384, params) == [3, pow(3, 16, two_n), pow(3, 2048, two_n), two_n - 1]
    assert galois_elements(16, params) == [3, pow(3, 2, two_n), two_n - 1]  # 8 | 2048: no fold
    assert galois_elements(1, params) == [two_n - 1]


def test_primes_seal_cannot_find_are_a_parameter_error() -> None:
    # Too few 20-bit primes are 1 mod 2N at N = 32768; SEAL raises a bare RuntimeError.
    with pytest.raises(ParameterError, match="cannot build primes"):
        SearchParameters(poly_modulus_degree=32768, coeff_modulus_bits=(40, 20, 20), scale_bits=20)

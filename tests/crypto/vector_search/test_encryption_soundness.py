"""FRAG's multiplicative caching leaks plaintext ratios; our fresh encryptions do not.

Multiplicative caching (MC) as in the authors' "Nemesis MOD" OpenFHE example, which
FRAG's "multiplicative caching" most plausibly is [Zha24]_: one cached ``Enc(1)``
``= (b, a)`` per key; a new vector ``x`` is encrypted as ``encode(x) ⊙ Enc(1)`` plus a
discrete Gaussian ``r`` of σ = 0.1 (``c0 += r``, ``c1 -= r``). In the NTT domain
``c1 = m · a - r`` coefficient-wise, and with σ = 0.1 the rounding makes ``r = 0``:
then ``c1(x2) · c1(x1)^(-1) = m2 · m1^(-1)``, so one known pair ``(x1, ct1)`` recovers
any other plaintext exactly, without the key.

.. [Zha24] D. Zhao, "FRAG", arXiv:2410.13272, 2024.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from privaudit.crypto.vector_search import Querier, SearchParameters
from privaudit.crypto.vector_search._kernel import pack_query
from privaudit.crypto.vector_search._seal import load_into, sealapi
from privaudit.randomness import simulation_generator

DIMENSION = 16
PARAMS = SearchParameters()


def primes(context: Any) -> list[int]:
    return [modulus.value() for modulus in context.first_context_data().parms().coeff_modulus()]


def c1(ciphertext: Any) -> list[int]:
    """The second polynomial (NTT form, all RNS limbs) of a two-polynomial ciphertext."""
    values = ciphertext.dyn_array()
    half = values.size() // 2
    return [values[half + i] for i in range(half)]


def plaintext_ntt(plaintext: Any) -> list[int]:
    return [plaintext[i] for i in range(plaintext.coeff_count())]


def encode(encoder: Any, context: Any, vector: np.ndarray) -> Any:
    plaintext = sealapi().Plaintext()
    encoder.encode(
        pack_query(vector, PARAMS).tolist(),
        context.first_parms_id(),
        PARAMS.scale,
        plaintext,
    )
    return plaintext


def multiplicative_caching(
    cached_one: Any, plaintext: Any, evaluator: Any, rng: np.random.Generator
) -> Any:
    """FRAG/Nemesis MC: ``plaintext ⊙ Enc(1)`` "randomised" by a σ = 0.1 Gaussian."""
    ciphertext = sealapi().Ciphertext()
    evaluator.multiply_plain(cached_one, plaintext, ciphertext)
    noise = np.rint(rng.normal(0.0, 0.1, size=PARAMS.poly_modulus_degree * 2))
    # The published randomisation: as good as no randomisation at this sigma.
    assert not noise.any()
    return ciphertext


def recover(
    known_plain: list[int], known_c1: list[int], target_c1: list[int], moduli: list[int]
) -> list[int]:
    """The key-free attack: m2 = c1(ct2) · m1 / c1(ct1), coefficient-wise mod each prime."""
    degree = PARAMS.poly_modulus_degree
    out = []
    for index, (m1, a1, a2) in enumerate(zip(known_plain, known_c1, target_c1, strict=True)):
        prime = moduli[index // degree]
        out.append(a2 * m1 * pow(a1, -1, prime) % prime)
    return out


def setup() -> tuple[Any, Any, Any, Any, Any, list[int]]:
    api = sealapi()
    context = PARAMS.seal_context()
    keygen = api.KeyGenerator(context)
    public_key = api.PublicKey()
    keygen.create_public_key(public_key)
    encryptor = api.Encryptor(context, public_key)
    return (
        context,
        api.CKKSEncoder(context),
        api.Evaluator(context),
        encryptor,
        keygen,
        primes(context),
    )


def cached_encryption_of_one(encryptor: Any, encoder: Any, context: Any) -> Any:
    """MC's one cached ciphertext per key: a public-key encryption of all ones."""
    cached_one = sealapi().Ciphertext()
    encryptor.encrypt(encode(encoder, context, np.ones(DIMENSION)), cached_one)
    return cached_one


def test_multiplicative_caching_reveals_plaintexts_from_one_known_pair() -> None:
    context, encoder, evaluator, encryptor, _, moduli = setup()
    rng = simulation_generator(0)
    cached_one = cached_encryption_of_one(encryptor, encoder, context)
    known, secret = rng.normal(size=DIMENSION), rng.normal(size=DIMENSION)
    known_plain = encode(encoder, context, known)
    secret_plain = encode(encoder, context, secret)
    known_ct = multiplicative_caching(cached_one, known_plain, evaluator, rng)
    secret_ct = multiplicative_caching(cached_one, secret_plain, evaluator, rng)
    # Ratio leak: c1(ct_secret) / c1(ct_known) == m_secret / m_known, so the attacker
    # gets the secret plaintext polynomial exactly, and with it the vector.
    recovered = recover(plaintext_ntt(known_plain), c1(known_ct), c1(secret_ct), moduli)
    assert recovered == plaintext_ntt(secret_plain)
    # And two MC encryptions of one vector are identical (deterministic encryption).
    again = multiplicative_caching(cached_one, secret_plain, evaluator, rng)
    assert c1(again) == c1(secret_ct)


def test_rerandomising_with_a_fresh_encryption_of_zero_stops_the_attack() -> None:
    context, encoder, evaluator, encryptor, _, moduli = setup()
    rng = simulation_generator(1)
    cached_one = cached_encryption_of_one(encryptor, encoder, context)
    known, secret = rng.normal(size=DIMENSION), rng.normal(size=DIMENSION)
    known_plain, secret_plain = (encode(encoder, context, v) for v in (known, secret))

    def rerandomised(plaintext: Any) -> Any:
        ciphertext = multiplicative_caching(cached_one, plaintext, evaluator, rng)
        zero = sealapi().Ciphertext()
        encryptor.encrypt_zero(ciphertext.parms_id(), zero)
        # Bring the fresh Enc(0) to the product's scale Δ² (it still encrypts 0).
        ones = sealapi().Plaintext()
        encoder.encode(1.0, zero.parms_id(), ciphertext.scale / zero.scale, ones)
        scaled_zero = sealapi().Ciphertext()
        evaluator.multiply_plain(zero, ones, scaled_zero)
        evaluator.add_inplace(ciphertext, scaled_zero)
        return ciphertext

    recovered = recover(
        plaintext_ntt(known_plain),
        c1(rerandomised(known_plain)),
        c1(rerandomised(secret_plain)),
        moduli,
    )
    matches = np.mean(
        np.asarray(recovered, dtype=object) == np.asarray(plaintext_ntt(secret_plain), dtype=object)
    )
    assert matches < 0.01  # a random guess matches about 2^-40 of the coefficients


def test_querier_fresh_encryptions_resist_the_attack() -> None:
    rng = simulation_generator(2)
    querier = Querier(dimension=DIMENSION, metric="inner_product")
    context = querier._context
    known, secret = rng.normal(size=DIMENSION), rng.normal(size=DIMENSION)

    def loaded(vector: np.ndarray) -> Any:
        ciphertext = sealapi().Ciphertext()
        load_into(
            partial(ciphertext.load, context),
            querier.encrypt_query(vector).ciphertext,
            what="q",
            max_bytes=2**20,
        )
        return ciphertext

    known_plain = encode(querier._encoder, context, known)
    secret_plain = encode(querier._encoder, context, secret)
    recovered = recover(
        plaintext_ntt(known_plain), c1(loaded(known)), c1(loaded(secret)), primes(context)
    )
    matches = np.mean(
        np.asarray(recovered, dtype=object) == np.asarray(plaintext_ntt(secret_plain), dtype=object)
    )
    assert matches < 0.01
    # Two encryptions of the same vector share no c1 coefficient pattern.
    first, second = c1(loaded(secret)), c1(loaded(secret))
    assert np.mean(np.asarray(first, dtype=object) == np.asarray(second, dtype=object)) < 0.01

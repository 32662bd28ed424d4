"""CKKS parameters of encrypted vector search, and their 128-bit security check.

References
----------
.. [CKKS17] J. H. Cheon, A. Kim, M. Kim and Y. Song, "Homomorphic Encryption for
   Arithmetic of Approximate Numbers", ASIACRYPT 2017.
.. [HES18] M. Albrecht et al., "Homomorphic Encryption Security Standard",
   HomomorphicEncryption.org, 2018 (Table 1: the largest ``log q`` for 128-bit security
   with a ternary secret: 109, 218 and 438 bits for N = 4096, 8192 and 16384).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from privaudit.crypto.vector_search._seal import SEAL_FAILURES, sealapi
from privaudit.errors import ParameterError

__all__ = ["SearchParameters"]

# One plaintext x ciphertext product and one rescale: a data prime for the result, one
# scale prime consumed by the rescale, and SEAL's special prime for key switching.
_DEPTH_ONE_PRIMES = 3
# Decrypted values must stay below 2^(first prime - scale - 1) in magnitude.
_MIN_HEADROOM_BITS = 10


@dataclass(frozen=True, slots=True)
class SearchParameters:
    """CKKS parameters shared by a querier and the parties it queries.

    The defaults are N = 8192 (4096 slots) and the modulus chain [60, 40, 60] bits with
    scale 2^40: 160 bits of ``log q``, below the 218 bits that the HE security standard
    [HES18]_ allows for 128-bit security at N = 8192, and exactly one level for the one
    plaintext x ciphertext product of the kernel [CKKS17]_. The first (60-bit) prime
    leaves 2^19 of headroom above the 2^40 scale for the decrypted scores; the 40-bit
    middle prime is consumed by the single rescale; the last 60-bit prime is SEAL's
    special prime for key switching (rotations).

    Parameters
    ----------
    poly_modulus_degree
        The ring dimension N (a power of two, 4096 to 32768); slots = N / 2.
    coeff_modulus_bits
        Bit sizes of the three primes of the chain: data, scale, special.
    scale_bits
        log2 of the CKKS scale.

    Raises
    ------
    ParameterError
        From :meth:`check` (called on construction) when the parameters are not at
        128-bit security, not depth one, or leave too little precision.

    Examples
    --------
    >>> params = SearchParameters()
    >>> params.slots, params.total_modulus_bits, params.max_modulus_bits_128
    (4096, 160, 218)
    """

    poly_modulus_degree: int = 8192
    coeff_modulus_bits: tuple[int, ...] = (60, 40, 60)
    scale_bits: int = 40

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff_modulus_bits", tuple(self.coeff_modulus_bits))
        self.check()

    @property
    def slots(self) -> int:
        """CKKS slots per ciphertext (N / 2)."""
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        """The CKKS scale 2^scale_bits."""
        return float(2**self.scale_bits)

    @property
    def total_modulus_bits(self) -> int:
        """log2 of the whole coefficient modulus, special prime included."""
        return sum(self.coeff_modulus_bits)

    @property
    def max_modulus_bits_128(self) -> int:
        """The largest ``log q`` at 128-bit classical security for this N (SEAL's table)."""
        degree = self.poly_modulus_degree
        return int(sealapi().CoeffModulus.MaxBitCount(degree, sealapi().SEC_LEVEL_TYPE.TC128))

    def check(self) -> None:
        """Refuse parameters below 128-bit security, of the wrong depth, or imprecise."""
        degree = self.poly_modulus_degree
        if isinstance(degree, bool) or not isinstance(degree, int) or degree not in _DEGREES:
            raise ParameterError(
                f"poly_modulus_degree must be one of {sorted(_DEGREES)}; got {degree!r} "
                "(8192 is the default and fits vectors of up to 8192 dimensions)"
            )
        bits = self.coeff_modulus_bits
        if len(bits) != _DEPTH_ONE_PRIMES or not all(
            isinstance(b, int) and not isinstance(b, bool) and 20 <= b <= 60 for b in bits
        ):
            raise ParameterError(
                f"coeff_modulus_bits must be three prime sizes of 20-60 bits (data, scale, "
                f"special) for the one plaintext x ciphertext product; got {bits!r}, "
                "e.g. (60, 40, 60)"
            )
        if self.total_modulus_bits > self.max_modulus_bits_128:
            raise ParameterError(
                f"coeff_modulus_bits sum to {self.total_modulus_bits} bits; 128-bit security "
                f"at N = {degree} allows at most {self.max_modulus_bits_128}: use smaller "
                "primes or a larger poly_modulus_degree"
            )
        if bits[1] != self.scale_bits:
            raise ParameterError(
                f"the middle prime ({bits[1]} bits) must equal scale_bits ({self.scale_bits}) "
                "so that one rescale brings the product back to the scale"
            )
        if bits[0] - self.scale_bits < _MIN_HEADROOM_BITS:
            raise ParameterError(
                f"the first prime ({bits[0]} bits) must exceed scale_bits ({self.scale_bits}) "
                f"by at least {_MIN_HEADROOM_BITS} bits, or large scores wrap around"
            )
        context = self.seal_context()
        if not context.parameters_set():
            raise ParameterError(
                f"SEAL refuses these parameters at 128-bit security: "
                f"{context.parameters_error_message()}"
            )

    def encryption_parameters(self) -> Any:
        """SEAL ``EncryptionParameters`` (CKKS) for these settings."""
        api = sealapi()
        parms = api.EncryptionParameters(api.SCHEME_TYPE.CKKS)
        parms.set_poly_modulus_degree(self.poly_modulus_degree)
        try:
            primes = api.CoeffModulus.Create(
                self.poly_modulus_degree, list(self.coeff_modulus_bits)
            )
        except SEAL_FAILURES as error:  # e.g. too few primes of a small size for a large N
            raise ParameterError(
                f"SEAL cannot build primes of {list(self.coeff_modulus_bits)} bits for "
                f"N = {self.poly_modulus_degree} ({error}); use larger primes"
            ) from None
        parms.set_coeff_modulus(primes)
        return parms

    def seal_context(self, parms: Any | None = None) -> Any:
        """A SEAL context that enforces 128-bit security (``sec_level_type.tc128``)."""
        api = sealapi()
        chosen = self.encryption_parameters() if parms is None else parms
        return api.SEALContext(chosen, True, api.SEC_LEVEL_TYPE.TC128)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for reports and the REST API)."""
        return {
            "scheme": "ckks",
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_modulus_bits": list(self.coeff_modulus_bits),
            "scale_bits": self.scale_bits,
            "security_bits": 128,
        }

    @classmethod
    def from_dict(cls, described: Any) -> SearchParameters:
        """The parameters :meth:`to_dict` describes (from a context header or a database).

        Raises
        ------
        ParameterError
            If ``described`` is not exactly such a description, or the parameters it
            describes fail :meth:`check`.

        Examples
        --------
        >>> SearchParameters.from_dict(SearchParameters().to_dict()) == SearchParameters()
        True
        """
        expected = set(cls().to_dict())
        if not isinstance(described, dict) or set(described) != expected:
            raise ParameterError(
                f"CKKS parameters must be described by exactly the fields {sorted(expected)}; "
                f"got {_short(described)}"
            )
        if described["scheme"] != "ckks" or described["security_bits"] != 128:
            raise ParameterError(
                "only CKKS at 128-bit security is supported; got scheme "
                f"{_short(described['scheme'])} at {_short(described['security_bits'])} bits"
            )
        bits, scale_bits = described["coeff_modulus_bits"], described["scale_bits"]
        if (
            not isinstance(bits, list)
            or len(bits) != _DEPTH_ONE_PRIMES
            or isinstance(scale_bits, bool)
            or not isinstance(scale_bits, int)
        ):
            raise ParameterError(
                "coeff_modulus_bits must be a list of three ints and scale_bits an int; got "
                f"{_short(bits)} and {_short(scale_bits)}"
            )
        return cls(
            poly_modulus_degree=described["poly_modulus_degree"],
            coeff_modulus_bits=tuple(bits),
            scale_bits=scale_bits,
        )


def _short(value: Any) -> str:
    """``repr`` cut to 100 characters: descriptions may come from untrusted headers."""
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "..."


_DEGREES = frozenset({4096, 8192, 16384, 32768})

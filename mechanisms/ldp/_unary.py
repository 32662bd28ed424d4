"""Unary encoding: symmetric (basic one-time RAPPOR) and optimized (OUE)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from privaudit.errors import ParameterError
from privaudit.mechanisms.ldp._engine import (
    Field,
    FloatArray,
    FrequencyOracle,
    IntArray,
    Reports,
    check_prior,
)
from privaudit.mechanisms.ldp._sampling import bernoulli, bernoulli_words
from privaudit.registry import mechanisms

__all__ = ["OUE", "SUE", "UnaryEncoding"]

_CHUNK_WORDS = 1 << 22  # random words drawn per call (32 MiB)
_COUNT_WORDS = 1 << 19  # report words counted per block (4 MiB; measured best)
_FOLD = 15  # rows folded into 4 bit planes by carry-save adders
_UNPACK_BELOW = 2048  # fewer rows than this: unpack and sum instead (faster there)

_M55 = np.uint64(0x5555_5555_5555_5555)
_M33 = np.uint64(0x3333_3333_3333_3333)
_M0F = np.uint64(0x0F0F_0F0F_0F0F_0F0F)
_ONE, _TWO, _FOUR = np.uint64(1), np.uint64(2), np.uint64(4)


def column_bit_counts(packed: npt.NDArray[np.uint8], k: int) -> IntArray:
    """How many rows of bit-packed reports (``numpy.packbits`` order) have each of the
    first ``k`` bits set, exactly, without unpacking them.

    On 64-bit words: carry-save adders (bitwise full adders) first fold each 15 rows
    into the four binary digits of their column sums; each digit plane is then counted
    by SWAR "sideways addition" [Knu09]_: its bits at even and odd offsets are masked
    into 2-bit lanes and summed over 3 rows (each lane ≤ 3), split into 4-bit lanes
    summed over 5 groups (≤ 15), then into 8-bit lanes summed over 17 groups (≤ 255),
    and only then widened to int64 and weighted by the digit's ``2^j``. No lane can
    overflow, so the counts are exact. Streams over the reports in cache-sized blocks
    (bounded memory).

    .. [Knu09] D. E. Knuth, *The Art of Computer Programming* 4A, §7.1.3 ("sideways
       addition"), 2009.
    """
    n, n_bytes = packed.shape
    if n < _UNPACK_BELOW:
        # Too few rows to fill one carry-save group: padding would cost more than
        # unpacking (measured: 1,250 rows of 677 bits, 0.96 ms unpacked vs 2.1 ms).
        unpacked = np.unpackbits(packed, axis=1, count=k)
        counts: IntArray = unpacked.sum(axis=0, dtype=np.int64)
        return counts
    n_words = (n_bytes + 7) // 8
    totals = np.zeros((8, 8 * n_words), dtype=np.int64)  # [bit of byte (LSB = 0), byte]
    group = _FOLD * 255  # rows: _FOLD per carry-save step, then 255s per plane
    block = group * max(1, _COUNT_WORDS // (group * n_words))
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = stop - start
        padded_rows = -(-rows // group) * group
        if padded_rows == rows and n_bytes == 8 * n_words:
            chunk = np.ascontiguousarray(packed[start:stop])
        else:  # zero rows and bytes count nothing
            chunk = np.zeros((padded_rows, 8 * n_words), dtype=np.uint8)
            chunk[:rows, :n_bytes] = packed[start:stop]
        words = chunk.view(np.uint64)
        if not np.little_endian:
            words = words.byteswap()  # the lanes below assume the little-endian byte order
        # Carry-save adders fold each 15 rows into the binary digits of their column
        # sums (weights 1, 2, 4, 8): four planes of a fifteenth of the rows to count.
        planes = _carry_save([words[i::_FOLD] for i in range(_FOLD)])
        for digit, plane in enumerate(planes):
            _count_block(plane, totals, 1 << digit)
    # Byte b of a word is report byte b (little-endian view); bit i of it (LSB = 0) is
    # report position 8·byte + 7 − i.
    positions = 8 * np.arange(8 * n_words)[None, :] + 7 - np.arange(8)[:, None]
    counts = np.zeros(64 * n_words, dtype=np.int64)
    counts[positions.ravel()] = totals.ravel()
    return counts[:k]


def _carry_save(rows: list[npt.NDArray[np.uint64]]) -> list[npt.NDArray[np.uint64]]:
    """Bit planes of the bitwise sum of equal-shaped arrays: ``planes[j]`` holds digit
    ``j`` (weight ``2^j``) of the column sums, by full and half adders (Wallace tree)."""
    levels: list[list[npt.NDArray[np.uint64]]] = [list(rows)]
    planes = []
    j = 0
    while j < len(levels):
        pending = levels[j]
        while len(pending) > 1:
            if j + 1 == len(levels):
                levels.append([])
            a, b = pending.pop(), pending.pop()
            total = a ^ b
            carry = a & b
            if pending:  # full adder: a + b + c = total + 2·carry
                c = pending.pop()
                carry |= total & c
                total ^= c
            pending.append(total)
            levels[j + 1].append(carry)
        planes.append(pending[0])
        j += 1
    return planes


def _count_block(words: npt.NDArray[np.uint64], totals: IntArray, weight: int) -> None:
    """Add ``weight`` times the bit counts of ``words`` (rows a multiple of 255) to
    ``totals``."""
    n_words = words.shape[1]
    thirds = [words[i::3] for i in range(3)]
    lane = np.empty_like(thirds[0])
    for parity in range(2):  # bits 0, 2, 4, 6 of each byte, then bits 1, 3, 5, 7
        pairs = np.empty_like(thirds[0])
        for i, third in enumerate(thirds):
            target = pairs if i == 0 else lane
            if parity:
                np.right_shift(third, _ONE, out=target)
                target &= _M55
            else:
                np.bitwise_and(third, _M55, out=target)
            if i:
                pairs += lane  # 2-bit lanes, <= 3
        fifths = [pairs[i::5] for i in range(5)]
        small = lane[: fifths[0].shape[0]]
        for half in range(2):
            quads = np.empty_like(fifths[0])
            for i, fifth in enumerate(fifths):
                target = quads if i == 0 else small
                if half:
                    np.right_shift(fifth, _TWO, out=target)
                    target &= _M33
                else:
                    np.bitwise_and(fifth, _M33, out=target)
                if i:
                    quads += small  # 4-bit lanes, <= 15
            for nibble in range(2):
                octet = quads >> _FOUR if nibble else quads.copy()
                octet &= _M0F
                octets = octet.reshape(-1, 17, n_words).sum(axis=1, dtype=np.uint64)  # <= 255
                bit = parity + 2 * half + 4 * nibble
                totals[bit] += weight * octets.view(np.uint8).sum(axis=0, dtype=np.int64)


class UnaryEncoding(FrequencyOracle):
    """Unary encoding: the value becomes a one-hot vector of ``k`` bits, and each bit
    is reported as 1 with probability ``p`` if it is the user's bit and ``q``
    otherwise [WBLJ17]_. ε-LDP when ``p(1 − q) / (q(1 − p)) = e^ε``.

    Reports are stored bit-packed (``k`` bits per user, :func:`numpy.packbits` order).
    The bits are drawn 64 at a time with
    :func:`~privaudit.mechanisms.ldp._sampling.bernoulli_words`, which makes each bit 1
    with probability exactly ``q`` (the double), and the user's own bit with a 53-bit
    uniform comparison, exact for ``p`` in ``[1/2, 1)`` (OUE's ``1/2``, SUE's
    ``p > 1/2``): so the channel, ``p*``/``q*``, the variance and the guarantee all
    refer to the same ``(p, q)``, with no rounding to a coarser grid. The server
    counts bits without unpacking (:func:`column_bit_counts`).
    """

    def _randomize(self, values: IntArray, rng: np.random.Generator) -> dict[str, Any]:
        p, q = self._support_probabilities()
        n, k = values.size, self.k
        n_bytes, n_words = (k + 7) // 8, (k + 63) // 64
        packed = np.empty((n, n_bytes), dtype=np.uint8)
        # Every bit is Bernoulli(q) exactly (bernoulli_words), 64 to a word; the
        # user's own bit is then redrawn as Bernoulli(p). Bit v of a report is bit
        # 7 − v mod 8 of byte v // 8 (numpy.packbits order); the other bits are i.i.d.,
        # so how the random words' bits map onto positions does not matter.
        chunk = max(1, _CHUNK_WORDS // n_words)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            words = bernoulli_words(rng, q, (stop - start) * n_words)
            packed[start:stop] = words.view(np.uint8).reshape(stop - start, 8 * n_words)[
                :, :n_bytes
            ]
        if k % 8:
            packed[:, -1] &= np.uint8((0xFF << (8 - k % 8)) & 0xFF)  # padding bits are 0
        own = bernoulli(rng, p, n)  # exact: p = 1/2 (OUE) or p in (1/2, 1) (SUE)
        column = values >> 3
        bit = np.left_shift(1, 7 - (values & 7)).astype(np.uint8)
        rows = np.arange(n)
        packed[rows, column] = (packed[rows, column] & ~bit) | np.where(own, bit, 0).astype(
            np.uint8
        )
        return {"bits": packed}

    def _statistics(self, reports: Reports) -> IntArray:
        packed = reports.arrays["bits"].astype(np.uint8, copy=False)  # validated: 0..255
        return column_bit_counts(packed, self.k)

    def _support_counts(self, statistics: IntArray, n: int) -> FloatArray:
        return statistics.astype(float)

    def report_schema(self) -> list[Field]:
        return [Field("bits", (self.k + 7) // 8, 0, 255)]

    def bits_per_report(self) -> float:
        return float(self.k)

    def reconstruction_success(self, prior: npt.ArrayLike | None = None) -> float:
        """The attacker guesses uniformly among the 1-bits (uniformly in ``[k]`` if
        none): ``p(1 − (1 − q)^k)/(kq) + (1 − p)(1 − q)^(k−1)/k``, exactly."""
        check_prior(prior, self.k)  # validated; this attacker's success does not depend on it
        p, q, k = self.p_star, self.q_star, self.k
        # With the true bit set, the guess is right w.p. E[1/(1 + B)], B ~ Bin(k-1, q).
        hit_if_set = (1 - (1 - q) ** k) / (k * q)
        hit_if_unset = (1 - q) ** (k - 1) / k  # only when every bit is 0
        return p * hit_if_set + (1 - p) * hit_if_unset

    def channel(self) -> FloatArray:
        """``P[report = y | value = v]`` over all ``2^k`` bit vectors (small ``k`` only)."""
        if self.k > 16:
            raise ParameterError(f"the channel has 2^k columns; k={self.k} is too large")
        p, q = self._support_probabilities()
        outputs = np.array(list(itertools.product([0, 1], repeat=self.k)), dtype=bool)
        matrix = np.empty((self.k, outputs.shape[0]))
        for v in range(self.k):
            probability = np.where(outputs, q, 1 - q)
            probability[:, v] = np.where(outputs[:, v], p, 1 - p)
            matrix[v] = probability.prod(axis=1)
        return matrix


@mechanisms.register("sue")
class SUE(UnaryEncoding):
    """Symmetric unary encoding (basic one-time RAPPOR [EPK14]_):
    ``p = e^(ε/2)/(e^(ε/2) + 1)``, ``q = 1 − p``.

    References
    ----------
    .. [EPK14] Ú. Erlingsson, V. Pihur, A. Korolova, "RAPPOR: Randomized Aggregatable
       Privacy-Preserving Ordinal Response", CCS 2014.
    """

    name = "sue"

    def _support_probabilities(self) -> tuple[float, float]:
        half = math.exp(self.epsilon / 2)
        return half / (half + 1), 1.0 / (half + 1)


@mechanisms.register("oue")
class OUE(UnaryEncoding):
    """Optimized unary encoding [WBLJ17]_: ``p = 1/2``, ``q = 1/(e^ε + 1)``, which
    minimises the variance among unary encodings (``4e^ε/(n(e^ε − 1)²)`` as f → 0)."""

    name = "oue"

    def _support_probabilities(self) -> tuple[float, float]:
        return 0.5, 1.0 / (math.exp(self.epsilon) + 1)

"""Vectorised, exact sampling helpers for LDP randomizers.

Every sampler here draws only from the ``numpy.random.Generator`` it is given (so the
secure default of :func:`privaudit.randomness.resolve_rng` carries through), and each
one's output law is *exactly* the one stated, not an approximation of it:

* :func:`bernoulli`: one Bernoulli draw per element from a 53-bit uniform.
* :func:`bernoulli_words`: 64 independent Bernoulli(``p``) bits per ``uint64`` word,
  each bit exactly ``P[1] = p`` for the double ``p`` (a lazy, bit-sliced comparison of a
  uniform real with ``p``'s binary expansion, below).
* :func:`conditional_subsets`: per user, a uniformly random ``size``-subset of ``[k]``
  that contains the user's value, or that does not (the two branches of subset
  selection), as a sorted row.
* :func:`conditional_subset_bitmaps`: the same law, each subset as a bitmap of ``k``
  bits in :func:`numpy.packbits` order (bit ``x`` of a row is bit ``7 − x mod 8`` of
  byte ``x // 8``), built without listing the members.

The dense subset sampler works on ``uint64`` masks in *packbits layout*: position ``x``
of a row is bit ``(x mod 64) XOR 7`` (LSB = 0) of word ``x // 64``, so the words'
little-endian bytes are the row's :func:`numpy.packbits` bytes, which is the wire's
bitmap form (and what :func:`~privaudit.mechanisms.ldp._unary.column_bit_counts` counts).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "bernoulli",
    "bernoulli_words",
    "conditional_subset_bitmaps",
    "conditional_subsets",
    "random_words",
    "subset_dtype",
]

WordArray = npt.NDArray[np.uint64]
IntArray = npt.NDArray[np.int64]

_ALL_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
_WORD_MAX = 0xFFFF_FFFF_FFFF_FFFF
_CHUNK_WORDS = 1 << 16  # 512 KiB of words per pass: the working set stays in cache
_DENSE_ROUNDS = 7  # word-parallel rounds before the undecided words are compacted
_EXTRACT_CELLS = 1 << 16  # mask cells listed at once (their positions stay in cache)
_BLOCK_WORDS = 1 << 17  # mask words of the rows sampled together (1 MiB)
_SPARSE_DENSITY = 1 / 16  # below this fraction of k: draw positions, redraw repeats
_WORD_COST = 0.25  # a random mask word per digit, in draws of a missing member (measured)
_BITS = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))  # 1 << j
# The word bit of position x mod 64 in packbits layout (see the module docstring).
_POSITION_BITS = _BITS[np.arange(64) ^ 7]


def bernoulli(
    rng: np.random.Generator, p: float | npt.NDArray[np.float64], size: object
) -> npt.NDArray[np.bool_]:
    """``True`` with probability ``p`` (53-bit uniform comparison)."""
    return rng.random(size) < p  # type: ignore[call-overload,no-any-return]


def random_words(rng: np.random.Generator, size: int | tuple[int, ...]) -> WordArray:
    """Uniform ``uint64`` words from ``rng`` (64 independent fair bits each)."""
    words: WordArray = rng.integers(0, _WORD_MAX, size=size, dtype=np.uint64, endpoint=True)
    return words


def bernoulli_words(rng: np.random.Generator, p: float, size: int) -> WordArray:
    """``size`` words of independent bits, each 1 with probability exactly ``p``.

    Each bit compares a uniform real ``U = 0.u₁u₂u₃…`` (fresh fair bits) with the
    binary expansion ``p = 0.b₁b₂…b_L`` of the double ``p`` (finite: a double is a
    dyadic rational), most significant bit first: at the first ``i`` with
    ``uᵢ ≠ bᵢ`` the bit is decided, ``[U < p] = bᵢ``; if ``U`` agrees with all ``L``
    digits then ``U ≥ p`` and the bit is 0. So ``P[bit = 1] = P[U < p] = p`` exactly.
    Bit-sliced: digit ``i`` of 64 bits' ``U`` is one random word, and a word needs
    another random word only while one of its bits is undecided (a bit is undecided
    after ``i`` digits with probability ``2⁻ⁱ``; a word needs about 7.3 random words
    on average). The random words a word consumes after the first rounds depend on
    which of its bits are still undecided, but every word drawn is fresh and
    independent of everything before it, so the bits are independent and each has the
    law above.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability; got {p!r}")
    out = np.zeros(size, dtype=np.uint64)
    if p == 0.0 or size == 0:
        return out
    if p == 1.0:
        out[:] = _ALL_ONES
        return out
    numerator, denominator = float(p).as_integer_ratio()
    digits = denominator.bit_length() - 1  # p = numerator / 2^digits, numerator odd
    dense = min(digits, _DENSE_ROUNDS)
    undecided = np.empty(size, dtype=np.uint64)
    scratch = np.empty(min(size, _CHUNK_WORDS), dtype=np.uint64)
    for start in range(0, size, _CHUNK_WORDS):  # cache-sized passes while every word is busy
        stop = min(size, start + _CHUNK_WORDS)
        chunk_out, chunk_undecided = out[start:stop], undecided[start:stop]
        chunk_undecided.fill(_ALL_ONES)
        for digit in range(1, dense + 1):
            _compare_digit(
                rng, (numerator >> (digits - digit)) & 1, chunk_out, chunk_undecided, scratch
            )
    if dense == digits:
        return out  # bits still undecided have U ≥ p: they stay 0
    # Then only the words with an undecided bit go on, one digit at a time.
    index = np.flatnonzero(undecided)
    pending, result = undecided[index], out[index]
    digit = dense
    while digit < digits and index.size:
        digit += 1
        word = random_words(rng, index.size)
        if (numerator >> (digits - digit)) & 1:  # b = 1: u = 0 decides 1, u = 1 goes on
            result |= pending & ~word
            pending &= word
        else:  # b = 0: u = 1 decides 0, u = 0 goes on
            pending &= ~word
        if digit % 2 == 0 or digit == digits:  # compact now and then
            keep = pending != 0
            settled = ~keep
            out[index[settled]] = result[settled]
            index, pending, result = index[keep], pending[keep], result[keep]
    out[index] = result  # undecided after the last digit: U ≥ p, the bit stays 0
    return out


def _compare_digit(
    rng: np.random.Generator, digit: int, out: WordArray, undecided: WordArray, scratch: WordArray
) -> None:
    """One digit of the comparison in :func:`bernoulli_words` for every word of ``out``."""
    word = random_words(rng, out.size)
    if digit:  # u = 0 < b = 1 decides 1; u = 1 goes on
        tmp = scratch[: out.size]
        np.bitwise_not(word, out=tmp)
        tmp &= undecided
        out |= tmp
        undecided &= word
    else:  # u = 1 > b = 0 decides 0; u = 0 goes on
        np.bitwise_not(word, out=word)
        undecided &= word


# --- subsets ---------------------------------------------------------------------------


def subset_dtype(k: int) -> type[np.unsignedinteger[Any]] | type[np.signedinteger[Any]]:
    """The narrowest integer type that holds ``0 .. k-1`` (reports stay small)."""
    if k <= 1 << 16:
        return np.uint16
    return np.int32 if k <= 1 << 31 else np.int64


def conditional_subsets(
    values: IntArray,
    include: npt.NDArray[np.bool_],
    size: int,
    k: int,
    rng: np.random.Generator,
) -> npt.NDArray[Any]:
    """For each user ``u``, a uniformly random ``size``-subset of ``[k]`` that contains
    ``values[u]`` if ``include[u]`` and does not contain it otherwise.

    Returns an ``(n, size)`` array, each row sorted ascending, of
    :func:`subset_dtype` ``(k)``. Needs ``1 <= size <= k - 1``.

    Every row first draws a uniform ``size``-subset of ``V = [k] ∖ {v}``; where
    ``include``, a uniformly chosen member is then replaced by ``v``, which leaves
    ``v`` plus a uniform ``(size − 1)``-subset of ``V`` (see :func:`_swap_in_positions`:
    this keeps the work independent of the coin, a timing side channel otherwise).

    Exactness of the draw from ``V``, for ``t`` members (``t = size`` here). Both samplers below are
    *equivariant* under every permutation ``π`` of ``V``: relabelling the random input
    by ``π`` (which leaves its law unchanged) relabels the output set by ``π``, because
    each decision depends only on counts and on equalities between drawn positions,
    never on which positions they are. So ``P[S = A] = P[S = π(A)]`` for all ``π``; the
    permutations of ``V`` act transitively on its ``t``-subsets, and every output has
    exactly ``t`` members, so the output is uniform over the ``t``-subsets of ``V``.

    * Sparse (``size < k/16``, or ``k ≤ 64``): draw ``t`` positions of ``V`` with
      replacement, keep the distinct ones, draw the shortfall again, until ``t`` are
      distinct (the set of the first ``t`` distinct values of an i.i.d. uniform
      sequence). Sorting the row finds the repeats.
    * Dense: a row starts as independent Bernoulli(``ρ``) bits over ``V``, with ``ρ``
      a coarse dyadic a little below ``t/(k−1)`` (any exchangeable start works; this one
      is cheap, see :func:`bernoulli_words`); a row that starts with more than ``t``
      members starts again (conditioning on the count keeps it exchangeable). Then,
      while a row has ``c < t`` members, ``t − c`` uniform positions of ``[k]`` are
      drawn and set (a draw of ``v``, or of a member, adds nothing), and the row is
      recounted; it can never overshoot. When ``t > (k−1)/2`` the complement
      (``k − 1 − t`` members) is built instead. Members are listed from the bit mask
      in ascending order.
    """
    n = values.size
    dtype = subset_dtype(k)
    out = np.empty((n, size), dtype=dtype)
    if n == 0:
        return out
    include = np.asarray(include, dtype=bool)
    # Every row draws ``size`` members of V, whatever its coin; the coin only decides
    # whether one of them is then swapped for v (see _swap_in_positions).
    exclude = np.zeros(n, dtype=bool)
    space = k - 1  # |V|
    if size < _SPARSE_DENSITY * k or space < 64:
        _sparse_subsets(values, exclude, size, k, rng, out)
    else:
        _dense_subsets(values, exclude, size, k, rng, out)
    return _swap_in_positions(out, values, include, rng)


def _swap_in_positions(
    rows: npt.NDArray[Any],
    values: IntArray,
    include: npt.NDArray[np.bool_],
    rng: np.random.Generator,
) -> npt.NDArray[Any]:
    """Where ``include``, replace a uniformly chosen member of the sorted row by ``v``.

    A uniform member removed from a uniform ``size``-subset of V leaves a uniform
    ``(size − 1)``-subset of V, so the law is the one :func:`conditional_subsets`
    promises. Why not draw ``size − 1`` members directly: the sampler's work would then
    depend on the include coin, and a client's run time would tell an observer the coin
    (a timing side channel on a single report). Here every row does the same work: the
    replacement is computed for all rows and selected by the coin.
    """
    n, size = rows.shape
    if n == 0:
        return rows
    removed = np.asarray(rng.integers(0, size, size=n, dtype=np.int64))[:, None]
    v = values.astype(rows.dtype, copy=False)[:, None]
    # v's rank among the members that stay (v is not a member: rows are subsets of V).
    rank = (rows < v).sum(axis=1, keepdims=True) - (removed < (rows < v).sum(axis=1, keepdims=True))
    index = np.arange(size)[None, :]
    shifted = np.where(index < rank, index, index - 1)  # position among those that stay
    source = shifted + (shifted >= removed)  # and in the row before the removal
    swapped = np.take_along_axis(rows, np.clip(source, 0, size - 1), axis=1)
    swapped = np.where(index == rank, v, swapped)
    result: npt.NDArray[Any] = np.where(include[:, None], swapped, rows)
    return result


def conditional_subset_bitmaps(
    values: IntArray,
    include: npt.NDArray[np.bool_],
    size: int,
    k: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.uint8]:
    """The subsets of :func:`conditional_subsets` (same law, exactly) as bitmaps.

    Returns an ``(n, ⌈k/8⌉)`` ``uint8`` array in :func:`numpy.packbits` order: bit ``x``
    of row ``u`` (bit ``7 − x mod 8`` of byte ``x // 8``) is set iff ``x`` is a member;
    exactly ``size`` bits are set per row and the padding bits past ``k`` are 0. Needs
    ``1 <= size <= k - 1``.

    Always the dense sampler of :func:`conditional_subsets` (its exactness argument
    does not depend on the density, only its cost does), stopped before the members
    are listed: the words of a row's mask are its bitmap (packbits layout, see the
    module docstring).
    """
    n = values.size
    n_bytes = (k + 7) // 8
    out = np.empty((n, n_bytes), dtype=np.uint8)
    if n == 0:
        return out
    include = np.asarray(include, dtype=bool)
    exclude = np.zeros(n, dtype=bool)  # the same work whatever the coin, as above
    for start, stop, masks in _dense_masks(values, exclude, size, k, rng):
        out[start:stop] = _mask_bytes(masks)[:, :n_bytes]
    return _swap_in_bitmaps(out, values, include, k, rng)


def _swap_in_bitmaps(
    bitmaps: npt.NDArray[np.uint8],
    values: IntArray,
    include: npt.NDArray[np.bool_],
    k: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.uint8]:
    """:func:`_swap_in_positions` for bitmaps: a uniform member (found by drawing
    positions of ``[k]`` until one is a member, for every row) is cleared and ``v`` set
    where ``include``."""
    n = bitmaps.shape[0]
    if n == 0:
        return bitmaps
    rows = np.arange(n)
    chosen: IntArray = np.asarray(rng.integers(0, k, size=n, dtype=np.int64))
    hit = _bit(bitmaps, rows, chosen)
    while not hit.all():
        missing = np.flatnonzero(~hit)
        chosen[missing] = rng.integers(0, k, size=missing.size, dtype=np.int64)
        hit[missing] = _bit(bitmaps, missing, chosen[missing])
    swapped = bitmaps.copy()
    swapped[rows, chosen // 8] &= ~(np.uint8(0x80) >> (chosen % 8).astype(np.uint8))
    v = values.astype(np.int64, copy=False)
    swapped[rows, v // 8] |= np.uint8(0x80) >> (v % 8).astype(np.uint8)
    result: npt.NDArray[np.uint8] = np.where(include[:, None], swapped, bitmaps)
    return result


def _bit(
    bitmaps: npt.NDArray[np.uint8], rows: IntArray, positions: IntArray
) -> npt.NDArray[np.bool_]:
    """Whether bit ``positions[i]`` of row ``rows[i]`` is set (packbits order)."""
    shifts = (7 - positions % 8).astype(np.uint8)
    return ((bitmaps[rows, positions // 8] >> shifts) & 1).astype(bool)


def _sparse_subsets(
    values: IntArray,
    include: npt.NDArray[np.bool_],
    size: int,
    k: int,
    rng: np.random.Generator,
    out: npt.NDArray[Any],
) -> None:
    for flag in (False, True):
        rows = np.flatnonzero(include == flag)
        if rows.size == 0:
            continue
        draws = size - int(flag)
        v = values[rows]
        if draws == 0:
            out[rows, 0] = v
            continue
        # Positions in [0, k−1), mapped onto V = [k] ∖ {v} by skipping v at the end.
        picked = rng.integers(0, k - 1, size=(rows.size, draws), dtype=np.int64)
        picked.sort(axis=1)
        while True:
            repeated = picked[:, 1:] == picked[:, :-1]  # a later copy of a kept value
            redo = np.flatnonzero(repeated.any(axis=1))
            if redo.size == 0:
                break
            sub = picked[redo]
            mask = np.zeros(sub.shape, dtype=bool)
            mask[:, 1:] = repeated[redo]
            sub[mask] = rng.integers(0, k - 1, size=int(mask.sum()), dtype=np.int64)
            sub.sort(axis=1)
            picked[redo] = sub
        picked += picked >= v[:, None]  # monotone, so rows stay sorted
        if flag:
            picked = np.concatenate([picked, v[:, None]], axis=1)
            picked.sort(axis=1)
        out[rows] = picked


def _dense_subsets(
    values: IntArray,
    include: npt.NDArray[np.bool_],
    size: int,
    k: int,
    rng: np.random.Generator,
    out: npt.NDArray[Any],
) -> None:
    for start, stop, masks in _dense_masks(values, include, size, k, rng):
        _list_members(masks, out[start:stop])


def _dense_masks(
    values: IntArray,
    include: npt.NDArray[np.bool_],
    size: int,
    k: int,
    rng: np.random.Generator,
) -> Iterator[tuple[int, int, WordArray]]:
    """The dense sampler of :func:`conditional_subsets`, block by block of users:
    ``(start, stop, masks)`` with the packbits-layout masks of users ``start:stop``."""
    n = values.size
    space = k - 1
    complement = 2 * size > space + 1
    typical = space - size if complement else size
    n_words = (k + 63) // 64
    density = _start_density(typical, space, n_words)
    block = max(1, _BLOCK_WORDS // n_words)
    for start in range(0, n, block):
        stop = min(n, start + block)
        v = values[start:stop]
        target = size - include[start:stop].astype(np.int64)
        if complement:
            target = space - target
        masks = _fixed_size_masks(v, target, k, density, rng)
        flat = masks.reshape(-1)
        v_word, v_bit = _value_bits(v, n_words)
        if complement:
            np.bitwise_not(masks, out=masks)
            masks[:, -1] &= _tail_mask(k)
            flat[v_word] &= ~v_bit
        chosen = np.flatnonzero(include[start:stop])
        flat[v_word[chosen]] |= v_bit[chosen]
        yield start, stop, masks


def _value_bits(v: IntArray, n_words: int) -> tuple[IntArray, WordArray]:
    """Flat word index and bit of each row's value in ``(rows, n_words)`` masks."""
    word: IntArray = np.arange(v.size, dtype=np.int64) * n_words + (v >> 6)
    bit: WordArray = _POSITION_BITS[v & 63]
    return word, bit


@functools.lru_cache(maxsize=64)
def _tail_mask(k: int) -> np.uint64:
    """The bits of a mask's last word that are positions below ``k``."""
    used = k - 64 * ((k - 1) // 64)  # positions in the last word, 1 .. 64
    mask = 0
    for position in range(used):
        mask |= 1 << (position ^ 7)
    return np.uint64(mask)


def _mask_bytes(masks: WordArray) -> npt.NDArray[np.uint8]:
    """The bytes of packbits-layout masks in memory order: the rows' packbits bytes."""
    data: npt.NDArray[np.uint8] = masks.astype("<u8", copy=False).view(np.uint8)
    return data


def _fixed_size_masks(
    v: IntArray, target: IntArray, k: int, density: float, rng: np.random.Generator
) -> WordArray:
    """Packbits-layout bit masks ``(rows, ⌈k/64⌉)``, row ``r`` a uniform
    ``target[r]``-subset of ``[k] ∖ {v[r]}`` (the dense sampler of
    :func:`conditional_subsets`)."""
    n_words = (k + 63) // 64
    masks = _bernoulli_masks(v, k, density, rng)
    count = np.bitwise_count(masks).sum(axis=1, dtype=np.int64)
    redo = np.flatnonzero(count > target)
    while redo.size:  # a row that starts with too many members starts again
        part = _bernoulli_masks(v[redo], k, density, rng)
        masks[redo] = part
        count[redo] = np.bitwise_count(part).sum(axis=1, dtype=np.int64)
        redo = redo[count[redo] > target[redo]]
    flat = masks.reshape(-1)
    v_word, v_bit = _value_bits(v, n_words)
    active = np.flatnonzero(count < target)
    while active.size:  # then add uniform positions of [k] ∖ {v} until target
        row = np.repeat(active, target[active] - count[active])
        position = rng.integers(0, k, size=row.size, dtype=np.int64)
        word = row * n_words
        word += position >> 6
        # Unbuffered: two draws in one word both land, whatever the word structure.
        np.bitwise_or.at(flat, word, _POSITION_BITS[position & 63])
        flat[v_word[active]] &= ~v_bit[active]  # a draw of v is a miss
        count[active] = np.bitwise_count(masks[active]).sum(axis=1, dtype=np.int64)
        active = active[count[active] < target[active]]
    return masks


def _bernoulli_masks(v: IntArray, k: int, density: float, rng: np.random.Generator) -> WordArray:
    """Bit masks of i.i.d. Bernoulli(``density``) members of ``[k] ∖ {v}``, one row per
    value (the bits are i.i.d., so the layout does not change their law)."""
    n_words = (k + 63) // 64
    masks = bernoulli_words(rng, density, v.size * n_words).reshape(v.size, n_words)
    masks[:, -1] &= _tail_mask(k)
    v_word, v_bit = _value_bits(v, n_words)
    masks.reshape(-1)[v_word] &= ~v_bit
    return masks


def _list_members(masks: WordArray, out: npt.NDArray[Any]) -> None:
    """Write each row's member positions, ascending, into ``out`` (one row per
    packbits-layout mask)."""
    rows, n_words = masks.shape
    stride = 64 * n_words
    data = _mask_bytes(masks)  # bit x of a row is position x, in packbits order
    chunk = max(1, _EXTRACT_CELLS // stride)
    # A flat index is row·stride + position; when stride is a power of two no larger
    # than 2^16, its low 16 bits modulo stride are the position.
    low_bits = stride & (stride - 1) == 0 and stride <= 1 << 16 and out.dtype == np.uint16
    for start in range(0, rows, chunk):
        stop = min(rows, start + chunk)
        cells = np.unpackbits(data[start:stop], axis=1).view(np.bool_)
        flat_positions = np.flatnonzero(cells)
        target = out[start:stop].reshape(-1)
        if low_bits:
            np.copyto(target, flat_positions, casting="unsafe")  # keeps the low 16 bits
            np.bitwise_and(target, np.uint16(stride - 1), out=target)
        else:
            np.remainder(flat_positions, stride, out=target, casting="unsafe")


def _start_density(typical: int, space: int, n_words: int) -> float:
    """The Bernoulli start of the dense sampler: the dyadic ``j/2^L`` below
    ``typical/space`` that minimises the expected cost (``L`` random words per mask
    word, plus a draw per missing member, plus restarts when a row starts too full),
    under the normal approximation of the start's count."""
    if typical >= space:
        # Every position is a member (e.g. ω = 1 in a block of m = 2): start empty and
        # let the top-up fill the row (a start of 1 would overfill the rows that hold
        # the value, whose target is one less, and restart them for ever).
        return 0.0
    best, best_cost = 0.0, math.inf
    ratio = typical / space
    for digits in range(1, 9):
        grid = 1 << digits
        numerator = math.floor(ratio * grid)
        if numerator < 1 or numerator >= grid or (numerator % 2 == 0 and digits > 1):
            continue  # not below the target, or already seen on a coarser grid
        p = numerator / grid
        mean, sd = space * p, math.sqrt(space * p * (1 - p))
        z = (typical + 0.5 - mean) / sd
        too_full = 0.5 * math.erfc(z / math.sqrt(2))
        start = digits * n_words * _WORD_COST / max(1e-3, 1 - too_full)
        draws = (typical - mean) / (1 - ratio)
        cost = start + draws
        if cost < best_cost:
            best, best_cost = p, cost
    return best

"""rctc's one random number generator: Philox4x32-10, counter-based, 32-bit arithmetic only.

Every backend (the numpy reference, the native C library, the microcontroller project) draws its
random bits from this stream, so a training run is bit-identical everywhere and at any thread
count. The C twin is ``native/csrc/support/philox.c`` (``rctc_philox4x32``, ``rctc_random_words``);
the two are tested against each other and against the Random123 known-answer vectors.

The bijection (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
SC'11; the Random123 ``philox4x32_R`` with R = 10): a 128-bit counter ``(x0, x1, x2, x3)`` and a
64-bit key ``(k0, k1)``, ten rounds of::

    (hi0, lo0) = mulhilo(0xD2511F53, x0)      # the 64-bit product of two 32-bit words
    (hi1, lo1) = mulhilo(0xCD9E8D57, x2)
    (x0, x1, x2, x3) = (hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0)

with the key bumped by the Weyl constants ``(0x9E3779B9, 0xBB67AE85)`` (mod 2^32) before rounds
2..10. Only 32x32 -> 64-bit unsigned products, xors and 32-bit additions: a Cortex-M4 computes it
with ``UMULL``; numpy computes it on uint64 lanes that always hold 32-bit values.

The stream layout (what :func:`random_words` returns)::

    key     = (seed & 0xffffffff, seed >> 32)              # 64-bit seed of the run
    counter = (block & 0xffffffff, block >> 32, step, node_id)
    word j  = lane j % 4 of philox4x32(counter(block = j // 4), key)

Why this layout: the key selects the run and the counter names a position, as Random123
recommends (the key schedule is the same for every block, so the C side keeps it in registers).
``(step, node_id)`` in the high counter words give every node of every training step its own
stream of 2^64 words that no other (step, node) can reach, because Philox is a bijection of the
counter for a fixed key; ``step`` and ``node_id`` are 32-bit (4 billion steps, 4 billion nodes).
Word ``j`` depends only on ``j``, never on how the words before it were drawn, so a kernel may
split ``[start, start + count)`` into any blocks, on any threads, in any order.

Two implementations of the one stream: the numpy one here (``philox4x32``, ``_rounds``: the
specification, tested against the Random123 vectors) and randomgen's C Philox4x32-10
(``randomgen.Philox(number=4, width=32)``, whose 128-bit counter is our ``(block lo, block hi,
step, node)`` and whose key is the seed; it advances the counter before each block, so it starts
one below the first block). Both give the same words (tests compare them on a grid of seeds,
steps, nodes, offsets and lengths). :func:`random_words` draws on randomgen (about 6 us to
position a generator, then about 5 ns a word, against about 100 us of numpy calls and 15 ns a
word for the rounds); :func:`random_words_many` batches many tiny requests on the numpy rounds,
where one pass over all their blocks costs less than a generator position each.

Needs: numpy, randomgen. Leaves: pure functions of their arguments; no global generator is
touched. Each thread keeps its own randomgen generators for the last few seeds (``_Streams``), and
every draw repositions one completely, so what earlier draws did never shows.
"""

from __future__ import annotations

import functools
import operator
import sys
import threading
from collections.abc import Sequence

import numpy as np
from randomgen import Philox as _RandomgenPhilox

__all__ = [
    "BATCH_MAX",
    "BATCH_MIN",
    "PHILOX_M",
    "PHILOX_ROUNDS",
    "PHILOX_W",
    "philox4x32",
    "random_words",
    "random_words_many",
    "uniform_bits",
]

#: rounds of the bijection (Philox4x32-10)
PHILOX_ROUNDS = 10
#: the round multipliers (Random123 ``PHILOX_M4x32_0``, ``PHILOX_M4x32_1``)
PHILOX_M = (0xD2511F53, 0xCD9E8D57)
#: the key schedule's Weyl increments (Random123 ``PHILOX_W32_0``, ``PHILOX_W32_1``)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)

_MASK32 = 0xFFFFFFFF
_U32 = 1 << 32
_U64 = 1 << 64
_U128 = 1 << 128
#: :func:`random_words_many` batches requests under this many words on the numpy rounds ...
BATCH_MAX = 1 << 9
#: ... when there are at least this many of them (fewer cost less one by one on randomgen)
BATCH_MIN = 16


def _uint(value: object, what: str, limit: int, shown: str) -> int:
    """``value`` as a Python int in ``[0, limit)``, else ValueError (TypeError for non-integers);
    ``shown`` is that range as the message prints it."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, not bool")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}") from None
    if not 0 <= v < limit:
        raise ValueError(f"{what} must be in {shown}, got {v}")
    return v


#: blocks per chunk: the work arrays of this length (the lanes, 512 KiB, and two uint64 product
#: pairs, 1 MiB) stay in the cache; longer chunks mean fewer numpy calls per word
_CHUNK = 1 << 15
_M = np.array([[PHILOX_M[0]], [PHILOX_M[1]]], np.uint64)  # the multipliers of lanes 0 and 2
_LO, _HI = (0, 1) if sys.byteorder == "little" else (1, 0)  # uint32 halves of a uint64


class _Work:
    """Scratch of :func:`_rounds` for ``n`` blocks: lanes 0 and 2 as the rows of one (2, n) uint32
    array ``a`` (the multiplied lanes), lanes 1 and 3 as the rows of ``b``, and two (2, n) uint64
    product arrays whose uint32 halves are read in place (views); ``x0 .. x3`` are the four rows."""

    def __init__(self, n: int) -> None:
        self.a, self.b = np.empty((2, n), np.uint32), np.empty((2, n), np.uint32)
        self.p = [np.empty((2, n), np.uint64) for _ in range(2)]
        self._rows()

    def _rows(self) -> None:
        self.x0, self.x2 = self.a
        self.x1, self.x3 = self.b

    def view(self, n: int) -> _Work:
        w = object.__new__(_Work)
        w.a, w.b = self.a[:, :n], self.b[:, :n]
        w.p = [p[:, :n] for p in self.p]
        w._rows()
        return w


@functools.lru_cache(maxsize=16)
def _round_keys(k0: int, k1: int) -> np.ndarray:
    """The key of every round as ``(PHILOX_ROUNDS, 2, 1)`` uint32 (read only): ``(k0, k1)``, bumped by
    the Weyl constants (mod 2^32) before rounds 2..10."""
    keys = []
    for r in range(PHILOX_ROUNDS):
        if r:
            k0 = (k0 + PHILOX_W[0]) & _MASK32
            k1 = (k1 + PHILOX_W[1]) & _MASK32
        keys.append((k0, k1))
    out = np.array(keys, np.uint32).reshape(PHILOX_ROUNDS, 2, 1)
    out.flags.writeable = False
    return out


def _rounds(w: _Work, k0: int, k1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ten Philox rounds on the lanes ``w.x0 .. w.x3`` (uint32); returns the four output lanes
    (uint32 rows or strided views into ``w``'s products, valid until ``w`` is reused).

    A round is three numpy calls on both lane pairs at once: the products ``(x0 M0, x2 M1)`` exactly
    in uint64 (32 x 32 bits), ``(x0', x2') = (hi(x2 M1) ^ x1, hi(x0 M0) ^ x3)`` (the high halves in
    reverse row order) and the xor with the round key; the low halves, reversed, *are* the next
    ``(x1, x3)`` (views of the product, never copied). The two product arrays alternate between
    rounds, so the previous round's low halves stay intact while the next products are written."""
    a, b = w.a, w.b
    for r, key in enumerate(_round_keys(k0, k1)):  # the round keys: (k0, k1) bumped by the Weyl constants
        p = w.p[r & 1]
        np.multiply(a, _M, out=p)  # a 32x32-bit product: exact in uint64
        halves = p.view(np.uint32).reshape(p.shape + (2,))[::-1]  # (x2 M1, x0 M0), uint32 halves
        np.bitwise_xor(halves[:, :, _HI], b, out=a)
        a ^= key
        b = halves[:, :, _LO]
    return a[0], b[0], a[1], b[1]


def philox4x32(counters: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """The Philox4x32-10 bijection: ``uint32[..., 4]`` counters -> ``uint32[..., 4]`` outputs.

    ``counters`` is any integer array whose last axis has length 4 and whose values are 32-bit
    words (lane 0 first, as in Random123's ``ctr.v[0]``); ``key`` is ``(k0, k1)``, two 32-bit
    words. Every counter is mapped independently (vectorised over the leading axes).
    """
    c = np.asarray(counters)
    if c.ndim == 0 or c.shape[-1] != 4:
        raise ValueError(f"counters must have shape (..., 4), got {c.shape}")
    if c.dtype != np.uint32:
        if not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"counters must be 32-bit unsigned integers, got dtype {c.dtype}")
        if c.size and (int(c.min()) < 0 or int(c.max()) > _MASK32):
            raise ValueError("counters must be 32-bit unsigned integers (values in [0, 2^32))")
    try:
        k0, k1 = key
    except (TypeError, ValueError):
        raise ValueError(f"key must be a pair (k0, k1) of 32-bit words, got {key!r}") from None
    k0 = _uint(k0, "key[0]", _U32, "[0, 2^32)")
    k1 = _uint(k1, "key[1]", _U32, "[0, 2^32)")
    flat = c.reshape(-1, 4)
    out = np.empty(flat.shape, dtype=np.uint32)
    work = _Work(min(len(flat), _CHUNK))
    for s in range(0, len(flat), _CHUNK):
        n = min(_CHUNK, len(flat) - s)
        w = work.view(n)
        for lane, dst in enumerate((w.x0, w.x1, w.x2, w.x3)):
            dst[...] = flat[s : s + n, lane]
        for lane, lanes in enumerate(_rounds(w, k0, k1)):
            out[s : s + n, lane] = lanes
    return out.reshape(c.shape)


def random_words(seed: int, step: int, node_id: int, start: int, count: int) -> np.ndarray:
    """Words ``start .. start + count - 1`` of the stream of ``(seed, step, node_id)`` (uint32[count]).

    ``seed`` is 64-bit, ``step`` and ``node_id`` 32-bit, and ``start + count <= 2^64``; anything
    else (negative, too large, not an integer) is refused with ValueError (TypeError for a
    non-integer). The layout is stated in the module docstring; any split of a range into
    sub-ranges gives the same words.
    """
    seed, step, node_id, start, count = _checked(seed, step, node_id, start, count)
    if count == 0:
        return np.empty(0, dtype=np.uint32)
    return _words_randomgen(seed, step, node_id, start, count)


def _checked(seed: object, step: object, node_id: object, start: object, count: object
             ) -> tuple[int, int, int, int, int]:
    """The arguments of :func:`random_words` as Python ints, each in its range (else ValueError /
    TypeError)."""
    seed = _uint(seed, "seed", _U64, "[0, 2^64)")
    step = _uint(step, "step", _U32, "[0, 2^32)")
    node_id = _uint(node_id, "node_id", _U32, "[0, 2^32)")
    start = _uint(start, "start", _U64, "[0, 2^64)")
    count = _uint(count, "count", _U64 + 1, "[0, 2^64]")
    if start + count > _U64:
        raise ValueError(f"start + count must be at most 2^64 (the stream's length), got {start + count}")
    return seed, step, node_id, start, count


class _RandomgenStream:
    """randomgen's C Philox4x32-10 keyed by one seed, repositioned per draw: the counter
    ``(first block, step, node)`` as one 128-bit integer, less one (the generator advances before
    each block; mod 2^128), an empty buffer, ``start & 3`` leading words skipped. The block index
    stays below 2^62, so the counter's increment never carries into ``step``. Setting the state of
    one generator costs about 6 us, building one about 15 us; below :data:`RAW_MAX` words the raw
    outputs (uint64 lanes holding the 32-bit words) are cheapest, above it ``Generator.integers``
    over the full uint32 range (the same words, no 8-byte temporary)."""

    RAW_MAX = 1 << 16

    def __init__(self, seed: int) -> None:
        self._bg = _RandomgenPhilox(counter=0, key=seed, number=4, width=32)
        self._gen = np.random.Generator(self._bg)
        self._state = self._bg.state
        self._state["buffer_pos"] = 4  # empty: the next word starts a block

    def words(self, step: int, node_id: int, start: int, count: int) -> np.ndarray:
        """:func:`random_words` of this seed (checked arguments)."""
        offset = start & 3
        counter = (((start >> 2) | (step << 64) | (node_id << 96)) - 1) % _U128
        self._state["state"]["counter"] = np.array([(counter >> s) & _MASK32 for s in (0, 32, 64, 96)], np.uint32)
        self._bg.state = self._state
        n = offset + count
        if n <= self.RAW_MAX:
            words = self._bg.random_raw(n).astype(np.uint32)
        else:
            words = self._gen.integers(0, _U32, n, dtype=np.uint32)  # the full range: the raw words
        return words[offset:] if offset else words


class _Streams(threading.local):
    """This thread's generators, one per seed (the last :data:`KEEP` seeds): building one costs
    about 13 us, repositioning it 2.5 us. Every draw sets the whole counter and empties the
    buffer, so a kept generator gives the words a new one would."""

    KEEP = 4

    def __init__(self) -> None:
        self.by_seed: dict[int, _RandomgenStream] = {}

    def get(self, seed: int) -> _RandomgenStream:
        stream = self.by_seed.get(seed)
        if stream is None:
            if len(self.by_seed) >= self.KEEP:
                self.by_seed.pop(next(iter(self.by_seed)))
            stream = self.by_seed[seed] = _RandomgenStream(seed)
        return stream


_STREAMS = _Streams()


def _words_randomgen(seed: int, step: int, node_id: int, start: int, count: int) -> np.ndarray:
    """:func:`random_words` (checked arguments) by randomgen's C Philox4x32-10."""
    return _STREAMS.get(seed).words(step, node_id, start, count)


def _words_numpy(seed: int, step: int, node_id: int, start: int, count: int) -> np.ndarray:
    """:func:`random_words` (checked arguments) on the numpy rounds (the specification)."""
    if count == 0:
        return np.empty(0, dtype=np.uint32)
    first = start >> 2
    nblocks = ((start + count - 1) >> 2) - first + 1
    out = np.empty((nblocks, 4), dtype=np.uint32)
    work = _Work(min(nblocks, _CHUNK))
    for s in range(0, nblocks, _CHUNK):
        n = min(_CHUNK, nblocks - s)
        w = work.view(n)
        b = first + s  # < 2^62: the block indices need no wrap
        lo, hi = b & _MASK32, b >> 32
        if lo + n <= _U32:  # the chunk's low words do not wrap: one arange, a constant high word
            w.x0[...] = np.arange(lo, lo + n, dtype=np.uint32)
            w.x1.fill(hi)
        else:
            blocks = np.arange(b, b + n, dtype=np.uint64)
            w.x0[...] = blocks & np.uint64(_MASK32)  # block & 0xffffffff
            w.x1[...] = blocks >> np.uint64(32)  # block >> 32
        w.x2.fill(step)
        w.x3.fill(node_id)
        for lane, lanes in enumerate(_rounds(w, seed & _MASK32, seed >> 32)):
            out[s : s + n, lane] = lanes
    offset = start & 3
    if offset == 0 and count == 4 * nblocks:
        return out.reshape(-1)
    return out.reshape(-1)[offset : offset + count].copy()


def random_words_many(seed: int, step: int, requests: Sequence[tuple[int, int, int]]) -> list[np.ndarray]:
    """``[random_words(seed, step, node_id, start, count) for (node_id, start, count) in requests]``,
    the same words, at the least cost: one randomgen generator repositioned for each request, except
    that when at least :data:`BATCH_MIN` requests are under :data:`BATCH_MAX` words, those are
    computed by the numpy rounds in one pass over all their blocks (their counters laid end to end;
    a fixed cost of about 100 us of numpy calls, against about 6 us a request for randomgen)."""
    seed = _uint(seed, "seed", _U64, "[0, 2^64)")
    step = _uint(step, "step", _U32, "[0, 2^32)")
    checked = [_checked(seed, step, nid, start, count)[2:] for nid, start, count in requests]
    tiny = [i for i, (_, _, count) in enumerate(checked) if count < BATCH_MAX]
    batched = set(tiny) if len(tiny) >= BATCH_MIN else set()
    res: list[np.ndarray] = [np.empty(0, dtype=np.uint32)] * len(checked)
    stream: _RandomgenStream | None = None
    for i, (nid, start, count) in enumerate(checked):
        if count and i not in batched:
            stream = stream or _STREAMS.get(seed)
            res[i] = stream.words(step, nid, start, count)
    if batched:
        order = sorted(batched)
        for i, words in zip(order, _many_numpy(seed, step, [checked[i] for i in order])):
            res[i] = words
    return res


def _many_numpy(seed: int, step: int, requests: Sequence[tuple[int, int, int]]) -> list[np.ndarray]:
    """The numpy half of :func:`random_words_many` (checked requests): every request's blocks in
    one pass."""
    firsts, sizes, nids = [], [], []
    for nid, start, count in requests:
        first = start >> 2
        firsts.append(first)
        sizes.append(((start + count - 1) >> 2) - first + 1 if count else 0)
        nids.append(nid)
    total = sum(sizes)
    out = np.empty((total, 4), dtype=np.uint32)
    if total:
        offsets = np.cumsum([0] + sizes[:-1])
        # block index of every row: first_r + (row - offset_r); < 2^62, no wrap
        blocks = np.arange(total, dtype=np.uint64)
        blocks += np.repeat(np.array(firsts, np.uint64) - offsets.astype(np.uint64), sizes)
        ids = np.repeat(np.array(nids, np.uint32), sizes)
        work = _Work(min(total, _CHUNK))
        for s in range(0, total, _CHUNK):
            n = min(_CHUNK, total - s)
            w = work.view(n)
            np.bitwise_and(blocks[s : s + n], np.uint64(_MASK32), out=w.x0, casting="unsafe")
            np.right_shift(blocks[s : s + n], np.uint64(32), out=w.x1, casting="unsafe")
            w.x2.fill(step)
            w.x3[...] = ids[s : s + n]
            for lane, lanes in enumerate(_rounds(w, seed & _MASK32, seed >> 32)):
                out[s : s + n, lane] = lanes
    flat = out.reshape(-1)
    res, row = [], 0
    for (_, start, count), size in zip(requests, sizes):
        o = 4 * row + (start & 3)
        res.append(flat[o : o + count])
        row += size
    return res


def uniform_bits(words: np.ndarray, k: int) -> np.ndarray:
    """The top ``k`` bits (1 <= k <= 32) of each uint32 word: uniform integers in ``[0, 2^k)``.

    A stochastic rounding kernel compares them with the ``k``-bit fraction it rounds away
    (``floor(v) + (U < frac(v) * 2^k)``). Returns a new uint32 array of ``words``' shape.
    """
    k = _uint(k, "k", 33, "[1, 32]")
    if k == 0:
        raise ValueError("k must be in [1, 32], got 0")
    w = np.asarray(words)
    if w.dtype != np.uint32:
        raise ValueError(f"words must be a uint32 array (from random_words), got dtype {w.dtype}")
    return np.right_shift(w, np.uint32(32 - k))

"""C exponential-family and erf / GELU kernels against intref.expo / intref.gelu, bit for bit:
i-exp on every Q16 input of [-12, 0] and past the shift cap, ilog2 at every power of two and
its neighbours, Exp / Softmax / Softmax + cross-entropy / Sigmoid / Tanh / Erf / GELU (both
erfs) forward and backward on shapes, widths, exponents (coarse ones saturate the Q16 clamp)."""

from __future__ import annotations

import numpy as np
import pytest

from rctc.runtime.intref import expo, gelu
from tests.native.intops_cases import SHAPES, check, edge_tensors, rand_words


def test_iexp_every_q16_input(intops) -> None:
    x = np.arange(-12 * 2**16, 1, dtype=np.int64)
    assert np.array_equal(intops.iexp(x), expo.iexp(x))
    far = np.array([-(2**40), -(2**41), -(62 * 45426), -(63 * 45426), -(64 * 45426) - 1, 0, -1], np.int64)
    assert np.array_equal(intops.iexp(far), expo.iexp(far))
    check(intops.iexp, expo.iexp, np.array([0, 1], np.int64))  # positive argument: both refuse


def test_ilog2_powers_and_neighbours(intops) -> None:
    v = np.array(sorted({max(1, (1 << k) + d) for k in range(63) for d in (-1, 0, 1)} | {2**63 - 1}), np.int64)
    assert np.array_equal(intops.ilog2(v), expo.ilog2(v))
    r = np.random.default_rng(0).integers(1, 2**63 - 1, 5000, dtype=np.int64)
    assert np.array_equal(intops.ilog2(r), expo.ilog2(r))
    check(intops.ilog2, expo.ilog2, np.array([5, 0], np.int64))


def test_to_fixed_ierf_erf_as(intops) -> None:
    rng = np.random.default_rng(1)
    q = rng.integers(-(2**31), 2**31, 2000, dtype=np.int64).astype(np.int32)
    for e in (-40, -20, -16, -5, 0, 3, 9, 30, 70):
        for frac in (16, 0, 30):
            check(intops.to_fixed, expo.to_fixed, q, e, frac)
    u = np.concatenate([np.arange(-8 * 2**16, 8 * 2**16, 7, dtype=np.int64),
                        np.array([-(2**40), 2**40, 115933, -115933, 0], np.int64)])
    assert np.array_equal(intops.ierf(u), gelu.ierf(u))
    assert np.array_equal(intops.erf_as(u), gelu.erf_as(u))


ACTS = [("exp", expo), ("sigmoid", expo), ("tanh", expo), ("erf", gelu), ("gelu", gelu)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.int8, np.int16])
def test_activations(intops, shape, dtype) -> None:
    for kind, q in edge_tensors(shape, dtype, 2).items():
        dq = edge_tensors(shape, np.int8, 3)[kind]
        words = rand_words(shape, 4)
        for e in (-20, -12, -7, -3, 0, 2):
            for bits in (4, 8, 16):
                for name, mod in ACTS:
                    check(getattr(intops, name), getattr(mod, name), q, e, bits)
                    check(getattr(intops, name + "_backward"), getattr(mod, name + "_backward"), q, e, dq, -4, bits,
                          words)
                check(intops.gelu, gelu.gelu, q, e, bits, "as")
                check(intops.exp_backward, expo.exp_backward, q, e, dq, -4, bits)


@pytest.mark.parametrize("shape,axis", [((1,), -1), ((7,), 0), ((3, 5), -1), ((3, 5), 0), ((2, 3, 4), 1),
                                        ((3, 4, 5, 6), 2)])
def test_softmax(intops, shape, axis) -> None:
    for kind, q in edge_tensors(shape, np.int8, 5).items():
        dq = edge_tensors(shape, np.int8, 6)[kind]
        for e in (-9, -4, 0, 2):
            for bits in (4, 8, 16):
                check(intops.softmax, expo.softmax, q, e, axis, bits)
                y, ey = expo.softmax(q, e, axis, bits)
                check(intops.softmax_backward, expo.softmax_backward, y, ey, dq, -5, axis, bits, rand_words(shape, 7))
                check(intops.softmax_backward, expo.softmax_backward, y, ey, dq, -5, axis, bits)


@pytest.mark.parametrize("shape,axis", [((32, 2, 16, 16), -1), ((8, 130), -1), ((40, 30, 3), 1), ((1024,), 0)])
def test_softmax_int8_table(intops, shape, axis) -> None:
    """int8 softmax of at least 1024 elements (E looked up in a table of the 256 values x - max
    takes): intref's bits, rows along the last and a middle axis, every edge tensor (x - max = -255
    included), exponents where to_fixed shifts right, left and clamps; and the backward on the
    same rows, dy's exponent above, at and far below the sums'."""
    for q in edge_tensors(shape, np.int8, 8).values():
        full = q.copy()
        full.flat[0], full.flat[-1] = -128, 127
        for x in (q, full):
            for e in (-12, -4, 0, 3, 6):
                check(intops.softmax, expo.softmax, x, e, axis, 8)
        check(intops.softmax, expo.softmax, q, -6, axis, 16)
        y, ey = expo.softmax(full, -4, axis, 8)  # the backward's int8 rows (sums in int64, dy << k0)
        for dq, de in ((q, -5), (full, 9), (q, -40)):
            check(intops.softmax_backward, expo.softmax_backward, y, ey, dq, de, axis, 8, rand_words(shape, 9))
            check(intops.softmax_backward, expo.softmax_backward, y, ey, dq, de, axis, 16)


@pytest.mark.parametrize("shape", [(1, 1), (1, 10), (7, 3), (32, 10)])
def test_softmax_cross_entropy(intops, shape) -> None:
    rng = np.random.default_rng(shape[0])
    labels = rng.integers(0, shape[1], shape[0])
    for q in edge_tensors(shape, np.int16, 8).values():
        for e in (-12, -6, -2, 0, 3):
            check(intops.softmax_cross_entropy, expo.softmax_cross_entropy, q, e, labels)
            check(intops.softmax_cross_entropy, expo.softmax_cross_entropy, q, e, labels - shape[1])  # numpy indexing
            for bits in (4, 8, 16):
                check(intops.softmax_cross_entropy_backward, expo.softmax_cross_entropy_backward, q, e, labels, bits)
                check(intops.softmax_cross_entropy_backward, expo.softmax_cross_entropy_backward, q, e, labels, bits,
                      rand_words(shape, 9))
    with pytest.raises(ValueError):
        intops.softmax_cross_entropy(np.zeros(shape, np.int8), 0, labels + shape[1])

"""Shared inputs for the C-vs-intref kernel tests: edge-value tensors and a bit-exact comparer.

Every case compares a C kernel (``rctc.native.intops.IntOps``) with the intref numpy function
of the same name on the same arguments: equal dtypes, shapes, values and exponents, or the
same exception type when intref refuses the input.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.native.conftest import same

SHAPES = [(1,), (7,), (2, 3, 5), (3, 4, 5, 6)]
DTYPES = [np.int8, np.int16, np.int32]


def edge_tensors(shape: tuple[int, ...], dtype: type, seed: int) -> dict[str, np.ndarray]:
    """Random, zeros, saturated (+-qmax of the dtype), negative-only, ties (repeated values)."""
    rng = np.random.default_rng(seed)
    m = np.iinfo(dtype).max
    lim = min(m, 2**20)
    return {
        "random": rng.integers(-lim, lim + 1, shape).astype(dtype),
        "zeros": np.zeros(shape, dtype),
        "saturated": rng.choice(np.array([-m, m], dtype), shape),
        "negative": (-rng.integers(1, lim + 1, shape)).astype(dtype),
        "ties": rng.choice(np.array([-3, 0, 3, 5], dtype), shape),
    }


def rand_words(shape: tuple[int, ...], seed: int) -> np.ndarray:
    w = np.random.default_rng(seed + 1000).integers(0, 2**32, shape, dtype=np.uint32)
    flat = w.reshape(-1)
    flat[: min(3, flat.size)] = np.array([0, 2**32 - 1, 2**31], np.uint32)[: min(3, flat.size)]
    return w


def check(c_fn, ref_fn, *args, **kwargs) -> None:
    """``c_fn`` and ``ref_fn`` agree bit for bit, or both raise the same exception type."""
    try:
        want = ref_fn(*args, **kwargs)
    except (OverflowError, ValueError) as exc:
        with pytest.raises(type(exc)):
            c_fn(*args, **kwargs)
        return
    got = c_fn(*args, **kwargs)
    assert same(got, want), (getattr(ref_fn, "__name__", ref_fn), str(got)[:400], str(want)[:400])

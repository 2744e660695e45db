"""Native-kernel test set-up: one build of the C library per session, in a private cache.

Needs: a C compiler (the system ``cc``; ``.ci/run`` guarantees one). The ``kernels`` fixture is
:class:`rctc.native.kernels.Kernels` over a library built into ``native_cache`` (the session's private
``XDG_CACHE_HOME``, see tests/conftest.py), so the tests never touch the user's cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rctc.native.build import load_library
from rctc.native.kernels import Kernels


@pytest.fixture(scope="session")
def native_env(private_native_cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(private_native_cache)  # the session's cache (tests/conftest.py)
    return env


@pytest.fixture(scope="session")
def native_cache(native_env: dict[str, str]) -> Path:
    return Path(native_env["XDG_CACHE_HOME"]) / "rctc" / "native"


@pytest.fixture(scope="session")
def kernels(native_env: dict[str, str]) -> Kernels:
    return Kernels(load_library(env=native_env))


def simd_variants(k: Kernels) -> list[str]:
    """SIMD variants this CPU runs (each is compared with the portable kernel)."""
    return [v for v in ("avx2", "avx512vnni") if k.has_variant(v)]


@pytest.fixture(scope="session")
def intops(native_env: dict[str, str]):
    from rctc.native.intops import IntOps

    return IntOps(load_library(env=native_env))


def same(a, b) -> bool:
    """Bit-exact equality of two intref-style results (arrays by dtype, shape and values; ints)."""
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (np.ndarray, np.generic)) or isinstance(b, (np.ndarray, np.generic)):
        # a 0-d result is an array or a numpy scalar depending on intref's code path: same bits
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return int(a) == int(b)

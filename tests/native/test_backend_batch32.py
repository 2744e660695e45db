"""The native backend at batch 32 (the benchmarks' size, where the threaded element-wise and
normalisation kernels split their work) against the numpy reference, bit for bit, at 1 and 2
threads: ResNet-8 and MobileNet, two steps each with the bitwidth controller."""

from __future__ import annotations

from typing import Any

import pytest

from rctc.native.executor import NativeExecutor
from tests.native.test_backend import assert_same_run, one_blas_thread, train

__all__ = ["one_blas_thread"]  # the module fixture (autouse) of test_backend


@pytest.fixture(scope="module")
def references() -> dict[str, Any]:
    return {}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name", ["resnet8", "mobilenet"])
def test_batch32_native_equals_numpy(name: str, threads: int, references: dict[str, Any]) -> None:
    if name not in references:
        references[name] = train(name, None, batch=32, steps=2)
    got = train(name, NativeExecutor, threads, batch=32, steps=2)
    assert got["executor"].fallbacks() == 0
    assert_same_run(got, references[name])


@pytest.mark.parametrize("name", ["resnet8", "mobilenet"])
def test_batch1_native_equals_numpy(name: str) -> None:
    """One image: the convolutions' serial paths of the host step (nothing to split)."""
    want = train(name, None, batch=1, steps=2)
    got = train(name, NativeExecutor, 2, batch=1, steps=2)
    assert got["executor"].fallbacks() == 0
    assert_same_run(got, want)

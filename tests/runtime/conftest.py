"""Fixtures shared by the runtime tests."""

from __future__ import annotations

import pytest

from rctc.runtime import blas


@pytest.fixture(params=["cblas", "numpy"])
def gemm_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on the CBLAS binding and on the np.matmul fallback."""
    if request.param == "numpy":
        monkeypatch.setattr(blas, "_CBLAS", None)
        monkeypatch.setattr(blas, "_PROBED", True)
    elif blas.cblas() is None:
        pytest.skip("no CBLAS binding on this machine (the numpy fallback is tested)")
    return str(request.param)

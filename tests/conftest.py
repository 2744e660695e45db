"""Shared pytest set-up.

* The tests folder is importable (for the torch_twins and gradcheck helpers).
* ``cli``: runs ``rctc`` in-process (click's CliRunner, stdout and stderr kept apart).
* ``compiled_models``: every model of ``rctc.models.BUILDERS`` compiled once per session
  (``--mode fp32 --batch-size 8``), name -> (.onnx path, .rct path).
* ``rel_err``: the parity measure used against onnxruntime (see :func:`max_rel_err`).
* Native builds (the CLI's default backend when a C compiler is found) go to a private
  ``XDG_CACHE_HOME`` for the session, never the user's cache (subprocesses inherit it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

PARITY_BATCH = 8


@pytest.fixture(scope="session", autouse=True)
def private_native_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's native build cache (``XDG_CACHE_HOME``), shared by every test that builds."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(folder))
    yield folder
    mp.undo()


def max_rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """Largest element-wise relative error ``|got - ref| / |ref|``.

    The denominator is floored at 1e-3 of the output's largest magnitude, so entries that
    are (nearly) zero by cancellation do not turn float32 rounding into a huge ratio. Shapes
    must agree exactly and non-finite values count as an infinite error.
    """
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        raise AssertionError(f"shape {got.shape} != reference shape {ref.shape}")
    if not (np.all(np.isfinite(got)) and np.all(np.isfinite(ref))):
        return float("inf")
    if ref.size == 0:
        return 0.0
    floor = max(1e-3 * float(np.max(np.abs(ref))), 1e-30)
    return float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), floor)))


@pytest.fixture(scope="session")
def rel_err() -> Callable[[np.ndarray, np.ndarray], float]:
    return max_rel_err


class CliResult:
    """What one ``rctc`` invocation did (in-process)."""

    def __init__(self, exit_code: int, stdout: str, stderr: str, exception: BaseException | None) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.exception = exception

    def __repr__(self) -> str:
        return (f"CliResult(exit={self.exit_code}, stdout={self.stdout!r}, stderr={self.stderr!r}, "
                f"exc={self.exception!r})")


def run_cli(args: Sequence[str]) -> CliResult:
    """Invoke ``rctc ARGS`` through click's CliRunner (click >= 8.2 keeps stderr separate)."""
    from click.testing import CliRunner

    from rctc.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    return CliResult(result.exit_code, result.stdout, result.stderr, result.exception)


@pytest.fixture(scope="session")
def cli() -> Callable[[Sequence[str]], CliResult]:
    return run_cli


@pytest.fixture(scope="session")
def compiled_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """name -> (ONNX file, .rct compiled with ``--mode fp32 --batch-size 8``) for every builder (seed 1)."""
    from rctc import models

    out = tmp_path_factory.mktemp("compiled")
    compiled: dict[str, tuple[Path, Path]] = {}
    for name in models.BUILDERS:
        onnx_path = out / f"{name}.onnx"
        onnx_path.write_bytes(models.build(name, seed=1).SerializeToString())
        rct = out / f"{name}.rct"
        res = run_cli(["compile", onnx_path, "-o", rct, "--mode", "fp32", "--batch-size", str(PARITY_BATCH)])
        assert res.exit_code == 0, f"compiling {name} failed: {res!r}"
        compiled[name] = (onnx_path, rct)
    return compiled

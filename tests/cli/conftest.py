"""Shared fixtures of the CLI hardening tests: a compiled model, small data, and the refusal contract.

The contract every bad input must meet (issue 18): exit code 2, exactly one ``rctc: error:`` line
on stderr, no traceback, nothing on stdout, and every file that existed before (inputs and
pre-existing outputs) byte-identical afterwards, with no new file left behind.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from rctc.cli import main
from rctc.models import path as model_path

BATCH = 4


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` (lock files included: none may stay)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def invoke(args: Sequence[object]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def assert_contract(r: Result, allowed: tuple[int, ...] = (2,)) -> None:
    """No traceback; exit code in ``allowed``; a failure is exactly one ``rctc: error:`` line."""
    assert r.exception is None or isinstance(r.exception, SystemExit), f"traceback: {r.exception!r}\n{r.stderr}"
    assert r.exit_code in allowed, (r.exit_code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    if r.exit_code == 2:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("rctc: error: "), r.stderr
        assert r.stdout == "", r.stdout


@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled MLP (64 -> 10 classes) compiled in rct mode at batch 4: a read-only master copy."""
    out = tmp_path_factory.mktemp("compiled") / "mlp.rct"
    r = invoke(["compile", model_path("mlp"), "-o", out, "--batch-size", BATCH])
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture
def work(tmp_path: Path, compiled: Path) -> Path:
    """A folder with ``mlp.rct``, ``mlp.onnx`` and ``data.npz`` (12 samples of digits-shaped data)."""
    shutil.copy(compiled, tmp_path / "mlp.rct")
    shutil.copy(model_path("mlp"), tmp_path / "mlp.onnx")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((12, 64), dtype=np.float32), y=rng.integers(0, 10, 12))
    return tmp_path


@pytest.fixture
def refused() -> Callable[..., str]:
    """``refused(folder, args, needle)``: run ``rctc ARGS``; assert the contract (exit 2, one line containing
    ``needle``, every file under ``folder`` unchanged and none added); returns the error line."""

    def check(folder: Path, args: Sequence[object], needle: str = "") -> str:
        before = snapshot(folder)
        r = invoke(args)
        assert_contract(r)
        line = r.stderr.strip()
        assert needle in line, line
        assert snapshot(folder) == before, f"files changed: {line}"
        return line

    return check


@pytest.fixture
def run() -> Callable[[Sequence[object]], Result]:
    """Run ``rctc ARGS`` in-process (click's CliRunner)."""
    return invoke


@pytest.fixture
def contract() -> Callable[..., None]:
    """``contract(result, allowed=(2,))``: see :func:`assert_contract`."""
    return assert_contract

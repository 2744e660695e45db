"""Faults while writing: a full disk, a process killed mid-write, a second writer. The user's
existing files stay byte-identical and loadable; no temporary file is left by a failed write."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rctc.rct_format
from rctc.api import load


def _existing_outputs(work: Path) -> dict[str, list[object]]:
    """Commands that each overwrite a file that already exists in ``work``."""
    w = work
    for name in ("old.rct", "old.onnx"):
        (w / name).write_bytes((w / "mlp.rct").read_bytes())
    (w / "old.npz").write_bytes((w / "data.npz").read_bytes())
    (w / "old.png").write_bytes(b"\x89PNG previous report")
    (w / "run.jsonl").write_text('{"step": 0, "loss": 2.0}\n{"step": 1, "loss": 1.0}\n')
    return {
        "compile": ["compile", w / "mlp.onnx", "-o", w / "old.rct", "--batch-size", "4"],
        "train in place": ["train", w / "old.rct", "--data", w / "data.npz", "--steps", "1"],
        "train -o": ["train", w / "mlp.rct", "--data", w / "data.npz", "--steps", "1", "-o", w / "old.rct"],
        "checkpoint": ["train", w / "mlp.rct", "--data", w / "data.npz", "--steps", "2", "-o", w / "new.rct",
                       "--checkpoint-every", "1"],
        "predict": ["predict", w / "mlp.rct", "--data", w / "data.npz", "-o", w / "old.npz"],
        "export": ["export", w / "mlp.rct", "-o", w / "old.onnx"],
        "report": ["report", w / "run.jsonl", "-o", w / "old.png"],
    }


def _enospc_on_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files rctc writes atomically accept a few bytes, then the disk is full."""
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f: Any) -> None:
            self.f = f

        def write(self, data: bytes) -> int:
            self.f.write(data[:7])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()

    monkeypatch.setattr(rctc.rct_format.os, "fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k)))


def _enospc_on_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rctc.rct_format.os, "fsync", fsync)


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_disk_full_mid_write(where: str, work: Path, refused: Callable, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = _existing_outputs(work)
    (_enospc_on_write if where == "write" else _enospc_on_fsync)(monkeypatch)
    for name, args in commands.items():
        line = refused(work, args, "No space left on device")
        assert "nothing was changed" in line, (name, line)
    assert not list(work.glob(".*.tmp")) and not list(work.glob("new.rct*"))


def _rctc_dying_at(hook: str, args: list[object], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``rctc ARGS`` in a real process that is killed (``os._exit``) at its first ``os.<hook>`` of a write."""
    code = (f"import os\nos.{hook} = lambda *a, **k: os._exit(137)\n"
            "from rctc.cli import main\nmain()\n")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_killed_during_a_write(work: Path, run: Callable, contract: Callable) -> None:
    """A run killed when the new bytes are written and synced but not yet renamed into place leaves the old
    model intact and loadable; the next run succeeds."""
    model = work / "mlp.rct"
    before = model.read_bytes()
    p = _rctc_dying_at("replace", ["train", model, "--data", work / "data.npz", "--steps", "1"], work)
    assert p.returncode == 137, p.stderr
    assert model.read_bytes() == before
    load(model)
    contract(run(["train", model, "--data", work / "data.npz", "--steps", "1"]), allowed=(0,))
    assert model.read_bytes() != before


def test_a_second_process_writing_the_same_output_is_refused(work: Path, refused: Callable) -> None:
    """Another process (a real one) holds the output's lock (``.NAME.lock`` beside it, ``flock``); a training
    onto it is refused, nothing changes."""
    out = work / "t.rct"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys\n"
         f"fd = os.open({str(work / '.t.rct.lock')!r}, os.O_RDWR | os.O_CREAT)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('locked', flush=True)\nsys.stdin.readline()\nos.unlink(" + repr(str(work / ".t.rct.lock")) + ")\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        refused(work, ["train", work / "mlp.rct", "--data", work / "data.npz", "--steps", "1", "-o", out],
                "another rctc command is writing this file right now")
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not (work / ".t.rct.lock").exists() and not out.exists()
    assert np.load(work / "data.npz")["x"].shape == (12, 64)

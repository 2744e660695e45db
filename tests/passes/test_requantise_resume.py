"""Kill -9 and --resume of a training run compiled with --elementwise integer ends bit-identical."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from rctc import models
from rctc.cli import main


def test_integer_run_killed_and_resumed_is_bit_identical(tmp_path: Path) -> None:
    """kill -9 mid-run, --resume: the same bytes as an uninterrupted run (the integer kernels'
    random words come from the checkpointed generator)."""
    model = tmp_path / "lenet.rct"
    runner = CliRunner()
    assert runner.invoke(main, ["compile", str(models.path("lenet")), "-o", str(model), "--elementwise", "integer",
                                "--adjust-every", "5"]).exit_code == 0

    def args(out: Path) -> list[str]:
        return ["train", str(model), "--data", "digits", "--epochs", "2", "-o", str(out), "--checkpoint-every", "1",
                "--quiet"]

    ref = tmp_path / "ref.rct"
    assert runner.invoke(main, args(ref)).exit_code == 0
    out = tmp_path / "killed.rct"
    ckpt = out.with_name(out.name + ".ckpt")
    cmd = [sys.executable, "-c", "from rctc.cli import main; main()"]
    proc = subprocess.Popen([*cmd, *args(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not ckpt.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    r = subprocess.run([*cmd, *args(out), "--resume"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == ref.read_bytes()

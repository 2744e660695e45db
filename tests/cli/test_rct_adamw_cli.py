"""rct AdamW from the command line: compile with --betas / --eps / --weight-decay and train on
digits; the moments survive a SIGKILL + --resume bit for bit; bad options get one line, exit 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import rctc
from rctc.models import path as model_path

RCTC = [sys.executable, "-c", "from rctc.cli import main; main()"]
ADAMW = ["--mode", "rct", "--optimizer", "adamw", "--betas", "0.9", "0.99", "--eps", "1e-6", "--weight-decay", "0.05"]


def _ckpt_step(path: Path) -> int | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return int(json.loads(z["meta"].tobytes())["step"])
    except (OSError, ValueError, KeyError):
        return None


def test_compile_and_train_on_digits(tmp_path: Path, run) -> None:
    out = tmp_path / "m.rct"
    r = run(["compile", model_path("mlp"), "-o", out, *ADAMW])
    assert r.exit_code == 0, r.output
    g = rctc.load(out).graph
    ups = [n for n in g.nodes if n.meta.get("phase") == "update"]
    assert {n.op_type for n in ups} <= {"FusedIntAdamWUpdate", "IntAccAdamWUpdate"}
    want = tuple(float(np.float32(v)) for v in (0.9, 0.99, 1e-6, 0.05))  # ONNX float attributes
    assert all((n.attrs["beta1"], n.attrs["beta2"], n.attrs["epsilon"], n.attrs["weight_decay"]) == want for n in ups)
    r = run(["inspect", out, "--json"])
    assert r.exit_code == 0, r.output
    n = sum(p.data.size for p in g.params())
    assert json.loads(r.stdout)["predicted"]["optimizer_memory_bytes"] >= 8 * n
    r = run(["train", out, "--data", "digits", "--epochs", "2", "--lr", "0.003", "--quiet"])
    assert r.exit_code == 0, r.output
    r = run(["eval", out, "--data", "digits:test", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["accuracy"] > 0.8


def test_kill_and_resume_is_bit_identical(tmp_path: Path, run) -> None:
    model = tmp_path / "m.rct"
    assert run(["compile", model_path("mlp"), "-o", model, *ADAMW, "--adjust-every", "5"]).exit_code == 0
    args = ["train", str(model), "--data", "digits", "--epochs", "1", "--lr", "0.003", "--checkpoint-every", "1",
            "--quiet"]
    ref = tmp_path / "ref.rct"
    r = subprocess.run([*RCTC, *args, "-o", str(ref)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "killed.rct"
    ckpt = out.with_name(out.name + ".ckpt")
    proc = subprocess.Popen([*RCTC, *args, "-o", str(out), "--backend", "numpy"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        step = _ckpt_step(ckpt) if ckpt.exists() else None
        if step is not None and step >= 17:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    r = subprocess.run([*RCTC, *args, "-o", str(out), "--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == ref.read_bytes()
    g = rctc.load(out).graph
    counts = {int(g.value(f"{p.name}.step").data) for p in g.params()}
    assert len(counts) == 1 and counts.pop() > 17  # one step count per parameter, past the kill


@pytest.mark.parametrize(("args", "needle"), [
    (["--betas", "0.9", "1.0"], "--betas must be in [0, 1)"),
    (["--betas", "0.9", "0.9999999999"], "rct mode keeps each beta"),
    (["--eps", "0"], "--eps must be > 0"),
    (["--weight-decay", "-1"], "weight-decay"),
    (["--momentum", "0.9"], "--momentum has no effect with --optimizer adamw"),
])
def test_bad_adamw_options_are_refused(tmp_path: Path, refused, args: list[str], needle: str) -> None:
    onnx_copy = tmp_path / "mlp.onnx"
    onnx_copy.write_bytes(Path(model_path("mlp")).read_bytes())
    refused(tmp_path, ["compile", onnx_copy, "-o", tmp_path / "m.rct", "--mode", "rct", "--optimizer", "adamw",
                       *args], needle)

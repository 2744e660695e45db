"""Checkpoints and resume: SIGKILL at random steps + --resume gives a bit-identical .rct; Ctrl-C
stops cleanly (exit 130, final checkpoint, valid model); bad checkpoints and a full disk give one
line and exit 2 without touching the last good model and checkpoint."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rctc.cli import main
from rctc.rct_format import load_rct

MODELS = Path(__file__).resolve().parents[1] / "models"
EPOCHS = 2  # mlp, batch 32, digits:train (1438 samples): 44 steps per epoch -> 88 steps, mid-epoch boundaries


RCTC = [sys.executable, "-c", "from rctc.cli import main; main()"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RCTC, *args], capture_output=True, text=True, timeout=120)


def _train_args(model: Path, out: Path) -> list[str]:
    return ["train", str(model), "--data", "digits", "--epochs", str(EPOCHS), "-o", str(out),
            "--checkpoint-every", "1", "--quiet"]


def _ckpt_step(path: Path) -> int:
    with np.load(path, allow_pickle=False) as z:
        return int(json.loads(z["meta"].tobytes())["step"])


def _step_or_none(path: Path) -> int | None:
    """The checkpoint's step, or None while it cannot be read (being replaced)."""
    try:
        return _ckpt_step(path)
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpt")
    model = d / "mlp.rct"
    r = CliRunner().invoke(main, ["compile", str(MODELS / "mlp.onnx"), "-o", str(model), "--adjust-every", "5"])
    assert r.exit_code == 0, r.output
    ref = d / "ref.rct"
    r = CliRunner().invoke(main, _train_args(model, ref))
    assert r.exit_code == 0, r.output
    plain = d / "plain.rct"  # checkpointing must not change the run
    r = CliRunner().invoke(main, ["train", str(model), "--data", "digits", "--epochs", str(EPOCHS), "-o", str(plain)])
    assert r.exit_code == 0, r.output
    assert plain.read_bytes() == ref.read_bytes()
    return {"dir": d, "model": model, "ref": ref}


def test_kill_and_resume_is_bit_identical(setup: dict[str, Path]) -> None:
    d, model, ref = setup["dir"], setup["model"], setup["ref"]
    rng = random.Random(1234)
    steps_killed = []
    for trial in range(3):
        out = d / f"killed{trial}.rct"
        ckpt = out.with_name(out.name + ".ckpt")
        # killed on the numpy backend (slow enough to be killed mid-run; the native one may finish
        # inside the window), resumed on the default backend (native where a C compiler is found)
        proc = subprocess.Popen([*RCTC, *_train_args(model, out), "--backend", "numpy"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # killed once the checkpoint reaches a random step (then a random few ms later, so the kill
        # also lands inside a step or a checkpoint write): mid-run however fast the machine is
        target = rng.randint(1, EPOCHS * 44 - 8)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            step = _step_or_none(ckpt) if ckpt.exists() else None
            if step is not None and step >= target:
                break
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.01))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        newest = ckpt if ckpt.exists() else out.with_name(out.name + ".ckpt.new")
        steps_killed.append(_ckpt_step(newest))
        r = _cli(*_train_args(model, out), "--resume", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["steps"] == EPOCHS * 44
        assert out.read_bytes() == ref.read_bytes(), f"trial {trial}: killed at step {steps_killed[-1]}"
        assert not list(d.glob(f".{out.name}*.tmp"))
    assert all(0 < s < EPOCHS * 44 for s in steps_killed), steps_killed


def test_ctrl_c_stops_cleanly_and_resumes(setup: dict[str, Path]) -> None:
    """Decision: Ctrl-C -> exit 130 (the shell convention for SIGINT) after a final checkpoint and the model."""
    d, model, ref = setup["dir"], setup["model"], setup["ref"]
    out = d / "interrupted.rct"
    ckpt = out.with_name(out.name + ".ckpt")
    args = [a for a in _train_args(model, out) if a not in ("--checkpoint-every", "1")]  # no periodic checkpoints
    proc = subprocess.Popen([*RCTC, *args, "--log", str(d / "int.jsonl")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = d / "int.jsonl"
    deadline = time.monotonic() + 60
    while (not log.exists() or log.stat().st_size == 0) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted after step" in err and "Traceback" not in err
    step = _ckpt_step(ckpt)
    assert 0 < step < EPOCHS * 44
    g = load_rct(out)  # a valid model at the interrupted step
    assert g.meta["step"] == step
    r = _cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == ref.read_bytes()


def _one_line_error(r: object) -> str:
    err = r.stderr  # type: ignore[attr-defined]
    assert r.exit_code == 2, r.output  # type: ignore[attr-defined]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rctc: error: "), err
    return lines[0]


def test_checkpoint_from_another_model(setup: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "lenet.rct"
    assert CliRunner().invoke(main, ["compile", str(MODELS / "lenet.onnx"), "-o", str(other)]).exit_code == 0
    r = CliRunner().invoke(main, ["train", str(other), "--data", "digits", "--steps", "1", "-o", str(other),
                                  "--checkpoint-every", "1"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "out.rct"
    shutil.copy(other.with_name(other.name + ".ckpt"), out.with_name(out.name + ".ckpt"))
    r = CliRunner().invoke(main, _train_args(setup["model"], out) + ["--resume"])
    assert "different model" in _one_line_error(r)
    assert not out.exists()


def test_resume_with_other_arguments(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.rct"
    assert CliRunner().invoke(main, _train_args(setup["model"], out)[:-1] + ["--steps", "3", "--epochs", "1"]
                              ).exit_code == 2  # --steps and --epochs together: refused
    args = ["train", str(setup["model"]), "--data", "digits", "--steps", "3", "-o", str(out), "--checkpoint-every", "1"]
    assert CliRunner().invoke(main, args).exit_code == 0
    r = CliRunner().invoke(main, args[:-1] + ["2", "--resume", "--lr", "0.01"])
    assert "other training arguments" in _one_line_error(r)


def test_resume_of_a_finished_run_says_so(setup: dict[str, Path], tmp_path: Path) -> None:
    """--resume when the checkpoint already holds every step: one line, exit 0, the model intact."""
    out = tmp_path / "out.rct"
    args = ["train", str(setup["model"]), "--data", "digits", "--steps", "4", "-o", str(out), "--checkpoint-every", "2"]
    assert CliRunner().invoke(main, args).exit_code == 0
    trained = load_rct(out)
    r = CliRunner().invoke(main, args + ["--resume"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("nothing to train:") and "holds all 4 steps" in r.output
    again = load_rct(out)
    assert again.meta["step"] == trained.meta["step"] == 4
    for v in trained.state_values():
        np.testing.assert_array_equal(again.value(v.name).data, v.data)


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_checkpoint(setup: dict[str, Path], tmp_path: Path, damage: str) -> None:
    out = tmp_path / "out.rct"
    args = ["train", str(setup["model"]), "--data", "digits", "--steps", "4", "-o", str(out), "--checkpoint-every", "2"]
    assert CliRunner().invoke(main, args).exit_code == 0
    ckpt = out.with_name(out.name + ".ckpt")
    data = bytearray(ckpt.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 3] ^= 0xFF
    else:
        data = bytearray(b"not a checkpoint at all")
    ckpt.write_bytes(bytes(data))
    model_bytes = out.read_bytes()
    r = CliRunner().invoke(main, args + ["--resume"])
    assert "checkpoint" in _one_line_error(r)
    assert out.read_bytes() == model_bytes and ckpt.read_bytes() == bytes(data)


@pytest.mark.parametrize("every", ["1", "0"])
def test_full_disk_keeps_last_good_files(setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         every: str) -> None:
    out = tmp_path / "out.rct"
    args = ["train", str(setup["model"]), "--data", "digits", "--steps", "3", "-o", str(out), "--checkpoint-every", "1"]
    assert CliRunner().invoke(main, args).exit_code == 0
    ckpt = out.with_name(out.name + ".ckpt")
    prev = out.with_name(out.name + ".ckpt.prev")
    before = {p: p.read_bytes() for p in (out, ckpt, prev)}

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    r = CliRunner().invoke(main, ["train", str(setup["model"]), "--data", "digits", "--steps", "5", "-o", str(out),
                                  "--checkpoint-every", every])
    assert "No space left on device" in _one_line_error(r)
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in before)


@pytest.mark.parametrize("version,why", [(1, "old random generator"), (2, "float bitwidth controller")])
def test_old_version_checkpoint_is_refused_in_one_line(setup: dict[str, Path], tmp_path: Path, version: int,
                                                       why: str) -> None:
    """A checkpoint of the format before the counter-based RNG (version 1, with a numpy generator
    state for the step's noise) cannot continue on the same noise, nor one with the float
    controller window (version 2, mean Gavg and saturated fraction per step, from which the
    integer sums cannot be recovered): one line, the model untouched."""
    out = tmp_path / "out.rct"
    args = ["train", str(setup["model"]), "--data", "digits", "--steps", "4", "-o", str(out), "--checkpoint-every", "2"]
    assert CliRunner().invoke(main, args).exit_code == 0
    ckpt = out.with_name(out.name + ".ckpt")
    with np.load(ckpt, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    assert meta["version"] == 3 and meta["seed"] == 0 and "kernel_rng" not in meta
    meta["version"] = version
    if version == 1:
        meta["kernel_rng"] = np.random.default_rng(0).bit_generator.state
    else:
        meta["controller"] = [{k: [[0.5, 0.0]] for k in c} for c in meta["controller"]]
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(ckpt, "wb") as f:
        np.savez(f, **arrays)
    model_bytes = out.read_bytes()
    line = _one_line_error(CliRunner().invoke(main, args + ["--resume"]))
    assert f"{why} (version {version})" in line and "start the run again" in line
    assert out.read_bytes() == model_bytes

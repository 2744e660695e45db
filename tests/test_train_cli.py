"""rctc train / eval on the CLI: the machine interface and every bad-input case of the training issue."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rctc.cli import main
from rctc.models import path


def _run(*args: str) -> object:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("m") / "mlp.rct"
    r = _run("compile", str(path("mlp")), "-o", str(out), "--mode", "fp32", "--batch-size", "16")
    assert r.exit_code == 0, r.output
    return out


def _npz(tmp_path: Path, name: str = "d.npz", **arrays: np.ndarray) -> Path:
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


def _one_line_error(r, needle: str) -> None:  # noqa: ANN001
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rctc: error:") and needle in lines[0], r.stderr
    assert "Traceback" not in r.output


def test_train_json_interface_and_val(compiled: Path, tmp_path: Path) -> None:
    out = tmp_path / "trained.rct"
    before = compiled.read_bytes()
    r = _run("train", str(compiled), "--data", "digits", "--epochs", "2", "--val", "digits:test", "-o", str(out),
             "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert {"steps", "seconds", "ms_per_step", "final_loss", "val_loss", "val_accuracy"} <= set(s)
    assert s["steps"] == 2 * (1438 // 16) and 0 <= s["val_accuracy"] <= 1
    assert compiled.read_bytes() == before, "-o leaves the input alone"
    r = _run("eval", str(out), "--data", "digits:test", "--json")
    ev = json.loads(r.stdout)
    assert {"loss", "accuracy"} <= set(ev) and abs(ev["accuracy"] - s["val_accuracy"]) < 1e-9


def test_train_in_place_steps_keep_last_and_no_shuffle(compiled: Path, tmp_path: Path) -> None:
    p = tmp_path / "m.rct"
    p.write_bytes(compiled.read_bytes())
    rng = np.random.default_rng(0)
    data = _npz(tmp_path, x=rng.standard_normal((20, 64)).astype(np.float32), y=rng.integers(0, 10, 20))
    r = _run("train", str(p), "--data", str(data), "--epochs", "1", "--keep-last", "--no-shuffle", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["steps"] == 2  # 16 + a padded batch of 4
    assert p.read_bytes() != compiled.read_bytes()
    r = _run("train", str(p), "--data", str(data), "--steps", "3", "--json")
    assert json.loads(r.stdout)["steps"] == 3


def test_mse_loss_trains(tmp_path: Path) -> None:
    out = tmp_path / "reg.rct"
    r = _run("compile", str(path("mlp")), "-o", str(out), "--mode", "fp32", "--loss", "mse", "--batch-size", "8")
    assert r.exit_code == 0, r.output
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 64)).astype(np.float32)
    y = (x[:, :10] * 0.5).astype(np.float32)
    data = _npz(tmp_path, x=x, y=y)
    first = json.loads(_run("eval", str(out), "--data", str(data), "--json").stdout)["mse"]
    r = _run("train", str(out), "--data", str(data), "--epochs", "20", "--lr", "0.05", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(_run("eval", str(out), "--data", str(data), "--json").stdout)["mse"] < first * 0.8


@pytest.mark.parametrize("case,needle", [
    ("labels_out_of_range", "labels must be in 0..9"),
    ("y_missing", "no labels"),
    ("length_mismatch", "x has 20 samples but y has 19"),
    ("nan_x", "NaN or Inf"),
    ("inf_y_float", "NaN or Inf"),
    ("wrong_shape", "the model wants [64]"),
])
def test_bad_training_data(compiled: Path, tmp_path: Path, case: str, needle: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 64)).astype(np.float32)
    y = rng.integers(0, 10, 20)
    arrays = {"x": x, "y": y}
    if case == "labels_out_of_range":
        arrays["y"] = y + 5
    elif case == "y_missing":
        del arrays["y"]
    elif case == "length_mismatch":
        arrays["y"] = y[:19]
    elif case == "nan_x":
        x[3, 5] = np.nan
    elif case == "inf_y_float":
        arrays["y"] = y.astype(np.float64)
        arrays["y"][2] = np.inf
    elif case == "wrong_shape":
        arrays["x"] = x[:, :50]
    data = _npz(tmp_path, **arrays)
    before = compiled.read_bytes()
    _one_line_error(_run("train", str(compiled), "--data", str(data), "--steps", "1"), needle)
    assert compiled.read_bytes() == before


def test_loss_becoming_nan_stops_and_keeps_model(compiled: Path, tmp_path: Path) -> None:
    p = tmp_path / "m.rct"
    p.write_bytes(compiled.read_bytes())
    rng = np.random.default_rng(0)
    data = _npz(tmp_path, x=(rng.standard_normal((64, 64)) * 1e3).astype(np.float32), y=rng.integers(0, 10, 64))
    r = _run("train", str(p), "--data", str(data), "--epochs", "50", "--lr", "1e6")
    _one_line_error(r, "at step")
    assert "loss became" in r.stderr
    assert p.read_bytes() == compiled.read_bytes()


@pytest.mark.parametrize("args,needle", [
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--steps", "-1"], "--steps must be >= 1"),
    (["--lr", "-0.1"], "--lr must be > 0"),
    (["--epochs", "1", "--steps", "2"], "not both"),
    (["--val-split", "1.5"], "--val-split must be between 0 and 1"),
])
def test_bad_train_options(compiled: Path, args: list[str], needle: str) -> None:
    _one_line_error(_run("train", str(compiled), "--data", "digits", *args), needle)


def test_eval_on_missing_model_and_data(tmp_path: Path, compiled: Path) -> None:
    _one_line_error(_run("eval", str(tmp_path / "nope.rct"), "--data", "digits"), "no such file")
    _one_line_error(_run("eval", str(compiled), "--data", str(tmp_path / "nope.npz")), "no such data file")

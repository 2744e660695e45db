"""Values of the wrong type or range, in options, data and logs: one line naming the option / file / key."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

OPTION_CASES = [
    (["train", "{rct}", "--data", "{data}", "--lr", "inf"], "--lr must be > 0 and finite, got inf"),
    (["train", "{rct}", "--data", "{data}", "--lr", "nan"], "--lr must be > 0 and finite, got nan"),
    (["train", "{rct}", "--data", "{data}", "--lr", "-0.5"], "--lr must be > 0"),
    (["train", "{rct}", "--data", "{data}", "--lr", "0"], "--lr must be > 0"),
    (["train", "{rct}", "--data", "{data}", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "{rct}", "--data", "{data}", "--steps", "-3"], "--steps must be >= 1"),
    (["train", "{rct}", "--data", "{data}", "--seed", "-1"], "--seed must be in 0.."),
    (["train", "{rct}", "--data", "{data}", "--seed", str(2**64)], "--seed must be in 0.."),
    (["train", "{rct}", "--data", "{data}", "--val-split", "nan"], "--val-split must be between 0 and 1"),
    (["train", "{rct}", "--data", "{data}", "--val-split", "1"], "--val-split must be between 0 and 1"),
    (["train", "{rct}", "--data", "{data}", "--warmup-steps", "-1"], "--warmup-steps must be >= 0"),
    (["train", "{rct}", "--data", "{data}", "--checkpoint-every", "-2"], "--checkpoint-every must be >= 0"),
    (["train", "{rct}", "--data", "{data}", "--steps", "1.5"], "'1.5' is not a valid integer"),
    (["compile", "{onnx}", "-o", "{out}", "--lr", "inf"], "--lr must be > 0 and finite"),
    (["compile", "{onnx}", "-o", "{out}", "--momentum", "nan"], "--momentum must be in [0, 1)"),
    (["compile", "{onnx}", "-o", "{out}", "--momentum", "1"], "--momentum must be in [0, 1)"),
    (["compile", "{onnx}", "-o", "{out}", "--weight-decay", "-inf"], "--weight-decay must be >= 0 and finite"),
    (["compile", "{onnx}", "-o", "{out}", "--gavg-low", "nan"], "--gavg-low must be >= 0 and finite"),
    (["compile", "{onnx}", "-o", "{out}", "--batch-size", "0"], "--batch-size must be in 1..65536"),
    (["compile", "{onnx}", "-o", "{out}", "--batch-size", "10000000"], "--batch-size must be in 1..65536"),
    (["compile", "{onnx}", "-o", "{out}", "--batch-size", "1e3"], "is not a valid integer"),
    (["compile", "{onnx}", "-o", "{out}", "--bits", "99"], "--bits must be in 0..64"),
    (["compile", "{onnx}", "-o", "{out}", "--adjust-every", "-1"], "--adjust-every must be >= 0"),
    (["report", "{log}", "-o", "{png}", "--smooth", "0"], "--smooth must be >= 1"),
    (["demo", "--epochs", "-1"], "--epochs must be >= 1"),
    (["codegen", "{rct}", "-o", "{out}", "--data", "{data}", "--band-bytes", "512"], "--band-bytes must be >= 1024"),
]


@pytest.mark.parametrize("args,needle", OPTION_CASES, ids=[" ".join(a[0:1] + a[-2:]) for a, _ in OPTION_CASES])
def test_option_out_of_range(args: list[str], needle: str, work: Path, refused: Callable) -> None:
    (work / "run.jsonl").write_text('{"step": 0, "loss": 1.0}\n')
    subst = {"{rct}": work / "mlp.rct", "{data}": work / "data.npz", "{onnx}": work / "mlp.onnx",
             "{out}": work / "out.rct", "{log}": work / "run.jsonl", "{png}": work / "r.png"}
    line = refused(work, [subst.get(a, a) for a in args], needle)
    assert line.startswith("rctc: error: ")


def _data(x: object = None, y: object = None) -> dict[str, object]:
    rng = np.random.default_rng(1)
    d = {"x": rng.random((12, 64), dtype=np.float32) if x is None else x,
         "y": rng.integers(0, 10, 12) if y is None else y}
    return {k: v for k, v in d.items() if not (isinstance(v, str) and v == "absent")}


DATA_CASES = {
    "complex x": (_data(x=np.ones((12, 64), np.complex64)), "x has dtype complex64; rctc needs real numbers"),
    "string x": (_data(x=np.full((12, 64), "a")), "x has dtype <U1"),
    "datetime x": (_data(x=np.zeros((12, 64), "datetime64[s]")), "x has dtype datetime64"),
    "structured x": (_data(x=np.zeros((12, 64), [("a", "f4")])), "x has dtype"),
    "0-d x": (_data(x=np.float32(3)), "x is a single value (0-d array)"),
    "empty x": (_data(x=np.zeros((0, 64), np.float32), y=np.zeros(0, np.int64)), "no samples in x"),
    "NaN x": (_data(x=np.full((12, 64), np.nan, np.float32)), "x contains NaN or Inf"),
    "inf x": (_data(x=np.full((12, 64), np.inf)), "x contains NaN or Inf"),
    "overflowing x": (_data(x=np.full((12, 64), 1e300)), "x contains NaN or Inf"),
    "x shape": (_data(x=np.zeros((12, 63), np.float32)), "samples have shape [63], the model wants [64]"),
    "string y": (_data(y=np.array(["cat"] * 12)), "y has dtype <U3"),
    "complex y": (_data(y=np.ones(12, complex)), "y has dtype complex128"),
    "0-d y": (_data(y=np.int64(2)), "y is a single value (0-d array)"),
    "y count": (_data(y=np.zeros(5, np.int64)), "x has 12 samples but y has 5"),
    "label too big": (_data(y=np.full(12, 10)), "labels must be in 0..9"),
    "negative label": (_data(y=np.full(12, -1)), "labels must be in 0..9"),
    "huge uint label": (_data(y=np.full(12, 2**63, np.uint64)), "labels must be in 0..9"),
    "fractional label": (_data(y=np.full(12, 1.5)), "class labels must be integers"),
    "NaN label": (_data(y=np.full(12, np.nan)), "y contains NaN or Inf"),
    "2-D labels": (_data(y=np.zeros((12, 3), np.int64)), "class labels must be 1-D"),
    "no y": (_data(y="absent"), "no labels"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_values(case: str, work: Path, refused: Callable) -> None:
    arrays, needle = DATA_CASES[case]
    np.savez(work / "bad.npz", **arrays)
    line = refused(work, ["train", work / "mlp.rct", "--data", work / "bad.npz", "-o", work / "t.rct"], needle)
    assert str(work / "bad.npz") in line


def test_object_arrays_are_refused_without_unpickling(work: Path, refused: Callable) -> None:
    x = np.empty((12, 64), dtype=object)
    x[:] = 1.0
    np.savez(work / "obj.npz", x=x, y=np.zeros(12, np.int64))
    refused(work, ["predict", work / "mlp.rct", "--data", work / "obj.npz", "-o", work / "p.npz"],
            "holds Python objects, which rctc does not load (no pickle)")


LOG_CASES = {
    "string loss": ({"step": 0, "loss": "low"}, "line 2: 'loss' must be a number, got 'low'"),
    "null loss": ({"step": 0, "loss": None}, "line 2: 'loss' must be a number, got None"),
    "string step": ({"step": "3", "loss": 1.0}, "'step' must be a non-negative integer"),
    "float step": ({"step": 1e300, "loss": 1.0}, "'step' must be a non-negative integer"),
    "negative step": ({"step": -1, "loss": 1.0}, "'step' must be a non-negative integer"),
    "list lr": ({"step": 0, "loss": 1.0, "lr": [0.1]}, "'lr' must be a number"),
    "string accuracy": ({"step": 0, "loss": 1.0, "accuracy": "90%"}, "'accuracy' must be a number"),
    "bool energy": ({"step": 0, "loss": 1.0, "measured_energy_pj": True}, "'measured_energy_pj' must be a number"),
    "string epoch": ({"step": 0, "loss": 1.0, "epoch": "one"}, "'epoch' must be an integer"),
    "bits not a map": ({"step": 0, "loss": 1.0, "bits": 8}, "'bits' must map parameter names to numbers"),
    "bits with text": ({"step": 0, "loss": 1.0, "bits": {"fc1.weight": "8"}}, "'bits' must map parameter names"),
}


@pytest.mark.parametrize("case", list(LOG_CASES))
def test_bad_log_values(case: str, tmp_path: Path, refused: Callable) -> None:
    row, needle = LOG_CASES[case]
    log = tmp_path / "run.jsonl"
    log.write_text(json.dumps({"step": 0, "loss": 2.0}) + "\n" + json.dumps(row) + "\n")
    line = refused(tmp_path, ["report", log, "-o", tmp_path / "r.png"], needle)
    assert str(log) in line

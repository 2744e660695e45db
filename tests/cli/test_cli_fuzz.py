"""Fuzz: structured mutations of valid inputs through the real CLI entry point, in-process.

Property (issue 18): exit code 0 or 2, no traceback, a failure is exactly one ``rctc: error:`` line,
and every input is byte-identical afterwards. Bounded: few examples per target, derandomized (the
same examples on every run, so CI is reproducible), no deadline (the machine may be loaded).
``@example`` rows are mutations that once crashed rctc, kept as regressions.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rctc.cli import main
from rctc.models import path as model_path

# RCTC_FUZZ_EXAMPLES=500 for a longer local hunt; CI keeps the bounded default
FUZZ = settings(max_examples=int(os.environ.get("RCTC_FUZZ_EXAMPLES", "12")), deadline=None, derandomize=True,
                database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@contextmanager
def _folder(files: dict[str, bytes]) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="rctc-fuzz-"))
    try:
        for name, data in files.items():
            (d / name).write_bytes(data)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _check(folder: Path, args: list[Any], inputs: list[str]) -> None:
    before = {k: v for k, v in _digest(folder).items() if k in inputs}
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    assert r.exception is None or isinstance(r.exception, SystemExit), f"traceback: {r.exception!r} for {args}"
    assert r.exit_code in (0, 2), (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr
    if r.exit_code == 2:
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("rctc: error: "), r.stderr
    after = {k: v for k, v in _digest(folder).items() if k in inputs}
    assert after == before, f"an input changed: {args}"


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Valid inputs to mutate: the MLP's .onnx and .rct (batch 4), data, a log, a checkpoint."""
    d = tmp_path_factory.mktemp("valid")
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, x=rng.random((8, 64), dtype=np.float32), y=rng.integers(0, 10, 8))
    (d / "data.npz").write_bytes(buf.getvalue())
    run = CliRunner().invoke
    assert run(main, ["compile", str(model_path("mlp")), "-o", str(d / "m.rct"), "--batch-size", "4"]).exit_code == 0
    r = run(main, ["train", str(d / "m.rct"), "--data", str(d / "data.npz"), "-o", str(d / "t.rct"), "--steps", "2",
                   "--checkpoint-every", "1", "--log", str(d / "run.jsonl")])
    assert r.exit_code == 0, r.output
    return {"onnx": model_path("mlp").read_bytes(), "rct": (d / "m.rct").read_bytes(),
            "npz": (d / "data.npz").read_bytes(), "log": (d / "run.jsonl").read_bytes(),
            "ckpt": (d / "t.rct.ckpt").read_bytes()}


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    """Overwrite bytes at relative positions (0..1e6 scaled to the length), then maybe truncate."""
    out = bytearray(data)
    for pos, val in edits:
        if out:
            out[pos * len(out) // 1_000_000] = val
    return bytes(out[: cut * len(out) // 1000] if cut is not None else out)


BYTE_EDITS = st.lists(st.tuples(st.integers(0, 999_999), st.integers(0, 255)), min_size=1, max_size=6)
CUT = st.none() | st.integers(0, 999)


@FUZZ
@given(edits=BYTE_EDITS, cut=CUT)
@example(edits=[(500_000, 0x41)], cut=None)  # a flipped data byte: bad CRC-32
@example(edits=[(0, 0x50)], cut=700)  # a truncated member
def test_fuzz_data_npz(valid: dict[str, bytes], edits: list[tuple[int, int]], cut: int | None) -> None:
    with _folder({"m.rct": valid["rct"], "d.npz": _mutate(valid["npz"], edits, cut)}) as d:
        _check(d, ["eval", d / "m.rct", "--data", d / "d.npz"], ["m.rct", "d.npz"])


@FUZZ
@given(edits=BYTE_EDITS, cut=CUT)
def test_fuzz_onnx_bytes(valid: dict[str, bytes], edits: list[tuple[int, int]], cut: int | None) -> None:
    with _folder({"m.onnx": _mutate(valid["onnx"], edits, cut)}) as d:
        _check(d, ["compile", d / "m.onnx", "-o", d / "o.rct", "--batch-size", "2", "--mode", "fp32"], ["m.onnx"])


TENSOR_EDIT = st.sampled_from(["dims", "data_type", "external", "name"])


@FUZZ
@given(which=st.integers(0, 3), edit=TENSOR_EDIT, dims=st.lists(st.integers(-2, 70), max_size=3),
       dtype=st.integers(0, 30), text=st.text(max_size=12))
@example(which=0, edit="dims", dims=[65, 64], dtype=1, text="")  # dims inconsistent with raw data
@example(which=0, edit="external", dims=[], dtype=1, text="../x\x00")  # external location leaving the folder
def test_fuzz_onnx_tensors(valid: dict[str, bytes], which: int, edit: str, dims: list[int], dtype: int,
                           text: str) -> None:
    m = onnx.load_from_string(valid["onnx"])
    t = m.graph.initializer[which]
    if edit == "dims":
        del t.dims[:]
        t.dims.extend(dims)
    elif edit == "data_type":
        t.data_type = dtype
    elif edit == "external":
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", text), ("offset", str(dims[0]) if dims else "x"), ("length", str(dtype))):
            e = t.external_data.add()
            e.key, e.value = k, v
    else:
        t.name = text
    with _folder({"m.onnx": m.SerializeToString()}) as d:
        _check(d, ["compile", d / "m.onnx", "-o", d / "o.rct", "--batch-size", "2", "--mode", "fp32"], ["m.onnx"])


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10, 10**20) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                       max_size=3), max_leaves=6)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a JSON document (lists by index)."""
    out = [prefix]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    for k, v in items:
        out.extend(_paths(v, (*prefix, k)))
    return out


def _resigned(rct: bytes, pick: int, value: Any, delete: bool) -> bytes:
    m = onnx.load_from_string(rct)
    props = {p.key: p.value for p in m.metadata_props}
    meta = json.loads(props["rctc.meta"])
    paths = [p for p in _paths(meta) if p and len(p) <= 4]
    path = paths[pick % len(paths)]
    parent = meta
    for k in path[:-1]:
        parent = parent[k]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    meta_json = json.dumps(meta, sort_keys=True)
    props["rctc.meta"] = meta_json
    props["rctc.sha256"] = hashlib.sha256(m.graph.SerializeToString(deterministic=True)
                                          + meta_json.encode()).hexdigest()
    del m.metadata_props[:]
    onnx.helper.set_model_props(m, props)
    return m.SerializeToString()


@FUZZ
@given(pick=st.integers(0, 10**6), value=JSON_VALUES, delete=st.booleans())
@example(pick=1, value=None, delete=True)  # a top-level key of the metadata removed (KeyError before)
def test_fuzz_rct_metadata(valid: dict[str, bytes], pick: int, value: Any, delete: bool) -> None:
    with _folder({"m.rct": _resigned(valid["rct"], pick, value, delete), "d.npz": valid["npz"]}) as d:
        _check(d, ["eval", d / "m.rct", "--data", d / "d.npz"], ["m.rct", "d.npz"])


@FUZZ
@given(edits=BYTE_EDITS, cut=CUT)
def test_fuzz_checkpoint_bytes(valid: dict[str, bytes], edits: list[tuple[int, int]], cut: int | None) -> None:
    files = {"m.rct": valid["rct"], "d.npz": valid["npz"], "t.rct.ckpt": _mutate(valid["ckpt"], edits, cut)}
    with _folder(files) as d:
        _check(d, ["train", d / "m.rct", "--data", d / "d.npz", "-o", d / "t.rct", "--steps", "2",
                   "--checkpoint-every", "1", "--resume"], ["m.rct", "d.npz"])


@FUZZ
@given(rows=st.lists(st.dictionaries(st.sampled_from(["step", "loss", "lr", "accuracy", "epoch", "bits",
                                                      "measured_energy_pj"]), JSON_VALUES, max_size=4), max_size=3),
       keep=st.booleans())
@example(rows=[{"step": 0, "loss": None}], keep=False)  # a null loss (TypeError before)
def test_fuzz_log(valid: dict[str, bytes], rows: list[dict[str, Any]], keep: bool) -> None:
    text = (valid["log"].decode() if keep else "") + "".join(json.dumps(r) + "\n" for r in rows)
    with _folder({"run.jsonl": text.encode()}) as d:
        _check(d, ["report", d / "run.jsonl", "-o", d / "r.png"], ["run.jsonl"])


OPTIONS = ["--lr", "--epochs", "--steps", "--seed", "--warmup-steps", "--val-split", "--checkpoint-every"]


@FUZZ
@given(option=st.sampled_from(OPTIONS), value=st.text(max_size=10) | st.floats().map(repr)
       | st.integers(-10**30, 10**30).map(str))
@example(option="--seed", value="-1")  # a negative seed (ValueError traceback before)
def test_fuzz_train_options(valid: dict[str, bytes], option: str, value: str) -> None:
    if value.startswith("-") and not value[1:2].isdigit():
        value = " " + value  # not an option name for click
    extra = [] if option in ("--steps", "--epochs") else ["--steps", "1"]
    with _folder({"m.rct": valid["rct"], "d.npz": valid["npz"]}) as d:
        _check(d, ["train", d / "m.rct", "--data", d / "d.npz", "-o", d / "t.rct", *extra, option, value],
               ["m.rct", "d.npz"])


def test_fuzz_helpers_mutate(valid: dict[str, bytes]) -> None:
    """The mutators really change the inputs (a fuzz target that never mutates could not fail)."""
    assert _mutate(valid["npz"], [(500_000, 0x41)], None) != valid["npz"]
    assert len(_mutate(valid["npz"], [(0, 0)], 500)) == len(valid["npz"]) // 2
    assert _resigned(valid["rct"], 1, None, True) != valid["rct"]


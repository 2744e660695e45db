"""``--backend native|numpy`` on train / eval / predict: the default, the no-compiler fallback,
resume across backends, fp32 on numpy, a bad value.

Every run trains the bundled MLP (rct, the controller deciding every 2 steps) on 12 samples;
the trained .rct files of the two backends must be byte-identical.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rctc import checkpoint as ckpt
from rctc.models import path as model_path
from tests.cli.conftest import assert_contract, invoke

TRAIN = ["--data", "data.npz", "--epochs", "3", "--quiet"]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((12, 64), dtype=np.float32), y=rng.integers(0, 10, 12))
    r = invoke(["compile", model_path("mlp"), "-o", "mlp.rct", "--batch-size", 4, "--adjust-every", 2])
    assert r.exit_code == 0, r.output
    return tmp_path


def train(out: str, *extra: Any) -> dict[str, Any]:
    r = invoke(["train", "mlp.rct", *TRAIN, "-o", out, "--json", *extra])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return {"summary": json.loads(r.stdout), "stderr": r.stderr}


def test_default_is_native_and_equals_numpy(folder: Path) -> None:
    native = train("native.rct")
    assert native["summary"]["backend"] == "native" and native["stderr"] == ""
    numpy = train("numpy.rct", "--backend", "numpy")
    assert numpy["summary"]["backend"] == "numpy"
    assert native["summary"]["final_loss"] == numpy["summary"]["final_loss"]
    assert (folder / "native.rct").read_bytes() == (folder / "numpy.rct").read_bytes()
    assert (folder / "native.rct").read_bytes() != (folder / "mlp.rct").read_bytes()


def test_no_compiler_says_so_in_one_line_and_trains_on_numpy(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train("ref.rct", "--backend", "numpy")
    monkeypatch.setenv("CC", "/nonexistent/cc")
    for extra in ((), ("--backend", "native")):
        got = train("fallback.rct", *extra)
        lines = got["stderr"].splitlines()
        assert len(lines) == 1 and lines[0].startswith("rctc: using the numpy runtime: ")
        assert "/nonexistent/cc" in lines[0]
        assert got["summary"]["backend"] == "numpy"
        assert (folder / "fallback.rct").read_bytes() == (folder / "ref.rct").read_bytes()


def test_fp32_runs_on_numpy_and_says_so_when_native_is_asked(folder: Path) -> None:
    r = invoke(["compile", model_path("mlp"), "-o", "fp32.rct", "--batch-size", 4, "--mode", "fp32"])
    assert r.exit_code == 0, r.output
    r = invoke(["train", "fp32.rct", *TRAIN, "-o", "a.rct", "--json"])
    assert r.exit_code == 0 and r.stderr == "" and json.loads(r.stdout)["backend"] == "numpy"
    r = invoke(["train", "fp32.rct", *TRAIN, "-o", "b.rct", "--json", "--backend", "native"])
    assert r.exit_code == 0 and json.loads(r.stdout)["backend"] == "numpy"
    assert len(r.stderr.splitlines()) == 1 and "rct graphs only" in r.stderr


@pytest.mark.parametrize("first,then", [("native", "numpy"), ("numpy", "native")])
def test_resume_across_backends_ends_identical(folder: Path, monkeypatch: pytest.MonkeyPatch, first: str,
                                               then: str) -> None:
    train("ref.rct", "--backend", then)
    calls = {"n": 0}

    def stop_after_four(self: ckpt.StopOnInterrupt) -> bool:  # Ctrl-C during step 4 of 9
        calls["n"] += 1
        return calls["n"] >= 4

    with monkeypatch.context() as m:
        m.setattr(ckpt.StopOnInterrupt, "__call__", stop_after_four)
        r = invoke(["train", "mlp.rct", *TRAIN, "-o", "run.rct", "--backend", first])
    assert r.exit_code == 130 and "interrupted after step 4" in r.stderr, r.stderr
    got = train("run.rct", "--resume", "--backend", then)
    assert got["summary"]["backend"] == then and got["summary"]["steps"] == 9
    assert (folder / "run.rct").read_bytes() == (folder / "ref.rct").read_bytes()


def test_eval_and_predict_on_native_equal_numpy(folder: Path) -> None:
    train("trained.rct", "--backend", "numpy")
    res = {}
    for backend in ("native", "numpy"):
        r = invoke(["eval", "trained.rct", "--data", "data.npz", "--json", "--backend", backend])
        assert r.exit_code == 0 and r.stderr == "", r.stderr
        r2 = invoke(["predict", "trained.rct", "--data", "data.npz", "-o", f"{backend}.npz", "--backend", backend])
        assert r2.exit_code == 0 and r2.stderr == "", r2.stderr
        res[backend] = json.loads(r.stdout)
    assert res["native"] == res["numpy"]
    with np.load(folder / "native.npz") as a, np.load(folder / "numpy.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)


@pytest.mark.parametrize("command", ["train", "eval", "predict"])
def test_bad_backend_is_one_line(folder: Path, command: str) -> None:
    args = {"train": ["train", "mlp.rct", *TRAIN], "eval": ["eval", "mlp.rct", "--data", "data.npz"],
            "predict": ["predict", "mlp.rct", "--data", "data.npz", "-o", "p.npz"]}[command]
    r = invoke([*args, "--backend", "cuda"])
    assert_contract(r)
    assert "--backend" in r.stderr and "cuda" in r.stderr


def test_profile_ops_times_the_c_nodes(folder: Path) -> None:
    """Native --profile-ops reports op types (the C nodes' own times) and, in --json, each C node."""
    r = invoke(["train", "mlp.rct", *TRAIN, "-o", "p.rct", "--json", "--profile-ops", "--backend", "native"])
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    times, per_node = out["op_times_ms"], out["node_times_ms"]
    assert {"QuantAct", "IntGemm", "Requantize", "FusedIntUpdate", "C segment boundary"} <= set(times)
    assert not any(k.startswith("C segment ") and k != "C segment boundary" for k in times)
    assert per_node and all(v >= 0 for v in per_node.values())
    assert abs(sum(per_node.values()) + times["C segment boundary"] + times["QuantAct"]
               + times.get("Dequantize", 0.0) - sum(times.values())) < 1e-6 * max(1.0, sum(times.values()))
    text = invoke(["train", "mlp.rct", *TRAIN, "-o", "q.rct", "--profile-ops", "--backend", "native"])
    assert text.exit_code == 0 and "IntGemm" in text.stdout and "C segment boundary" in text.stdout


def test_demo_runs_rct_on_the_default_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """`rctc demo` trains rct as `rctc train` does: native with a compiler, numpy (one line) without;
    the two give the same accuracy and final bits (the backends are bit-identical)."""
    runs = {}
    for cc in (None, "/nonexistent/cc"):
        if cc is not None:
            monkeypatch.setenv("CC", cc)
        r = invoke(["demo", "--epochs", "1", "--json"])
        assert r.exit_code == 0, r.stderr
        runs[cc] = (json.loads(r.stdout), r.stderr)
    (native, err_n), (numpy_run, err_f) = runs[None], runs["/nonexistent/cc"]
    assert native["rct"]["backend"] == "native" and err_n == ""
    assert numpy_run["rct"]["backend"] == "numpy" and err_f.startswith("rctc: using the numpy runtime: ")
    assert native["fp32"]["backend"] == numpy_run["fp32"]["backend"] == "numpy"
    assert native["rct"]["test_accuracy"] == numpy_run["rct"]["test_accuracy"]
    assert native["rct"]["final_bits"] == numpy_run["rct"]["final_bits"]

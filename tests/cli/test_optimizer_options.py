"""Optimizer options follow PyTorch's habits (issue 14): ``--momentum M`` with SGD is momentum SGD, as
``torch.optim.SGD(momentum=M)``; an option that would have no effect is refused with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rctc
from rctc.models import path as model_path
from rctc.options import CompileOptions

UPDATES = ("SGDUpdate", "MomentumUpdate", "IntSGDUpdate", "IntMomentumUpdate", "FusedIntUpdate",
           "FusedIntMomentumUpdate", "AdamWUpdate", "IntAdamWUpdate", "IntAccAdamWUpdate", "FusedIntAdamWUpdate")


def _updates(rct: Path) -> set[str]:
    return {n.op_type for n in rctc.load(rct).graph.nodes if n.op_type in UPDATES}


@pytest.mark.parametrize(("args", "want"), [
    ([], {"FusedIntUpdate", "IntSGDUpdate"}),
    (["--momentum", "0.9"], {"FusedIntMomentumUpdate", "IntMomentumUpdate"}),
    (["--optimizer", "momentum"], {"FusedIntMomentumUpdate", "IntMomentumUpdate"}),
    (["--mode", "fp32", "--momentum", "0.5"], {"MomentumUpdate"}),
    (["--mode", "fp32"], {"SGDUpdate"}),
    (["--mode", "qat", "--optimizer", "adamw", "--betas", "0.8", "0.99", "--eps", "1e-6"], {"AdamWUpdate"}),
    (["--optimizer", "adamw"], {"FusedIntAdamWUpdate", "IntAccAdamWUpdate"}),
])
def test_the_update_rule_follows_the_options(tmp_path: Path, run, args: list[str], want: set[str]) -> None:
    out = tmp_path / "m.rct"
    r = run(["compile", model_path("mlp"), "-o", out, "--batch-size", 4, *args])
    assert r.exit_code == 0, r.output
    got = _updates(out)
    # the MLP's vector parameters keep their unfused rule; rct has only the integer ones
    assert got <= want and got & want, got


def test_sgd_with_momentum_trains_exactly_as_the_momentum_optimizer() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((8, 64)).astype(np.float32), rng.integers(0, 10, 8)
    states = []
    for kw in ({"optimizer": "sgd", "momentum": 0.7}, {"optimizer": "momentum", "momentum": 0.7}):
        m = rctc.compile(model_path("mlp"), mode="fp32", batch_size=8, **kw)
        m.train(x, y, steps=3, lr=0.05, shuffle=False)
        states.append({p.name: p.data.copy() for p in m.graph.params()})
    plain = rctc.compile(model_path("mlp"), mode="fp32", batch_size=8)
    plain.train(x, y, steps=3, lr=0.05, shuffle=False)
    assert states[0].keys() == states[1].keys()
    for k in states[0]:
        assert np.array_equal(states[0][k], states[1][k]), k
    assert any(not np.array_equal(states[0][p.name], p.data) for p in plain.graph.params()), \
        "momentum 0.7 trained exactly as plain SGD: the option was ignored"


@pytest.mark.parametrize(("args", "needle"), [
    (["--optimizer", "adamw", "--mode", "qat", "--momentum", "0.9"], "--momentum has no effect with --optimizer adamw"),
    (["--betas", "0.9", "0.99"], "--betas only apply to --optimizer adamw"),
    (["--eps", "1e-6"], "--eps only apply to --optimizer adamw"),
    (["--optimizer", "momentum", "--momentum", "0"], "is plain SGD"),
    (["--mode", "fp32", "--bits", "6"], "--bits has no effect in --mode fp32"),
    (["--mode", "fp32", "--act-bits", "6", "--adjust-every", "5"], "--adjust-every, --act-bits have no effect"),
    (["--mode", "qat", "--min-bits", "3"], "--min-bits has no effect in --mode qat"),
    (["--mode", "qat", "--elementwise", "float"], "--elementwise has no effect in --mode qat"),
    (["--betas", "0.9", "1.5", "--optimizer", "adamw", "--mode", "qat"], "--betas"),
])
def test_options_without_effect_are_refused(tmp_path: Path, refused, args: list[str], needle: str) -> None:
    onnx_copy = tmp_path / "mlp.onnx"
    onnx_copy.write_bytes(Path(model_path("mlp")).read_bytes())
    refused(tmp_path, ["compile", onnx_copy, "-o", tmp_path / "m.rct", *args], needle)


def test_qat_reads_bits_and_act_bits(tmp_path: Path, run) -> None:
    r = run(["compile", model_path("mlp"), "-o", tmp_path / "q.rct", "--mode", "qat", "--bits", "6", "--act-bits", "6"])
    assert r.exit_code == 0, r.output


def test_schema_1_options_keep_plain_sgd() -> None:
    """Files written before the change stored momentum 0.9 beside sgd, meaning plain SGD."""
    old = {**CompileOptions().to_dict(), "momentum": 0.9, "betas": [0.9, 0.999], "eps": 1e-8}
    del old["options_schema"]
    loaded = CompileOptions.from_dict(old).validate()
    assert loaded.update_rule == "sgd" and loaded.betas is None and loaded.eps is None
    new = CompileOptions.from_dict({**CompileOptions(momentum=0.9).to_dict()}).validate()
    assert new.update_rule == "momentum" and new.momentum_factor == 0.9

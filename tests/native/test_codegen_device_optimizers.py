"""rct AdamW and momentum SGD on the device: LeNet compiled with --optimizer adamw / momentum, its
generated Cortex-M4 project (the integer updates in C: rctc_adamw_update, rctc_momentum_update)
run under QEMU prints the digest of the state ``rctc train --no-shuffle --backend numpy`` makes,
the bitwidth controller acting on both; no float helper is linked (the moments and the velocity
are integer state)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import rctc
from rctc.cli import main
from rctc.native.device import toolchain_problem

_ARM = toolchain_problem("cortex-m4", "mps2-an386", run=True)


def _cli(args: list[object]):  # noqa: ANN202
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


@pytest.mark.skipif(_ARM is not None, reason=f"cortex-m4 toolchain: {_ARM}")
@pytest.mark.parametrize(("optimizer", "decay", "lr"), [("adamw", 0.05, 0.003), ("momentum", 0.01, 0.01)])
def test_qemu_digest_equals_host_with_integer_optimizer(tmp_path: Path, optimizer: str, decay: float,
                                                        lr: float) -> None:
    model = tmp_path / "lenet.rct"
    rctc.compile("models/lenet.onnx", mode="rct", batch_size=1, seed=5, adjust_every=2, optimizer=optimizer,
                 weight_decay=decay).save(model)
    r = _cli(["codegen", model, "-o", tmp_path / "m4", "--data", "digits", "--steps", 5, "--seed", 11, "--lr", lr,
              "--run", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    out = tmp_path / "trained.rct"
    t = _cli(["train", model, "--data", "digits", "--steps", 5, "--seed", 11, "--lr", lr, "--no-shuffle",
              "--backend", "numpy", "--json", "-o", out])
    assert t.exit_code == 0, t.output
    assert json.loads(t.stdout)["bit_changes"] > 0
    d = _cli(["digest", out])
    assert d.exit_code == 0, d.output
    assert res["digest"] == d.stdout.split()[1]
    assert res["float_helpers"] == []

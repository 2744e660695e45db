"""Issue 17's target: ResNet-8 (CIFAR shape, batch 1, rct mode) trains within the STM32F746's
320 KB of SRAM and 1 MB of flash with 8-bit parameter storage (``--max-bits 8``); the arena is
the plan's (its large data gradients streamed), and the same project on the emulated board
trains to the host's digest. ``--band-bytes 4096`` fits with a smaller scratch block; at the
default ``--max-bits 16`` the model is refused for RAM; a band under 1 KB is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import rctc
from rctc.errors import RctcError
from rctc.native.device.codegen import codegen
from tests.native.test_codegen_device import cli, host_digest, needs_arm, one_line_error

SRAM, FLASH = 320 * 1024, 1024 * 1024


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("codegen-fit")
    rctc.compile("models/resnet8.onnx", mode="rct", batch_size=1, seed=5, max_bits=8).save(d / "r8.rct")
    rctc.compile("models/resnet8.onnx", mode="rct", batch_size=1, seed=5).save(d / "r8w.rct")
    rng = np.random.default_rng(3)
    np.savez(d / "cifar.npz", x=rng.standard_normal((4, 3, 32, 32)).astype(np.float32), y=rng.integers(0, 10, 4))
    return d


def _json(args: list) -> dict:
    r = cli([*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@needs_arm
def test_resnet8_fits_stm32f746_and_trains_to_the_host_digest(work: Path) -> None:
    data = ["--data", work / "cifar.npz", "--steps", 2, "--seed", 11]
    refused = one_line_error(cli(["codegen", work / "r8w.rct", "-o", work / "wide", "--board", "stm32f746", *data]))
    assert "does not fit board stm32f746: RAM overflowed" in refused  # int16 parameters: 160 KB of state
    plan = rctc.load(work / "r8.rct").graph.meta["memory_plan"]["arena_bytes"]
    fit = _json(["codegen", work / "r8.rct", "-o", work / "stm", "--board", "stm32f746", *data])
    small = _json(["codegen", work / "r8.rct", "-o", work / "stm-b", "--board", "stm32f746", *data,
                   "--band-bytes", 4096])
    for res in (fit, small):
        assert res["ram_bytes"] <= SRAM and res["flash_bytes"] <= FLASH, res
        assert res["arena_bytes"] == res["plan_peak_bytes"] == plan and res["float_helpers"] == []
    assert small["band_bytes"] == 4096 and small["scratch_bytes"] < 24 * 1024 < fit["scratch_bytes"], small
    res = _json(["codegen", work / "r8.rct", "-o", work / "m4", *data, "--run"])
    assert res["digest"] == host_digest(work, "r8", work / "cifar.npz", 2, 11, "fit")
    assert res["arena_bytes"] == plan and res["scratch_bytes"] == fit["scratch_bytes"]


def test_band_under_the_minimum_is_refused(work: Path) -> None:
    with pytest.raises(RctcError, match="--band-bytes must be >= 1024, got 512"):
        codegen(work / "r8.rct", work / "x", data=str(work / "cifar.npz"), band_bytes=512)

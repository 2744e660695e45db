"""estimate / rctc inspect / rctc train: savings, baselines, budget, live widths, machine interface."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import rctc
from rctc import models
from rctc.analysis.counter import attach_counter
from rctc.analysis.model import CostModel
from rctc.analysis.profiles import load_profile
from rctc.analysis.report import predict
from rctc.cli import main
from rctc.compiler import estimate
from rctc.slots import bits_name

REQUIRED = ("gemm_energy", "total_energy", "parameter_memory", "parameter_movement_energy")
DEFAULT = (Path(rctc.__file__).parent / "profiles" / "horowitz45.toml").read_text()


@pytest.fixture(scope="module", params=["lenet", "resnet8"])
def rct_model(request: pytest.FixtureRequest) -> rctc.api.CompiledModel:
    return rctc.compile(models.build(request.param), batch_size=4)


def test_savings_are_fractions_and_rct_gemm_is_cheaper(rct_model: rctc.api.CompiledModel) -> None:
    res = estimate(rct_model.graph)
    for base in ("vs_fp32", "vs_qat"):
        s = res["savings"][base]
        for key in REQUIRED:
            assert 0.0 < s[key] < 1.0, (base, key, s[key])
    ours = res["predicted"]["energy_pj"]["gemm"]
    assert ours < res["savings"]["vs_fp32"]["baseline"]["energy_pj"]["gemm"]
    assert ours < res["savings"]["vs_qat"]["baseline"]["energy_pj"]["gemm"]
    assert res["savings"]["vs_fp32"]["gemm_energy"] > 0.86


def test_baselines_equal_direct_compiles(rct_model: rctc.api.CompiledModel) -> None:
    """The baselines rebuilt from the forward snapshot cost exactly what a direct compile costs."""
    res = estimate(rct_model.graph)
    source = rct_model.graph.meta["source"]
    name = "lenet" if "lenet" in source else "resnet8"
    prof = load_profile()
    for mode in ("qat", "fp32"):
        direct = predict(rctc.compile(models.build(name), mode=mode, batch_size=4).graph, prof)
        base = res["savings"][f"vs_{mode}"]["baseline"]
        assert base["energy_pj"] == direct["energy_pj"]
        assert base["parameter_memory_bytes"] == direct["parameter_memory_bytes"]
        assert base["peak_memory_bytes"] == direct["peak_memory_bytes"]


def test_estimate_reads_only(rct_model: rctc.api.CompiledModel) -> None:
    g = rct_model.graph
    before = (str(g), json.dumps({k: v for k, v in g.meta.items() if not k.startswith("_")}, sort_keys=True))
    estimate(g)
    assert (str(g), json.dumps({k: v for k, v in g.meta.items() if not k.startswith("_")}, sort_keys=True)) == before


def test_budget_decides_fits(tmp_path: Path) -> None:
    m = rctc.compile(models.build("mlp"), batch_size=4)
    peak = m.graph.meta["memory_plan"]["peak_bytes"]
    small, large = tmp_path / "small.toml", tmp_path / "large.toml"
    small.write_text(DEFAULT.replace("memory_budget_bytes = 67108864", f"memory_budget_bytes = {peak - 1}"))
    large.write_text(DEFAULT.replace("memory_budget_bytes = 67108864", f"memory_budget_bytes = {peak}"))
    assert estimate(m.graph, str(small))["fits"] is False
    assert "does NOT fit" in estimate(m.graph, str(small))["text"]
    assert estimate(m.graph, str(large))["fits"] is True


def test_placement_moves_traffic_between_levels(tmp_path: Path) -> None:
    m = rctc.compile(models.build("mlp"), batch_size=4)
    on_chip = estimate(m.graph)["predicted"]
    assert set(on_chip["counts"]["bytes"]) == {"sram"}  # the mlp fits the 256 KiB SRAM
    f = tmp_path / "dram.toml"
    f.write_text(DEFAULT.replace('parameters = "auto"', 'parameters = "dram"'))
    off_chip = estimate(m.graph, str(f))["predicted"]
    assert set(off_chip["counts"]["bytes"]["dram"]) == {"param"}
    ratio = off_chip["energy_pj"]["parameter_movement"] / on_chip["energy_pj"]["parameter_movement"]
    assert ratio == pytest.approx(20.0 / 0.15625)


def test_widths_follow_the_slot_bits() -> None:
    """Bits read live from <param>.bits: a wider slot changes predicted and measured MAC widths alike."""
    m = rctc.compile(models.build("mlp"), batch_size=4, adjust_every=0)
    g = m.graph
    g.value(bits_name("fc2.weight")).data = np.array(12, np.int32)
    prof = load_profile()
    predicted, _ = CostModel(g, prof).predict()
    assert predicted.macs["int8*int12+int32"] == 2 * 4 * 64 * 32  # forward and data gradient of fc2 (64 -> 32)
    counter = attach_counter(m.trainer(), prof)
    rng = np.random.default_rng(0)
    m.train(rng.standard_normal((4, 64)).astype(np.float32), rng.integers(0, 10, 4), steps=1)
    assert counter.per_step().to_dict() == predicted.to_dict()


def test_cli_inspect_and_train_json(tmp_path: Path) -> None:
    runner = CliRunner()
    rct = tmp_path / "lenet.rct"
    res = runner.invoke(main, ["compile", str(models.path("lenet")), "-o", str(rct), "--batch-size", "4",
                               "--adjust-every", "0"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["inspect", str(rct), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    pred = info["predicted"]
    for key in ("energy_pj_per_step", "peak_memory_bytes", "parameter_memory_bytes"):
        assert pred[key] > 0
    assert set(pred["counts"]) == {"macs", "elementwise", "bytes"}
    for base in ("vs_fp32", "vs_qat"):
        assert all(0 <= info["savings"][base][k] <= 1 for k in REQUIRED)
    res = runner.invoke(main, ["inspect", str(rct)])
    assert res.exit_code == 0 and "savings vs QAT" in res.output and "fits in the device budget" in res.output
    data = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.standard_normal((8, 1, 8, 8)).astype(np.float32), y=rng.integers(0, 10, 8))
    res = runner.invoke(main, ["train", str(rct), "--data", str(data), "--steps", "2", "--json",
                               "-o", str(tmp_path / "t.rct")])
    assert res.exit_code == 0, res.output
    measured = json.loads(res.output)["measured"]
    assert measured["steps"] == 2
    assert measured["counts"] == pred["counts"]
    assert measured["energy_pj_per_step"] == pytest.approx(pred["energy_pj_per_step"])
    assert measured["energy_pj_total"] == pytest.approx(2 * pred["energy_pj_per_step"])

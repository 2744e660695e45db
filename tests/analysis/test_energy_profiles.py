"""Energy profiles: the default table, derived widths, and every kind of bad profile input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import rctc
from rctc import models
from rctc.analysis.profiles import load_profile, parse_profile, profile_names
from rctc.cli import main
from rctc.errors import RctcError

DEFAULT = (Path(rctc.__file__).parent / "profiles" / "horowitz45.toml").read_text()


def test_default_profile_is_the_design_table() -> None:
    p = load_profile()
    assert p.name == "horowitz45" and "horowitz45" in profile_names()
    assert p.add(8) == 0.03 and p.add(16) == 0.05 and p.add(32) == 0.1
    assert p.mult(8, 8) == 0.2 and p.mult(32, 32) == 3.1
    assert p.add(16, True) == 0.4 and p.mult(16, 16, True) == 1.1
    assert p.add(32, True) == 0.9 and p.mult(32, 32, True) == 3.7
    assert [lv.name for lv in p.levels] == ["sram", "dram"]
    assert p.level("sram").read_pj_per_bit * 32 == pytest.approx(5.0)
    assert p.level("dram").read_pj_per_bit * 32 == pytest.approx(640.0)
    assert p.level("sram").capacity_bytes == 256 * 1024


def test_derived_widths() -> None:
    p = load_profile("horowitz45")
    assert p.mult(16, 8) == pytest.approx(0.2 * 16 * 8 / 64)  # not in the table: scales with b1*b2
    assert p.mult(4, 4) == pytest.approx(0.2 * 16 / 64)
    assert p.add(24) == pytest.approx(0.075)  # linear between 16 and 32
    assert p.add(12) == pytest.approx(0.04)  # linear between 8 and 16
    assert p.add(64) == pytest.approx(0.2) and p.add(4) == pytest.approx(0.015)  # proportional outside
    assert p.op("cmp", "fp32") == p.add(32, True) and p.op("special", "fp32") == p.mult(32, 32, True)
    assert p.mac("int8*int8+int32") == pytest.approx(0.2 + 0.1)
    assert p.mac("fp32*fp32+fp32") == pytest.approx(3.7 + 0.9)


def test_profile_from_path(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text(DEFAULT.replace('name = "horowitz45"', 'name = "mine"').replace("8 = 0.2", "8 = 0.4"))
    p = load_profile(str(f))
    assert p.name == "mine" and p.mult(8, 8) == 0.4 and p.mult(16, 16) == pytest.approx(1.6)


BAD = {
    "missing energy": (DEFAULT.replace("[energy.int.mult]\n8 = 0.2\n32 = 3.1\n", ""), "energy.int.mult"),
    "negative energy": (DEFAULT.replace("16 = 0.05", "16 = -0.05"), "negative"),
    "malformed": (DEFAULT.replace("[energy.int.add]", "[energy.int.add"), "malformed TOML"),
    "missing level energy": (DEFAULT.replace("write_pj_per_bit = 20.0\n", ""), "write_pj_per_bit"),
    "string energy": (DEFAULT.replace("32 = 3.7", '32 = "3.7"'), "must be a number"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_profiles_raise_one_line(case: str, tmp_path: Path) -> None:
    text, needle = BAD[case]
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(RctcError) as err:
        load_profile(str(f))
    msg = str(err.value)
    assert needle in msg and "\n" not in msg and str(f) in msg
    with pytest.raises(RctcError):
        parse_profile(text, "x")


def test_unknown_profile_name() -> None:
    with pytest.raises(RctcError, match="unknown energy profile 'nope'.*horowitz45"):
        load_profile("nope")
    with pytest.raises(RctcError, match="no such file"):
        load_profile("/nonexistent/p.toml")


@pytest.fixture(scope="module")
def lenet_rct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prof") / "lenet.rct"
    rctc.compile(models.path("lenet"), batch_size=4).save(out)
    return out


@pytest.mark.parametrize("case", ["unknown", "missing energy", "negative energy", "malformed"])
@pytest.mark.parametrize("command", ["inspect", "train"])
def test_cli_bad_profile_exits_2_with_one_line(case: str, command: str, lenet_rct: Path, tmp_path: Path) -> None:
    if case == "unknown":
        spec = "no-such-profile"
    else:
        spec = str(tmp_path / "bad.toml")
        Path(spec).write_text(BAD[case][0])
    args = [command, str(lenet_rct), "--profile", spec]
    if command == "train":
        data = tmp_path / "d.npz"
        rng = np.random.default_rng(0)
        np.savez(data, x=rng.standard_normal((8, 1, 8, 8)).astype(np.float32), y=rng.integers(0, 10, 8))
        args += ["--data", str(data), "--steps", "1", "-o", str(tmp_path / "out.rct")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rctc: error:") and "profile" in lines[0]
    assert not (tmp_path / "out.rct").exists()

"""``rctc inspect A.rct --compare B.rct``: issue 15's side-by-side view of the two element-wise lowerings.

Reference: each file's own ``rctc inspect --json`` (the comparison must not recompute anything), and
the compile summary's float-island count for the float lowering.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rctc.models import path as model_path
from tests.cli.conftest import assert_contract, invoke


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cmp")
    a, b = folder / "int.rct", folder / "float.rct"
    for out, extra in ((a, []), (b, ["--elementwise", "float"])):
        r = invoke(["compile", model_path("lenet"), "-o", out, "--batch-size", 8, *extra])
        assert r.exit_code == 0, r.output
    return a, b


def _json(args: list[object]) -> dict:
    r = invoke(args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_compare_rows_are_each_files_own_estimate(pair: tuple[Path, Path]) -> None:
    a, b = pair
    ia, ib = _json(["inspect", a, "--json"]), _json(["inspect", b, "--json"])
    cmp = _json(["inspect", a, "--compare", b, "--json"])["compare"]
    for info, side in ((ia, "a"), (ib, "b")):
        p = info["predicted"]
        rows = cmp["rows"]
        assert rows["energy_total_pj"][side] == pytest.approx(p["energy_pj"]["total"], rel=0, abs=0)
        assert rows["energy_activation_movement_pj"][side] == p["energy_pj"]["activation_movement"]
        assert rows["peak_memory_bytes"][side] == p["peak_memory_bytes"]
        assert rows["float_islands"][side] == len(info["float_islands"])
        assert cmp[side]["elementwise"] == info["elementwise"]
    assert cmp["a"]["elementwise"] == "integer" and cmp["b"]["elementwise"] == "float"
    assert cmp["rows"]["float_islands"]["a"] == 0 and cmp["rows"]["float_islands"]["b"] > 0
    r = cmp["rows"]["peak_memory_bytes"]
    assert r["change"] == pytest.approx(r["b"] / r["a"] - 1.0)
    # integer element-wise stores activations at 8 bits: the float lowering's peak is larger
    assert r["b"] > r["a"]


def test_compare_text_names_both_files_and_lowerings(pair: tuple[Path, Path]) -> None:
    a, b = pair
    r = invoke(["inspect", a, "--compare", b])
    assert r.exit_code == 0, r.output
    assert f"A: {a} (rct, element-wise integer, batch 8)" in r.stdout
    assert f"B: {b} (rct, element-wise float, batch 8)" in r.stdout
    assert "float islands (nodes)" in r.stdout
    islands = next(line for line in r.stdout.splitlines() if line.startswith("float islands (nodes)"))
    assert islands.endswith("from 0"), islands  # 0 -> N has no ratio
    same = invoke(["inspect", a, "--compare", a])
    row = next(line for line in same.stdout.splitlines() if line.startswith("float islands (nodes)"))
    assert row.endswith("same") and "+0.0%" in same.stdout


def test_compare_notes_a_different_batch(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = pair
    c = tmp_path / "b4.rct"
    assert invoke(["compile", model_path("lenet"), "-o", c, "--batch-size", 4]).exit_code == 0
    cmp = _json(["inspect", a, "--compare", c, "--json"])["compare"]
    assert any("batch sizes differ (8 and 4)" in n for n in cmp["notes"])


def test_compare_with_a_missing_file_is_refused(pair: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = pair
    r = invoke(["inspect", a, "--compare", tmp_path / "nope.rct"])
    assert_contract(r)
    assert "nope.rct: no such file" in r.stderr


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "onnx", "folder"])
def test_compare_with_a_bad_file_is_refused(pair: tuple[Path, Path], tmp_path: Path, kind: str) -> None:
    """Every unreadable second file is one line naming it, exit 2, and the first file untouched."""
    from rctc.models import path as model_path

    a, _ = pair
    before = a.read_bytes()
    bad = tmp_path / ("b" if kind == "folder" else "b.rct")
    if kind == "truncated":
        bad.write_bytes(before[: len(before) // 2])
    elif kind == "garbage":
        bad.write_bytes(b"\x00\xffnot a model" * 100)
    elif kind == "empty":
        bad.write_bytes(b"")
    elif kind == "onnx":
        bad.write_bytes(Path(model_path("lenet")).read_bytes())
    else:
        bad.mkdir()
    r = invoke(["inspect", a, "--compare", bad])
    assert_contract(r)
    assert str(bad.name) in r.stderr
    assert a.read_bytes() == before

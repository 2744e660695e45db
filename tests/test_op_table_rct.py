"""``rctc ops``'s rct column agrees with what ``rctc compile`` does to every bundled model.

For each bundled ONNX model compiled in rct mode (the default ``--elementwise integer``), each
ONNX op type of its graph is checked against the table: "integer" -> no node of that type is left
computing floats (it became its integer twin); "float-island" -> at least one of its nodes is
listed among the compiled graph's float islands; "integer (some attributes: float island)" ->
either, and a float island of that type only where the definition says the rule may refuse;
"integer (layout)" -> never an island. No island's op type is one the table calls integer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import rctc
from rctc.ops.table import RCT_INTEGER, RCT_LAYOUT, RCT_SOME, operator_table

MODELS = sorted((Path(__file__).resolve().parents[1] / "models").glob("*.onnx"))
COLUMN = {r["op_type"]: r["modes"]["rct"] for r in operator_table() if r["domain"] == "ai.onnx"}


def test_bundled_models_found() -> None:
    assert len(MODELS) >= 5, MODELS


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_rct_column_matches_compile(path: Path) -> None:
    model = onnx.load(str(path))
    onnx_ops = {n.op_type for n in model.graph.node}
    g = rctc.compile(model, mode="rct", batch_size=2).graph
    islands = {i["op_type"] for i in g.meta["float_islands"]}
    assert islands <= set(COLUMN) | {"Dequantize"}, islands
    float_left = {n.op_type for n in g.nodes if n.meta.get("phase", "forward") != "update"
                  and any(o.dtype is not None and np.issubdtype(np.dtype(o.dtype), np.floating) for o in n.outputs)}
    for op in sorted(onnx_ops & set(COLUMN)):
        col = COLUMN[op]
        if col == RCT_INTEGER:
            assert op not in float_left and op not in islands, f"{path.stem}: table says {op} is integer in rct"
        elif col == "float-island":
            assert op in islands, f"{path.stem}: table says {op} is a float island in rct, compile lowered it"
        elif col == RCT_LAYOUT:
            assert op not in islands, op
        else:
            assert col == RCT_SOME, (op, col)
    for op in islands:
        assert COLUMN.get(op) in ("float-island", RCT_SOME), f"{path.stem}: {op} is an island, not {COLUMN.get(op)}"

"""``rctc ops`` (the operator table from the op definitions) and ``rctc digest`` (the state digest)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from rctc.ops.table import operator_table


def test_ops_json_is_the_operator_table(run) -> None:
    r = run(["ops", "--json"])
    assert r.exit_code == 0, r.output
    ops = json.loads(r.stdout)["ops"]
    assert ops == json.loads(json.dumps(operator_table()))
    assert len(ops) >= 60 and len({o["op_type"] for o in ops}) == len(ops)
    prelu = next(o for o in ops if o["op_type"] == "PRelu")
    assert prelu["modes"]["fp32"] and prelu["modes"]["qat"] and prelu["modes"]["rct"] in ("integer", "float-island")
    assert set(prelu["differentiable"]) >= {"X", "slope"}


def test_ops_text_lists_every_op_and_counts_them(run) -> None:
    r = run(["ops"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert any(ln.split()[:1] == ["PRelu"] for ln in lines)
    assert lines[-1].startswith(f"{len(operator_table())} op types")


def test_digest_changes_with_training_and_is_deterministic(run, work: Path, tmp_path: Path) -> None:
    before = run(["digest", work / "mlp.rct"])
    assert before.exit_code == 0, before.output
    assert re.fullmatch(r"digest [0-9a-f]{8}\n", before.stdout)
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(work / "mlp.rct", twin / "mlp.rct")
    for folder in (work, twin):
        t = run(["train", folder / "mlp.rct", "--data", work / "data.npz", "--steps", 2, "--seed", 3, "--json"])
        assert t.exit_code == 0, t.output
    a = json.loads(run(["digest", work / "mlp.rct", "--json"]).stdout)
    b = json.loads(run(["digest", twin / "mlp.rct", "--json"]).stdout)
    assert a == b and a["tensors"] > 0
    assert f"digest {a['digest']}\n" != before.stdout


def test_digest_of_a_damaged_file_is_one_line(refused, work: Path) -> None:
    bad = work / "bad.rct"
    bad.write_bytes(b"not an rct file")
    refused(work, ["digest", bad])

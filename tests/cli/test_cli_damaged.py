"""Hand-edited or damaged .rct files and checkpoints: one line "damaged or from another version".

The edits are re-signed (the SHA-256 recomputed) so they get past the integrity check, like a user
who edited the metadata with a script, or a file written by another rctc version.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import helper

from rctc.checkpoint import payload_digest


def resign_rct(path: Path, edit_meta: Callable[[dict[str, Any]], Any] | None = None,
               edit_model: Callable[[onnx.ModelProto], None] | None = None, raw_meta: str | None = None) -> None:
    m = onnx.load(str(path))
    props = {p.key: p.value for p in m.metadata_props}
    meta = json.loads(props["rctc.meta"])
    if edit_meta is not None:
        edit_meta(meta)
    if edit_model is not None:
        edit_model(m)
    meta_json = raw_meta if raw_meta is not None else json.dumps(meta, sort_keys=True)
    digest = hashlib.sha256(m.graph.SerializeToString(deterministic=True) + meta_json.encode()).hexdigest()
    del m.metadata_props[:]
    helper.set_model_props(m, {**props, "rctc.meta": meta_json, "rctc.sha256": digest})
    path.write_bytes(m.SerializeToString())


def _del(d: dict[str, Any], *keys: str) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        target = meta
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]
    return edit


def _set(value: Any, *keys: str) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        target = meta
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return edit


def _first_value(meta: dict[str, Any]) -> str:
    return sorted(meta["values"])[0]


def _rename_node_input(m: onnx.ModelProto) -> None:
    m.graph.node[3].input[0] = "no_such_tensor"


def _drop_value_info(m: onnx.ModelProto) -> None:
    del m.graph.value_info[:]


def _node_ids(meta: dict[str, Any], new_id: Callable[[int], Any]) -> None:
    """Re-number the nodes' ``node_id`` (``new_id(i) is None`` drops node i's id)."""
    for i, name in enumerate(sorted(meta["nodes"])):
        meta["nodes"][name].pop("node_id", None)
        if new_id(i) is not None:
            meta["nodes"][name]["node_id"] = new_id(i)


def _bad_initializer(m: onnx.ModelProto) -> None:
    m.graph.initializer[0].dims.append(7)


RCT_CASES: dict[str, dict[str, Any]] = {
    "bad JSON": {"raw_meta": '{"graph": {"mode": '},
    "JSON not an object": {"raw_meta": "[1, 2]"},
    "no graph meta": {"edit_meta": _del({}, "graph")},
    "no mode": {"edit_meta": _del({}, "graph", "mode")},
    "unknown mode": {"edit_meta": _set("int3", "graph", "mode")},
    "no options": {"edit_meta": _del({}, "graph", "options")},
    "option missing": {"edit_meta": _del({}, "graph", "options", "lr")},
    "option of wrong type": {"edit_meta": _set("fast", "graph", "options", "lr")},
    "option out of range": {"edit_meta": _set(-3, "graph", "options", "batch_size")},
    "model input missing": {"edit_meta": _set(["ghost"], "graph", "model_inputs")},
    "model outputs empty": {"edit_meta": _set([], "graph", "model_outputs")},
    "loss names a ghost": {"edit_meta": _set("ghost", "graph", "loss")},
    "step not an int": {"edit_meta": _set("7", "graph", "step")},
    "state update to a ghost": {"edit_meta": _set({"fc1.weight": "ghost"}, "state_updates")},
    "value kind unknown": {"edit_meta": lambda meta: meta["values"][_first_value(meta)].update(kind="weird")},
    "value record not an object": {"edit_meta": lambda meta: meta["values"].update({_first_value(meta): 3})},
    "inputs not names": {"edit_meta": _set([1, 2], "inputs")},
    "input without a type": {"edit_meta": _set(["x", "ghost"], "inputs")},
    "node reads a missing tensor": {"edit_model": _rename_node_input},
    "outputs without types": {"edit_model": _drop_value_info},
    "initializer dims vs data": {"edit_model": _bad_initializer},
    "node id on one node only": {"edit_meta": lambda meta: _node_ids(meta, lambda i: {0: 0}.get(i))},
    "node ids repeated": {"edit_meta": lambda meta: _node_ids(meta, lambda i: 0)},
    "node id not an integer": {"edit_meta": lambda meta: _node_ids(meta, lambda i: "7" if i == 0 else i)},
}


@pytest.mark.parametrize("case", list(RCT_CASES))
@pytest.mark.parametrize("command", ["inspect", "train"])
def test_damaged_rct(case: str, command: str, work: Path, refused: Callable) -> None:
    rct = work / "mlp.rct"
    resign_rct(rct, **RCT_CASES[case])
    args = ["inspect", rct] if command == "inspect" else ["train", rct, "--data", work / "data.npz", "--steps", "1"]
    line = refused(work, args, "damaged or from another version of rctc")
    assert str(rct) in line


def _resign_ckpt(path: Path, edit: Callable[[dict[str, Any], dict[str, np.ndarray]], None]) -> None:
    """Rewrite a checkpoint with edited meta / arrays and a recomputed digest (rctc.checkpoint's scheme)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    arrays.pop("sha256")
    edit(meta, arrays)
    meta_bytes = json.dumps(meta, sort_keys=True).encode()
    arrays["sha256"] = np.frombuffer(payload_digest(meta_bytes, arrays).encode(), np.uint8)
    arrays["meta"] = np.frombuffer(meta_bytes, np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


CKPT_CASES: dict[str, Callable[[dict[str, Any], dict[str, np.ndarray]], None]] = {
    "missing its model": lambda meta, arrays: meta.pop("model"),
    "run position missing": lambda meta, arrays: meta["run"].pop("pos"),
    "run position negative": lambda meta, arrays: meta["run"].update(done=-4),
    "state array missing": lambda meta, arrays: arrays.pop("state_0"),
    "state names not names": lambda meta, arrays: meta.update(state_names=[1, 2]),
    "generator state garbage": lambda meta, arrays: meta.update(data_rng={"bit_generator": "nope"}),
    "controller window garbage": lambda meta, arrays: meta.update(controller=[{"w": [1, 2, 3]}]),
    "args missing": lambda meta, arrays: meta.pop("args"),
    "step a string": lambda meta, arrays: meta.update(step="3"),
}


@pytest.mark.parametrize("case", list(CKPT_CASES))
def test_damaged_checkpoint(case: str, work: Path, run: Callable, contract: Callable, refused: Callable) -> None:
    out = work / "t.rct"
    args = ["train", work / "mlp.rct", "--data", work / "data.npz", "-o", out, "--steps", "3",
            "--checkpoint-every", "1"]
    contract(run(args), allowed=(0,))
    (work / "t.rct.ckpt.prev").unlink(missing_ok=True)
    _resign_ckpt(work / "t.rct.ckpt", CKPT_CASES[case])
    refused(work, [*args, "--resume"], "t.rct.ckpt: checkpoint")

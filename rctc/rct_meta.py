"""The schema of a ``.rct`` file's metadata (``rctc.meta``), checked when the file is loaded.

Needs: the metadata JSON text and, after the graph is rebuilt, the graph. Leaves: either a meta
dict whose every key the loader and the runtime read is present with the right type and names
values / nodes that exist, or one ``RctcError`` saying the file is damaged or from another version
(a hand edit that re-signed the file, or a file from a different rctc), never a KeyError later.
"""

from __future__ import annotations

import json
from typing import Any

from rctc.errors import RctcError
from rctc.ir import VALUE_KINDS, Graph
from rctc.options import MODES, CompileOptions

TOP_KEYS: dict[str, type] = {"graph": dict, "values": dict, "nodes": dict, "inputs": list, "state_updates": dict}
GRAPH_KEYS: dict[str, type | tuple[type, ...]] = {
    "mode": str, "options": dict, "model_inputs": list, "model_outputs": list, "step": int, "source": (str, type(None)),
    "forward_snapshot": dict,
}
# graph meta entries that name a value of the graph, when present
VALUE_REFS = ("loss", "logits", "lr_input", "target_input")


def damaged(source: str, why: str) -> RctcError:
    return RctcError(f"{source}: damaged or from another version of rctc ({why}); recompile the model or "
                     "restore the file")


def _expect(d: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str, source: str) -> Any:
    if key not in d:
        raise damaged(source, f"{where} has no {key!r}")
    val = d[key]
    if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
        raise damaged(source, f"{where} {key!r} is a {type(val).__name__}")
    return val


def _check_values(values: dict[str, Any], source: str) -> None:
    for name, info in values.items():
        if not isinstance(info, dict):
            raise damaged(source, f"value {name!r} has no metadata record")
        kind = _expect(info, "kind", str, f"value {name!r}", source)
        if kind not in VALUE_KINDS:
            raise damaged(source, f"value {name!r} has unknown kind {kind!r}")
        _expect(info, "trainable", bool, f"value {name!r}", source)
        _expect(info, "meta", dict, f"value {name!r}", source)


def parse_meta(meta_json: str, source: str) -> dict[str, Any]:
    """The metadata of a .rct, its structure checked (see the module docstring)."""
    try:
        meta = json.loads(meta_json)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise damaged(source, f"metadata is not JSON: {type(exc).__name__}") from None
    if not isinstance(meta, dict):
        raise damaged(source, "metadata is not a JSON object")
    for key, typ in TOP_KEYS.items():
        _expect(meta, key, typ, "metadata", source)
    for key, typ in GRAPH_KEYS.items():
        _expect(meta["graph"], key, typ, "graph metadata", source)
    if meta["graph"]["mode"] not in MODES:
        raise damaged(source, f"unknown mode {meta['graph']['mode']!r}")
    _check_options(meta["graph"]["options"], source)
    _check_values(meta["values"], source)
    if not all(isinstance(n, str) for n in meta["inputs"]):
        raise damaged(source, "the input list holds a non-name")
    if not all(isinstance(v, dict) for v in meta["nodes"].values()):
        raise damaged(source, "a node's metadata is not an object")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta["state_updates"].items()):
        raise damaged(source, "a state update is not a pair of names")
    return meta


def _check_options(opts: dict[str, Any], source: str) -> None:
    missing = [f for f in CompileOptions.__dataclass_fields__ if f not in opts]
    if missing:
        raise damaged(source, f"compile options lack {', '.join(missing)}")
    try:
        CompileOptions.from_dict(opts).validate()
    except RctcError as exc:
        raise damaged(source, f"compile options: {exc}") from None


def check_references(g: Graph, source: str) -> None:
    """Every name the metadata uses is a value / node of the rebuilt graph."""
    meta = g.meta

    def need(name: Any, what: str) -> None:
        if not isinstance(name, str) or name not in g.values:
            raise damaged(source, f"{what} names tensor {name!r}, which the graph does not have")

    if not meta["model_inputs"] or not meta["model_outputs"]:
        raise damaged(source, "no model inputs or outputs")
    for name in meta["model_inputs"]:
        need(name, "model input")
    for name in meta["model_outputs"]:
        need(name, "model output")
    for key in VALUE_REFS:
        if key in meta:
            need(meta[key], f"graph metadata {key!r}")
    for state, new in g.state_updates.items():
        need(state, "a state update")
        need(new, f"the update of {state!r}")
    for n in g.nodes:
        if "param" in n.meta:
            need(n.meta["param"], f"node {n.name!r}")

"""The .rct file: one self-describing, versioned, integrity-checked ONNX container.

A .rct is an ONNX ModelProto (``onnx.load`` and Netron open it) whose graph is the full
compiled graph (forward, loss, backward, updates; rctc's own ops in domain ``rctc``),
whose initializers are the training state (parameters as integers in rct mode), and whose
``metadata_props`` hold:

  rctc.format    "rct"
  rctc.version   the format version (``FORMAT_VERSION``)
  rctc.meta      JSON: graph meta (mode, slots, options, ...), value kinds, node meta (each
                 node's ``node_id``, the key of its random stream), state updates
  rctc.sha256    SHA-256 over the serialised graph and the meta JSON

Files are written atomically: temporary file in the same folder, fsync, rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rctc.errors import RctcError
from rctc.ir import Graph, IRError
from rctc.jsonutil import json_default
from rctc.legacy import assign_roles, needs_roles
from rctc.node_ids import NODE_ID, assign_node_ids, has_node_ids
from rctc.onnx_attrs import attrs_from_proto
from rctc.onnx_export import graph_to_model
from rctc.rct_meta import check_references, damaged, parse_meta

FORMAT_VERSION = 1


def _public_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if not k.startswith("_")}


def graph_to_rct(g: Graph) -> onnx.ModelProto:
    """Serialise the whole graph with its state and metadata."""
    model = graph_to_model(g)
    known = {i.name for i in model.graph.initializer}
    for v in g.values.values():  # state nobody reads in this graph is still state
        if v.kind in ("param", "buffer", "const") and v.name not in known and v.data is not None:
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(v.data), v.name))
    values = {
        v.name: {"kind": v.kind, "trainable": v.trainable, "meta": v.meta}
        for v in g.values.values()
        if v.kind != "temp" or v.meta
    }
    node_meta = {n.name: n.meta for n in g.nodes if n.meta}
    meta = {
        "graph": _public_meta(g.meta),
        "values": values,
        "nodes": node_meta,
        "inputs": [v.name for v in g.inputs],
        "state_updates": g.state_updates,
    }
    meta_json = json.dumps(meta, sort_keys=True, default=json_default)
    digest = hashlib.sha256(model.graph.SerializeToString(deterministic=True) + meta_json.encode()).hexdigest()
    helper.set_model_props(
        model,
        {"rctc.format": "rct", "rctc.version": str(FORMAT_VERSION), "rctc.meta": meta_json, "rctc.sha256": digest},
    )
    return model



def check_writable(path: str | os.PathLike[str]) -> None:
    """Fail early (before any work) when ``path`` cannot be written as a file."""
    p = Path(path)
    if p.is_dir():
        raise RctcError(f"{p}: is a directory; give a file name for the output")
    folder = p.resolve().parent
    if not folder.is_dir():
        raise RctcError(f"{p}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RctcError(f"{p}: folder {folder} is not writable")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename; never half-writes."""
    p = Path(path)
    check_writable(p)
    folder = p.resolve().parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise RctcError(f"{p}: cannot create a file in {folder} ({exc.strerror or exc})") from exc
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would (or the old file's)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, p.stat().st_mode & 0o777 if p.exists() else 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise RctcError(f"{p}: cannot write ({exc.strerror or exc}); nothing was changed") from exc


def save_rct(g: Graph, path: str | os.PathLike[str]) -> None:
    atomic_write_bytes(path, graph_to_rct(g).SerializeToString())


def load_rct(path: str | os.PathLike[str]) -> Graph:
    """Load and integrity-check a .rct file into an IR Graph."""
    p = Path(path)
    if not p.exists():
        raise RctcError(f"{p}: no such file; compile a model first with `rctc compile`")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:
        raise RctcError(f"{p}: not a readable .rct file ({type(exc).__name__}); is it truncated?") from exc
    return rct_to_graph(model, str(p))


def rct_to_graph(model: onnx.ModelProto, source: str = "model.rct") -> Graph:
    corrupt = f"{source}: integrity check failed (file changed or corrupt); recompile or restore it"
    props: dict[str, str] = {}
    for prop in model.metadata_props:
        if isinstance(prop.key, bytes) or isinstance(prop.value, bytes):  # protobuf's answer to invalid UTF-8
            raise RctcError(corrupt)
        props[prop.key] = prop.value
    if props.get("rctc.format") != "rct":
        raise RctcError(f"{source}: not an rctc .rct file (an ONNX model? compile it with `rctc compile` first)")
    try:
        version = int(props.get("rctc.version", "0"))
    except ValueError:
        raise RctcError(corrupt) from None
    if version != FORMAT_VERSION:
        raise RctcError(f"{source}: .rct format version {version}, this rctc reads {FORMAT_VERSION}; recompile")
    meta_json = props.get("rctc.meta", "")
    digest = hashlib.sha256(model.graph.SerializeToString(deterministic=True) + meta_json.encode()).hexdigest()
    if digest != props.get("rctc.sha256"):
        raise RctcError(corrupt)
    meta = parse_meta(meta_json, source)
    try:
        g = _build_graph(model, meta, source)
        g.verify()
    except IRError as exc:
        raise damaged(source, str(exc)) from None
    check_references(g, source)
    return g


def _tensor_array(t: onnx.TensorProto, source: str) -> np.ndarray:
    if t.data_location == onnx.TensorProto.EXTERNAL:
        raise damaged(source, f"state tensor {t.name!r} points to external data; a .rct holds its state inline")
    try:
        return numpy_helper.to_array(t).copy()
    except (ValueError, TypeError, KeyError) as exc:
        raise damaged(source, f"state tensor {t.name!r} cannot be read: {exc}") from None


def _shapes(model: onnx.ModelProto, source: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for vi in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        tt = vi.type.tensor_type
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except (KeyError, TypeError, ValueError):
            raise damaged(source, f"tensor {vi.name!r} has unknown element type {tt.elem_type}") from None
        shapes[vi.name] = (tuple(d.dim_value for d in tt.shape.dim), dtype)
    return shapes


def _build_graph(model: onnx.ModelProto, meta: dict[str, Any], source: str) -> Graph:
    g = Graph(name=model.graph.name)
    g.meta.update(meta["graph"])
    vmeta = meta["values"]
    for t in model.graph.initializer:
        if t.name in g.values:
            raise damaged(source, f"state tensor {t.name!r} appears twice")
        info = vmeta.get(t.name, {"kind": "const", "trainable": False, "meta": {}})
        v = g.add_value(t.name, None, None, info["kind"], _tensor_array(t, source))
        v.trainable = info["trainable"]
        v.meta = info["meta"]
    shapes = _shapes(model, source)

    def shape_of(name: str, what: str) -> tuple[tuple[int, ...], np.dtype]:
        if name not in shapes:
            raise damaged(source, f"{what} {name!r} has no declared type and shape")
        return shapes[name]

    for name in meta["inputs"]:
        g.add_input(name, *shape_of(name, "input"))
    for n in model.graph.node:
        missing = [i for i in n.input if i and i not in g.values]
        if missing:
            raise damaged(source, f"node {n.name!r} reads tensor {missing[0]!r}, which no earlier node produces")
        outs = [(o, *shape_of(o, f"output of node {n.name!r}")) for o in n.output]
        ins = [g.values[i] if i else None for i in n.input]
        node = g.add_node(n.op_type, ins, outs, attrs_from_proto(n.attribute), name=n.name, domain=n.domain)
        node.meta = meta["nodes"].get(n.name, {})
        for o in node.outputs:
            if o.name in vmeta:
                o.meta = vmeta[o.name]["meta"]
    missing = [o.name for o in model.graph.output if o.name not in g.values]
    if missing:
        raise damaged(source, f"graph output {missing[0]!r} is not produced")
    g.outputs = [g.values[o.name] for o in model.graph.output]
    g.state_updates = dict(meta["state_updates"])
    if needs_roles(g):  # written before values had typed roles
        assign_roles(g)
    ids = [n.meta.get(NODE_ID) for n in g.nodes]
    if any(i is not None for i in ids) and (
            None in ids or not all(type(i) is int and 0 <= i < 2**32 for i in ids) or len(set(ids)) != len(ids)):
        raise damaged(source, "node ids missing on some nodes, repeated or not 32-bit integers")
    if not has_node_ids(g):  # written before nodes had ids: the same numbering compile gives
        assign_node_ids(g)
    return g

"""Unroll ONNX ``GRU`` and ``LSTM`` nodes into their cell equations over the static sequence.

Needs: a model whose batch is bound and whose constants are folded out (``consts``: name ->
array, rctc.constant_folding.fold_in_place), so every RNN input's shape is static.
Leaves: each GRU / LSTM replaced, in place, by opset-18 ops the rest of rctc already differentiates
and lowers (Gather, Transpose, MatMul, Add, Sub, Mul, Sigmoid, Tanh, Unsqueeze, Concat), one cell
per time step and direction, exactly the equations of the ONNX operator specification
(https://onnx.ai/onnx/operators/onnx__GRU.html, onnx__LSTM.html, default activations). The
parameters ``W``, ``R``, ``B`` keep their initializer names and layout: each gate's weights are a
``Gather`` of rows of them, so training updates the tensors the user named and the backward pass
through time comes from the ordinary gradient rules. Index vectors are new constants in ``consts``.

Refused with one line (UnsupportedOpError): a non-static sequence length, ``sequence_lens``,
peepholes ``P``, non-default ``activations``, ``clip`` and LSTM's ``input_forget``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, shape_inference

from rctc.errors import UnsupportedOpError

RNN_OPS = ("GRU", "LSTM")
#: ONNX gate order in W / R / B rows: GRU z, r, h; LSTM i, o, f, c
_GATES = {"GRU": ("z", "r", "h"), "LSTM": ("i", "o", "f", "c")}
_DEFAULT_ACTS = {"GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}


class _Builder:
    """Appends nodes with fresh names under one prefix; constants go to ``consts``."""

    def __init__(self, prefix: str, consts: dict[str, np.ndarray]) -> None:
        self.prefix, self.consts, self.nodes, self.n = prefix, consts, [], 0

    def fresh(self, tag: str) -> str:
        self.n += 1
        return f"{self.prefix}/{tag}.{self.n}"

    def const(self, tag: str, value: np.ndarray) -> str:
        name = self.fresh(tag)
        self.consts[name] = value
        return name

    def op(self, op_type: str, inputs: list[str], tag: str, out: str | None = None, **attrs: object) -> str:
        y = out or self.fresh(tag)
        self.nodes.append(helper.make_node(op_type, inputs, [y], name=self.fresh(op_type.lower()), **attrs))
        return y

    def rows(self, x: str, first: int, count: int, axis: int = 0) -> str:
        """``x[first:first+count]`` along ``axis`` as a Gather (differentiable into a parameter)."""
        idx = self.const("rows", np.arange(first, first + count, dtype=np.int64))
        return self.op("Gather", [x, idx], "rows", axis=axis)

    def pick(self, x: str, i: int, axis: int = 0) -> str:
        """``x[i]`` along ``axis``, the axis dropped."""
        return self.op("Gather", [x, self.const("index", np.array(i, np.int64))], "pick", axis=axis)

    def state_at(self, x: str, i: int) -> str:
        """``x[i]`` of an initial state: Slice + Squeeze, not Gather, whose data slot is a weight's
        (an embedding's), so a constant state stays a constant."""
        one = [self.const(k, np.array([v], np.int64)) for k, v in (("start", i), ("end", i + 1), ("axes", 0))]
        return self.op("Squeeze", [self.op("Slice", [x, *one], "state_slice"), one[2]], "state")


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _refuse(node: onnx.NodeProto, source: str, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(f"{source}: {node.op_type} node {node.name or '?'!r} {why}; re-export the model "
                              "without it (PyTorch's nn.GRU / nn.LSTM export what rctc supports)")


def _check(node: onnx.NodeProto, source: str, shapes: dict[str, tuple[int, ...] | None]) -> None:
    acts = [a.decode() if isinstance(a, bytes) else a for a in _attr(node, "activations", [])]
    default = _DEFAULT_ACTS[node.op_type] * (2 if _attr(node, "direction", b"forward") == b"bidirectional" else 1)
    if acts and [a.lower() for a in acts] != [a.lower() for a in default]:
        raise _refuse(node, source, f"uses activations {acts} (only the defaults are supported)")
    if _attr(node, "clip", None) is not None:
        raise _refuse(node, source, "clips its cell input (clip)")
    if node.op_type == "LSTM" and int(_attr(node, "input_forget", 0)):
        raise _refuse(node, source, "couples its input and forget gates (input_forget=1)")
    ins = list(node.input) + [""] * 8
    if ins[4]:
        raise _refuse(node, source, "takes sequence_lens (variable-length sequences)")
    if node.op_type == "LSTM" and ins[7]:
        raise _refuse(node, source, "has peephole weights P")
    shape = shapes.get(node.input[0])
    if shape is None or any(d is None or d < 1 for d in shape):
        raise _refuse(node, source, f"has an input of non-static shape {shape} (the sequence is unrolled at "
                      "compile time: export with a fixed sequence length")


def _static_shapes(model: onnx.ModelProto, consts: dict[str, np.ndarray]) -> dict[str, tuple[int, ...] | None]:
    from rctc.constant_folding import shape_skeleton

    inferred = shape_inference.infer_shapes(shape_skeleton(model, consts), data_prop=True)
    out: dict[str, tuple[int, ...] | None] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
            out[vi.name] = dims  # type: ignore[assignment]
    return out


def _gru_cell(b: _Builder, xg: str, h: str | None, r_t: dict[str, str], bias: dict[str, str], hidden: int,
              linear_before_reset: bool) -> str:
    """One GRU step: ``xg`` is x_t W^T + Wb (all three gates), ``h`` the previous state (None: zero,
    the terms it multiplies are left out instead of multiplying a constant zero state)."""
    def gate(name: str) -> str:
        return b.rows(xg, "zrh".index(name) * hidden, hidden, axis=1)

    def pre(name: str) -> str:
        x_part = gate(name) if h is None else b.op("Add", [gate(name), b.op("MatMul", [h, r_t[name]], "h" + name)],
                                                   f"{name}_in")
        return b.op("Add", [x_part, bias[f"R{name}"]], f"{name}_pre")
    z, r = b.op("Sigmoid", [pre("z")], "z"), b.op("Sigmoid", [pre("r")], "r")
    if linear_before_reset:
        hh = bias["Rh"] if h is None else b.op("Add", [b.op("MatMul", [h, r_t["h"]], "hh"), bias["Rh"]], "hh_b")
        cand_in = b.op("Add", [gate("h"), b.op("Mul", [r, hh], "r_hh")], "cand_in")
    elif h is None:
        cand_in = b.op("Add", [gate("h"), bias["Rh"]], "cand_in")
    else:
        rh = b.op("MatMul", [b.op("Mul", [r, h], "r_h"), r_t["h"]], "rh")
        cand_in = b.op("Add", [b.op("Add", [gate("h"), rh], "cand_sum"), bias["Rh"]], "cand_in")
    cand = b.op("Tanh", [cand_in], "cand")
    # H = (1 - z) * cand + z * h = cand + z * (h - cand)
    h_minus = b.op("Neg", [cand], "h_minus") if h is None else b.op("Sub", [h, cand], "h_minus")
    return b.op("Add", [cand, b.op("Mul", [z, h_minus], "z_mix")], "h")


def _lstm_cell(b: _Builder, xg: str, h: str | None, c: str | None, r_t: str, bias: str,
               hidden: int) -> tuple[str, str]:
    """One LSTM step (gates i, o, f, c of x_t W^T + Wb + h R^T + Rb); None states are zero."""
    x_part = xg if h is None else b.op("Add", [xg, b.op("MatMul", [h, r_t], "hg")], "g_in")
    pre = b.op("Add", [x_part, bias], "g_pre")

    def gate(k: int) -> str:
        return b.rows(pre, k * hidden, hidden, axis=1)
    i, o, f = (b.op("Sigmoid", [gate(k)], n) for k, n in ((0, "i"), (1, "o"), (2, "f")))
    g = b.op("Tanh", [gate(3)], "g")
    ig = b.op("Mul", [i, g], "ig")
    c_new = ig if c is None else b.op("Add", [b.op("Mul", [f, c], "fc"), ig], "c")
    return b.op("Mul", [o, b.op("Tanh", [c_new], "tanh_c")], "h"), c_new


def _direction(b: _Builder, node: onnx.NodeProto, d: int, backwards: bool, xs: str, seq: int, batch: int,
               hidden: int, init: dict[str, str | None]) -> tuple[list[str], str, str | None]:
    """The cells of the direction whose weights are index ``d`` of W / R / B (``backwards``: from the
    last step to the first): its per-step outputs in time order, its last h and (LSTM) last c."""
    w, r = node.input[1], node.input[2]
    bias_in = node.input[3] if len(node.input) > 3 and node.input[3] else None
    gates = len(_GATES[node.op_type])
    w_d, r_d = b.pick(w, d), b.pick(r, d)
    xw = b.op("MatMul", [xs, b.op("Transpose", [w_d], "wT", perm=[1, 0])], "xw")  # [seq, B, gates*H]
    bd = b.pick(bias_in, d) if bias_in else None
    if bd is not None:
        xw = b.op("Add", [xw, b.rows(bd, 0, gates * hidden)], "xw_b")
    def state(key: str) -> str | None:
        src = init[key]
        return b.state_at(src, d) if src else None
    h, c = state("h"), state("c")
    if node.op_type == "GRU":
        r_t = {g: b.op("Transpose", [b.rows(r_d, k * hidden, hidden)], f"r{g}T", perm=[1, 0])
               for k, g in enumerate("zrh")}
        rb = (lambda k: b.rows(bd, (gates + k) * hidden, hidden)) if bd is not None else (lambda k: b.const(
            "zero_b", np.zeros(hidden, np.float32)))
        bias = {f"R{g}": rb(k) for k, g in enumerate("zrh")}
        lbr = bool(int(_attr(node, "linear_before_reset", 0)))
    else:
        r_all = b.op("Transpose", [r_d], "rT", perm=[1, 0])
        rb_all = b.rows(bd, gates * hidden, gates * hidden) if bd is not None else b.const(
            "zero_b", np.zeros(gates * hidden, np.float32))
    order = range(seq - 1, -1, -1) if backwards else range(seq)
    step_out: dict[int, str] = {}
    last_c: str | None = c
    for t in order:
        xg = b.pick(xw, t)
        if node.op_type == "GRU":
            h = _gru_cell(b, xg, h, r_t, bias, hidden, lbr)
        else:
            h, last_c = _lstm_cell(b, xg, h, last_c, r_all, rb_all, hidden)
        step_out[t] = h
    outs = [step_out[t] for t in range(seq)]
    assert h is not None  # seq >= 1
    return outs, h, last_c


def _unroll(node: onnx.NodeProto, idx: int, consts: dict[str, np.ndarray],
            shapes: dict[str, tuple[int, ...] | None]) -> list[onnx.NodeProto]:
    b = _Builder(f"{node.name or node.op_type.lower()}.{idx}", consts)
    layout = int(_attr(node, "layout", 0))
    hidden = int(_attr(node, "hidden_size", 0)) or int(consts[node.input[2]].shape[-1])
    direction = _attr(node, "direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else str(direction)
    x = node.input[0]
    shape = shapes[x]
    assert shape is not None
    seq, batch = (shape[1], shape[0]) if layout else (shape[0], shape[1])
    xs = b.op("Transpose", [x], "x_seq", perm=[1, 0, 2]) if layout else x
    ins = list(node.input) + [""] * 8

    def init_state(i: int) -> str | None:
        # a constant zero state (PyTorch's default, folded from Shape -> ConstantOfShape once the batch
        # is bound) is the absent one: the same numbers, and no batch size baked into the graph
        if not ins[i] or (ins[i] in consts and not np.any(consts[ins[i]])):
            return None
        return b.op("Transpose", [ins[i]], "state", perm=[1, 0, 2]) if layout else ins[i]
    init = {"h": init_state(5), "c": init_state(6) if node.op_type == "LSTM" else None}
    # (weight index, backwards) per direction: a reverse node's only direction is index 0
    plan = {"forward": [(0, False)], "reverse": [(0, True)], "bidirectional": [(0, False), (1, True)]}[direction]
    results = [_direction(b, node, d, back, xs, seq, batch, hidden, init) for d, back in plan]
    return _outputs(b, node, results, layout)


def _outputs(b: _Builder, node: onnx.NodeProto, results: list[tuple[list[str], str, str | None]],
             layout: int) -> list[onnx.NodeProto]:
    ax = b.const("axis0", np.array([0], np.int64))
    ax1 = b.const("axis1", np.array([1], np.int64))
    outs = list(node.output) + [""] * 3

    def stack(names: list[str], axes: str) -> str:
        return b.op("Concat", [b.op("Unsqueeze", [n, axes], "unsq") for n in names], "stack", axis=0)
    if outs[0]:
        per_dir = [stack(r[0], ax) for r in results]  # each [seq, B, H]
        y = b.op("Concat", [b.op("Unsqueeze", [p, ax1], "dir") for p in per_dir], "y", axis=1)  # [seq, D, B, H]
        b.op("Transpose", [y], "y_b", out=outs[0], perm=[2, 0, 1, 3]) if layout else b.op("Identity", [y], "y",
                                                                                            out=outs[0])
    for k, slot in ((1, 1), (2, 2)):
        if not outs[k]:
            continue
        last = [r[slot] for r in results]
        st = stack([s for s in last if s is not None], ax)  # [D, B, H]
        b.op("Transpose", [st], "st_b", out=outs[k], perm=[1, 0, 2]) if layout else b.op("Identity", [st], "st",
                                                                                           out=outs[k])
    return b.nodes


def unroll_rnns(model: onnx.ModelProto, consts: dict[str, np.ndarray], source: str) -> set[str]:
    """Replace every GRU / LSTM node of ``model`` by its unrolled cells, in place. Returns the names of
    constant initial states (``initial_h`` / ``initial_c`` stored as initializers, as the TorchScript
    exporter writes PyTorch's zero state): constants, never trained parameters."""
    graph = model.graph
    if not any(n.op_type in RNN_OPS and n.domain in ("", "ai.onnx") for n in graph.node):
        return set()
    shapes = _static_shapes(model, consts)
    new: list[onnx.NodeProto] = []
    states: set[str] = set()
    for i, n in enumerate(graph.node):
        if n.op_type in RNN_OPS and n.domain in ("", "ai.onnx"):
            _check(n, source, shapes)
            new.extend(_unroll(n, i, consts, shapes))
            states |= {s for s in list(n.input)[5:7] if s and s in consts}
        else:
            new.append(n)
    del graph.node[:]
    graph.node.extend(new)
    return states


"""C emitters of Pad on the integers (a layout op: one input position per output position, the
exponent passing through) and of the integer gradients IntPadGrad / IntResizeGrad (the
positions read summed exactly into int64, then rctc_iq_requantize).

Needs: the per-axis index tables of rctc.ops.resample (``pad_index``, ``resize_taps``: the same
taps the numpy kernels use), computed here at code-generation time from the constant pads /
scales / sizes or the gradient's attributes. Leaves: generated loops over the output (forward)
or the error (backward) in C order; a constant-padded position is 0 (the only constant the
lowering accepts); the gradient's stochastic words one per element of the input's shape.
A non-zero pad constant is refused (it stays a float island on the host). Nearest Resize on the
integers has no C emitter: its constant scales input is float32, which the integer C step does
not read, so the host runs it.
"""

from __future__ import annotations

import math

import numpy as np

from rctc.ir import Node, Value
from rctc.native.codegen.emit import Emit, bits_of, c_array, call_rq, ctype, emitter, refuse, strides, work_words
from rctc.ops.resample import pad_index, pad_plan, resize_taps


def _const(node: Node, i: int) -> np.ndarray | None:
    v = node.input(i) if i < len(node.inputs) else None
    if v is None:
        return None
    if v.data is None:
        raise refuse(node, f"reads a computed {v.name!r} (constant pads / scales / sizes are mapped)")
    return np.asarray(v.data)


def _resize_tables(node: Node, attrs: dict, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                   scale: list[float]) -> list[np.ndarray]:
    if str(attrs.get("mode", "nearest")) != "nearest":
        raise refuse(node, "is a linear Resize (only nearest is exact on the integers)")
    return [resize_taps(attrs, n_in, n_out, scale[a])[0] if (n_in != n_out or scale[a] != 1.0)
            else np.arange(n_in, dtype=np.int64) for a, (n_in, n_out) in enumerate(zip(in_shape, out_shape))]


def _pad_tables(mode: str, in_shape: tuple[int, ...], begin: list[int], end: list[int]) -> list[np.ndarray]:
    return [pad_index(mode, n, b, e) if (b or e) else np.arange(n, dtype=np.int64)
            for n, b, e in zip(in_shape, begin, end)]


def _walk(tables: list[np.ndarray], in_shape: tuple[int, ...], body: str) -> list[str]:
    """Loops over every position of the tables' (output) shape in C order; ``body`` sees ``o``
    (the output offset), ``src`` (the input offset) and ``inside`` (no constant position)."""
    lines = [c_array("int64_t", f"t{a}", t.tolist()) for a, t in enumerate(tables)]
    istr = strides(in_shape)
    lines.append("size_t o = 0;")
    for a, t in enumerate(tables):
        lines.append(f"for (size_t i{a} = 0; i{a} < {t.size}u; i{a}++) {{")
    terms = " + ".join(f"(size_t)t{a}[i{a}] * {s}u" for a, s in enumerate(istr)) or "0"
    neg = " && ".join(f"t{a}[i{a}] >= 0" for a in range(len(tables))) or "1"
    lines += [f"    const int inside = {neg};", f"    const size_t src = inside ? {terms} : 0;", f"    {body}",
              "    o++;", "}" * len(tables)]
    return lines


def _copy(node: Node, cx: Emit, x: Value, y: Value, tables: list[np.ndarray]) -> list[str]:
    if np.dtype(y.dtype) != np.dtype(x.dtype):
        raise refuse(node, "changes the dtype")
    if tuple(t.size for t in tables) != tuple(y.shape):
        raise refuse(node, f"writes {tuple(y.shape)} for tables of {tuple(t.size for t in tables)}")
    if not y.shape or math.prod(y.shape) == 0:
        return ["/* nothing to copy */"]
    return [f"const {ctype(x)} *xs = {cx.ptr(x)};", f"{ctype(y)} *ys = {cx.ptr(y)};",
            *_walk(tables, tuple(x.shape), f"ys[o] = inside ? xs[src] : ({ctype(y)})0;")]


@emitter("Pad")
def pad(node: Node, cx: Emit) -> list[str]:
    """Pad (constant 0 / reflect / edge) on any dtype: exact copies."""
    x, y = node.inputs[0], node.outputs[0]
    mode = str(node.attrs.get("mode", "constant"))
    c = _const(node, 2)
    if c is not None and c.size and float(c.reshape(-1)[0]) != 0.0:
        raise refuse(node, "pads with a non-zero constant")
    pads = _const(node, 1)
    assert pads is not None
    begin, end = pad_plan(node.attrs, tuple(x.shape), pads, _const(node, 3), f"Pad {node.name!r}")
    return _copy(node, cx, x, y, _pad_tables(mode, tuple(x.shape), begin, end))


def _scatter(node: Node, cx: Emit, tables: list[np.ndarray], in_shape: tuple[int, ...]) -> list[str]:
    dq, de = node.inputs
    dx, dx_e = node.outputs
    bits = bits_of(node, dx)
    if tuple(t.size for t in tables) != tuple(dq.shape) or tuple(dx.shape) != in_shape:
        raise refuse(node, f"scatters {tuple(dq.shape)} into {tuple(dx.shape)} through tables of another shape")
    n = math.prod(in_shape)
    lines, rand = work_words(node, cx, n, n)
    lines += [f"const {ctype(dq)} *d = {cx.ptr(dq)};", f"for (size_t i = 0; i < {n}u; i++) work[i] = 0;",
              *_walk(tables, in_shape, "if (inside) work[src] += (int64_t)d[o];")]
    return lines + call_rq(f"rctc_iq_requantize({n}u, work, {cx.scalar(de)}, {bits}, {rand}, {cx.ptr(dx)}",
                           cx.scalar(dx_e))


@emitter("IntPadGrad")
def int_pad_grad(node: Node, cx: Emit) -> list[str]:
    dq = node.inputs[0]
    begin, end = [int(v) for v in node.attrs["begin"]], [int(v) for v in node.attrs["end"]]
    in_shape = tuple(int(s) - b - e for s, b, e in zip(dq.shape, begin, end))
    return _scatter(node, cx, _pad_tables(str(node.attrs.get("mode", "constant")), in_shape, begin, end), in_shape)


@emitter("IntResizeGrad")
def int_resize_grad(node: Node, cx: Emit) -> list[str]:
    dq = node.inputs[0]
    in_shape = tuple(int(v) for v in node.attrs["input_shape"])
    scale = [float(v) for v in node.attrs["scales"]]
    return _scatter(node, cx, _resize_tables(node, node.attrs, in_shape, tuple(dq.shape), scale), in_shape)

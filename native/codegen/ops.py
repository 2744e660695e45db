"""C emitters of the rct ops the generator maps to the kernel library (one function per op type).

Needs: an :class:`Emit` context from the generator (C expressions for every value's storage).
Leaves: ``EMITTERS``, op type -> ``fn(node, cx) -> list[str]`` of C statements computing the
node's outputs with the same bits as the numpy reference kernel of that op
(runtime/kernels/int_products.py, int_elementwise.py, shape_ops.py). An op type absent here has
no C mapping yet and the generator refuses the graph naming it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

from rctc.errors import UnsupportedOpError
from rctc.ir import Node, Value

#: GEMM entry points of rctc_kernels.h by (A, B, C) dtype
_GEMMS = {("s8", "s8", "s32"), ("s8", "s8", "s64"), ("s16", "s8", "s32"), ("s16", "s8", "s64"),
          ("s8", "s16", "s32"), ("s8", "s16", "s64")}


class Emit(Protocol):
    """What an emitter may ask the generator for."""

    def ptr(self, v: Value) -> str: ...          # typed pointer to v's first element
    def scalar(self, v: Value) -> str: ...       # lvalue of a 0-d value
    def scratch(self, nbytes: int) -> str: ...   # unsigned char * to this node's scratch
    def node_id(self, node: Node) -> int: ...


def _refuse(node: Node, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(f"native codegen: node {node.name!r} ({node.op_type}) {why}; "
                              "use the numpy backend for this model")


def _sname(v: Value) -> str:
    dt = np.dtype(v.dtype)
    return f"s{dt.itemsize * 8}" if dt.kind == "i" else dt.name


def _width(v: Value) -> int:
    dt = np.dtype(v.dtype)
    if dt.kind != "i":
        raise UnsupportedOpError(f"native codegen: value {v.name!r} is {dt}, not an integer")
    return dt.itemsize


def _n(v: Value) -> int:
    return math.prod(v.shape)


def _ctype(v: Value) -> str:
    return f"int{np.dtype(v.dtype).itemsize * 8}_t"


def _gemm(node: Node, cx: Emit, trans_a: int, trans_b: int) -> list[str]:
    qa, ea, qb, eb = node.inputs[:4]
    acc, acc_e = node.outputs
    if len(qa.shape) != 2 or len(qb.shape) != 2:
        raise _refuse(node, f"multiplies {len(qa.shape)}-D by {len(qb.shape)}-D operands (only 2-D is mapped)")
    key = (_sname(qa), _sname(qb), _sname(acc))
    if key not in _GEMMS:
        raise _refuse(node, f"needs a {'x'.join(key)} GEMM, which the kernel library lacks")
    ra, ca = qa.shape
    rb, cb = qb.shape
    m, k = (ca, ra) if trans_a else (ra, ca)
    n = rb if trans_b else cb
    a_rs, a_cs = (1, ca) if trans_a else (ca, 1)
    b_rs, b_cs = (1, cb) if trans_b else (cb, 1)
    return [f"rctc_gemm_{''.join(key)}({m}, {n}, {k}, {cx.ptr(qa)}, {a_rs}, {a_cs}, {cx.ptr(qb)}, {b_rs}, "
            f"{b_cs}, {cx.ptr(acc)}, {n}, 1, 0, 1);",
            f"{cx.scalar(acc_e)} = {cx.scalar(ea)} + {cx.scalar(eb)};"]


def int_gemm(node: Node, cx: Emit) -> list[str]:
    return _gemm(node, cx, int(node.attrs.get("transA", 0)), int(node.attrs.get("transB", 0)))


def int_matmul(node: Node, cx: Emit) -> list[str]:
    return _gemm(node, cx, 0, 0)


def requantize(node: Node, cx: Emit) -> list[str]:
    """intref.core.requantize: the accumulator widened to int64 in scratch (the kernel adds the
    bias in place), stochastic words from the node's Philox stream (draw 0, start 0)."""
    acc, acc_e = node.inputs[:2]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    bias_e = node.inputs[3] if len(node.inputs) > 3 else None
    out, out_e = node.outputs
    n, bits = _n(acc), int(node.attrs["bits"])
    _width(acc)
    wide = f"((int64_t *){cx.scratch(8 * n + 4 * n)})"
    stochastic = node.attrs.get("rounding", "stochastic") != "nearest"
    lines = [f"int64_t *w = {wide};", f"const {_ctype(acc)} *a = {cx.ptr(acc)};",
             f"for (size_t i = 0; i < {n}u; i++) w[i] = (int64_t)a[i];"]
    rand = "NULL"
    if stochastic:
        lines.append(f"uint32_t *r = (uint32_t *)(w + {n});")
        lines.append(f"rctc_random_words(seed, step, {cx.node_id(node)}u, 0u, {n}u, r);")
        rand = "r"
    lines.append("int e_out = 0;")
    if bias is not None:
        if len(bias.shape) != 1 or bias_e is None:
            raise _refuse(node, f"has a {len(bias.shape)}-D bias (only a 1-D bias with its exponent is mapped)")
        nd = len(acc.shape)
        axis = 1 if int(node.attrs.get("bias_axis", -1)) == 1 and nd >= 2 else nd - 1
        if acc.shape[axis] != bias.shape[0]:
            raise _refuse(node, f"broadcasts a bias of {bias.shape[0]} along an axis of {acc.shape[axis]}")
        outer, inner = math.prod(acc.shape[:axis]), math.prod(acc.shape[axis + 1:])
        lines.append(f"int rc = rctc_iq_requantize_bias({outer}u, {bias.shape[0]}u, {inner}u, w, "
                     f"{cx.scalar(acc_e)}, {cx.ptr(bias)}, {_width(bias)}, {cx.scalar(bias_e)}, {bits}, {rand}, "
                     f"{cx.ptr(out)}, &e_out);")
    else:
        lines.append(f"int rc = rctc_iq_requantize({n}u, w, {cx.scalar(acc_e)}, {bits}, {rand}, {cx.ptr(out)}, "
                     "&e_out);")
    lines += ["if (rc != 0) return rc;", f"{cx.scalar(out_e)} = e_out;"]
    return lines


def int_relu(node: Node, cx: Emit) -> list[str]:
    q, e = node.inputs
    out, out_e = node.outputs
    if np.dtype(out.dtype) != np.dtype(q.dtype):
        raise _refuse(node, "changes the dtype")
    return [f"rctc_iq_relu({_n(q)}u, {cx.ptr(q)}, {_width(q)}, {cx.ptr(out)});",
            f"{cx.scalar(out_e)} = {cx.scalar(e)};"]


def int_relu_grad(node: Node, cx: Emit) -> list[str]:
    dq, de, q, _ = node.inputs
    dx, dx_e = node.outputs
    if np.dtype(dx.dtype) != np.dtype(dq.dtype):
        raise _refuse(node, "changes the dtype")
    return [f"rctc_iq_relu_backward({_n(q)}u, {cx.ptr(q)}, {_width(q)}, {cx.ptr(dq)}, {_width(dq)}, "
            f"{cx.ptr(dx)});",
            f"{cx.scalar(dx_e)} = {cx.scalar(de)};"]


def _strides(shape: tuple[int, ...]) -> list[int]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def _loops(shape: tuple[int, ...], ostrides: list[int], body: Callable[[str, str], str]) -> list[str]:
    """Nested loops over ``shape`` (C order); ``body(in_index, out_index)`` is the statement."""
    istr = _strides(shape)
    lines = [f"for (size_t i{d} = 0; i{d} < {s}u; i{d}++)" for d, s in enumerate(shape)]
    iidx = " + ".join(f"i{d} * {s}u" for d, s in enumerate(istr)) or "0"
    oidx = " + ".join(f"i{d} * {s}u" for d, s in enumerate(ostrides) if s) or "0"
    return [*lines, "    " + body(iidx, oidx)]


def transpose(node: Node, cx: Emit) -> list[str]:
    (x,), (y,) = node.inputs, node.outputs
    perm = [int(p) for p in node.attrs.get("perm") or reversed(range(len(x.shape)))]
    ostr = _strides(tuple(y.shape))
    per_in = [ostr[perm.index(k)] for k in range(len(x.shape))]
    src, dst = cx.ptr(x), cx.ptr(y)
    return [f"const {_ctype(x)} *src = {src};", f"{_ctype(y)} *dst = {dst};",
            *_loops(tuple(x.shape), per_in, lambda i, o: f"dst[{o}] = src[{i}];")]


def int_reduce_sum(node: Node, cx: Emit) -> list[str]:
    """Exact int64 sum over ``axes``; the kept axes keep their C order (the reshape to ``shape``)."""
    dq, de = node.inputs
    acc, acc_e = node.outputs
    if np.dtype(acc.dtype) != np.int64:
        raise _refuse(node, "sums into a non-int64 accumulator")
    axes = {int(a) % len(dq.shape) for a in node.attrs["axes"]}
    kept = tuple(s for d, s in enumerate(dq.shape) if d not in axes)
    kstr = iter(_strides(kept))
    ostr = [0 if d in axes else next(kstr) for d in range(len(dq.shape))]
    return [f"const {_ctype(dq)} *src = {cx.ptr(dq)};", f"int64_t *dst = {cx.ptr(acc)};",
            f"for (size_t j = 0; j < {_n(acc)}u; j++) dst[j] = 0;",
            *_loops(tuple(dq.shape), ostr, lambda i, o: f"dst[{o}] += (int64_t)src[{i}];"),
            f"{cx.scalar(acc_e)} = {cx.scalar(de)};"]


def fused_int_update(node: Node, cx: Emit) -> list[str]:
    """FusedIntUpdate (SGD, no weight decay, alpha 1): the exact int64 weight-gradient GEMM into
    scratch, then rctc_sgd_update_fused with scale ``-lr * 2^(ea + eb - e)``; the step receives
    ``lr`` as the exact pair ``lr_m * 2^lr_k`` (the float32 learning rate's mantissa), so no
    float enters the C. Words: draw 0 of the node's stream, element i for parameter element i."""
    q, e, bits, qa, ea, qb, eb, _lr = node.inputs
    (new,) = node.outputs
    if node.attrs.get("product") not in ("IntGemm", "IntMatMul") or node.attrs.get("transpose"):
        raise _refuse(node, f"fuses a {node.attrs.get('product')} product (only an untransposed GEMM is mapped)")
    if float(node.attrs.get("weight_decay", 0.0)) != 0.0 or float(node.attrs.get("alpha", 1.0)) != 1.0:
        raise _refuse(node, "has weight decay or alpha != 1 (not mapped yet)")
    ta, tb = int(node.attrs.get("product_transA", 0)), int(node.attrs.get("product_transB", 0))
    if len(qa.shape) != 2 or len(qb.shape) != 2:
        raise _refuse(node, "multiplies operands that are not 2-D")
    m, k = (qa.shape[1], qa.shape[0]) if ta else qa.shape
    n = qb.shape[0] if tb else qb.shape[1]
    if (m * n) != _n(q):
        raise _refuse(node, f"makes a {m}x{n} product for a parameter of shape {q.shape}")
    key = (_sname(qa), _sname(qb), "s64")
    if key not in _GEMMS:
        raise _refuse(node, f"needs a {'x'.join(key)} GEMM, which the kernel library lacks")
    a_rs, a_cs = (1, qa.shape[1]) if ta else (qa.shape[1], 1)
    b_rs, b_cs = (1, qb.shape[1]) if tb else (qb.shape[1], 1)
    nn = _n(q)
    stochastic = node.attrs.get("rounding", "stochastic") != "nearest"
    lines = [f"int64_t *acc = (int64_t *){cx.scratch(12 * nn)};",
             f"rctc_gemm_{''.join(key)}({m}, {n}, {k}, {cx.ptr(qa)}, {a_rs}, {a_cs}, {cx.ptr(qb)}, {b_rs}, {b_cs}, "
             f"acc, {n}, 1, 0, 1);"]
    rand = "NULL"
    if stochastic:
        lines += [f"uint32_t *r = (uint32_t *)(acc + {nn});",
                  f"rctc_random_words(seed, step, {cx.node_id(node)}u, 0u, {nn}u, r);"]
        rand = "r"
    lines += [f"int rc = rctc_sgd_update_fused({nn}u, {cx.ptr(q)}, {_width(q)}, acc, -lr_m, "
              f"lr_k + {cx.scalar(ea)} + {cx.scalar(eb)} - {cx.scalar(e)}, {cx.scalar(bits)}, {rand}, "
              f"{cx.ptr(new)});",
              "if (rc != 0) return rc;"]
    return lines


#: inputs an op reads as a step argument instead of a tensor (the learning rate, as lr_m * 2^lr_k)
STEP_ARGS: dict[str, tuple[int, ...]] = {"FusedIntUpdate": (7,)}

EMITTERS: dict[str, Callable[[Node, Emit], list[str]]] = {
    "IntGemm": int_gemm,
    "IntMatMul": int_matmul,
    "Requantize": requantize,
    "IntRelu": int_relu,
    "IntReluGrad": int_relu_grad,
    "Transpose": transpose,
    "IntReduceSum": int_reduce_sum,
    "FusedIntUpdate": fused_int_update,
}

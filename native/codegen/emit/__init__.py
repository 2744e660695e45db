"""The C emitters of the native code generator, registered per op type (one module per family).

Needs: an :class:`Emit` context from the generator (C expressions for every value's storage).
Leaves: ``EMITTERS``, op type -> ``fn(node, cx) -> list[str]`` of C statements computing the
node's outputs with the same bits as the numpy reference kernel of that op; ``STEP_ARGS``, op
type -> the input positions it reads as step arguments (the learning rate) or not at all (a
Reshape's shape) instead of tensors; ``ALIASES``, the view ops whose output shares its input's bytes;
``WEIGHT_GRAD_PRODUCTS``, the ``product`` attr of a fused update -> ``fn(node, cx, acc) -> list[str]``
writing that product's exact int64 weight gradient, in the parameter's layout (the update's
``transpose`` applied), to the int64 pointer expression ``acc``; its own workspace goes in the
node's scratch from :func:`work_offset` on.
An op type absent here has no C mapping yet and the generator refuses the graph naming it.

Add an op: write ``@emitter("OpType")`` on a function in the family's module (products,
requant, activations, elementwise, norm, softmax, gather, shape, reduce, loss, update, ...),
import the module in :func:`_load`, and set ``c_kernel`` on the op's definition in ``rctc/ops``
(tests/native/test_codegen_registry.py checks the two agree). Shared pieces: ``work_words``
(int64 scratch and the node's random words), ``bits_of``, ``call_rq``, ``c_array``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from rctc.analysis.arena import align
from rctc.errors import UnsupportedOpError
from rctc.ir import Node, Value
from rctc.runtime.intref.core import storage_dtype


class Emit(Protocol):
    """What an emitter may ask the generator for."""

    training: bool  # the KernelContext flag of the step (eval / predict programs: False)
    threads: str  # C expression: how many threads a kernel may use (results never depend on it)
    budget: int  # scratch bytes a banded / chunked node may fill (the block's size set by the others)
    band: int  # the smallest band a banded conv may use (conv.TILE_BYTES unless the generator is told)
    streamed: frozenset[str]  # accumulators with no slot (rctc.analysis.arena.streamable)

    def ptr(self, v: Value) -> str: ...          # typed pointer to v's first element
    def scalar(self, v: Value) -> str: ...       # lvalue of a 0-d value
    def scratch(self, nbytes: int, offset: int = 0) -> str: ...  # unsigned char * to scratch byte offset
    def node_id(self, node: Node) -> int: ...
    def stats(self, node: Node) -> str: ...      # uint64_t * to the node's rctc_stats entry (A, S, g)


#: GEMM entry points of rctc_kernels.h by (A, B, C) dtype
GEMMS = {("s8", "s8", "s32"), ("s8", "s8", "s64"), ("s16", "s8", "s32"), ("s16", "s8", "s64"),
         ("s8", "s16", "s32"), ("s8", "s16", "s64")}

EmitFn = Callable[[Node, Emit], list[str]]
EMITTERS: dict[str, EmitFn] = {}
STEP_ARGS: dict[str, tuple[int, ...]] = {}
ALIASES: set[str] = set()
ProductFn = Callable[[Node, Emit, str], list[str]]
WEIGHT_GRAD_PRODUCTS: dict[str, ProductFn] = {}


def emitter(op_type: str, step_args: tuple[int, ...] = (), alias: bool = False) -> Callable[[EmitFn], EmitFn]:
    """Register ``fn`` as the C emitter of ``op_type`` (twice is an error); ``alias``: the op's
    output is a view sharing its first input's bytes (the generator plans it so)."""
    def deco(fn: EmitFn) -> EmitFn:
        if op_type in EMITTERS:
            raise ValueError(f"C emitter for {op_type} registered twice")
        EMITTERS[op_type] = fn
        if step_args:
            STEP_ARGS[op_type] = tuple(step_args)
        if alias:
            ALIASES.add(op_type)
        return fn
    return deco


def weight_grad_product(*op_types: str) -> Callable[[ProductFn], ProductFn]:
    """Register ``fn`` as the weight-gradient product of fused updates with ``product`` in ``op_types``."""
    def deco(fn: ProductFn) -> ProductFn:
        for t in op_types:
            if t in WEIGHT_GRAD_PRODUCTS:
                raise ValueError(f"weight-gradient product {t} registered twice")
            WEIGHT_GRAD_PRODUCTS[t] = fn
        return fn
    return deco


def work_offset(node: Node) -> int:
    """First scratch byte a fused update's product may use: past the int64 accumulator of the
    parameter (its first input), which the update keeps at scratch offset 0."""
    return align(8 * numel(node.inputs[0]))


def refuse(node: Node, why: str) -> UnsupportedOpError:
    return UnsupportedOpError(f"native codegen: node {node.name!r} ({node.op_type}) {why}; "
                              "use the numpy backend for this model")


def sname(v: Value) -> str:
    """``s8`` / ``s16`` / ``s32`` / ``s64`` for a signed integer value (the kernel-name suffix)."""
    dt = np.dtype(v.dtype)
    return f"s{dt.itemsize * 8}" if dt.kind == "i" else dt.name


def width(v: Value) -> int:
    """Bytes per element of an integer value (refused for any other dtype)."""
    dt = np.dtype(v.dtype)
    if dt.kind not in "iu":
        raise UnsupportedOpError(f"native codegen: value {v.name!r} is {dt}, not an integer")
    return dt.itemsize


def numel(v: Value) -> int:
    return math.prod(v.shape)


def ctype(v: Value) -> str:
    dt = np.dtype(v.dtype)
    return f"{'u' if dt.kind == 'u' else ''}int{dt.itemsize * 8}_t"


def strides(shape: tuple[int, ...]) -> list[int]:
    """C-order element strides of ``shape``."""
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return out[::-1]


def loops(shape: tuple[int, ...], ostrides: list[int], body: Callable[[str, str], str]) -> list[str]:
    """Nested loops over ``shape`` (C order); ``body(in_index, out_index)`` is the statement."""
    istr = strides(shape)
    lines = [f"for (size_t i{d} = 0; i{d} < {s}u; i{d}++)" for d, s in enumerate(shape)]
    iidx = " + ".join(f"i{d} * {s}u" for d, s in enumerate(istr)) or "0"
    oidx = " + ".join(f"i{d} * {s}u" for d, s in enumerate(ostrides) if s) or "0"
    return [*lines, "    " + body(iidx, oidx)]


def stochastic(node: Node) -> bool:
    """Whether the node rounds stochastically (the numpy kernels' ``rand_words`` rule)."""
    return node.attrs.get("rounding", "stochastic") != "nearest"


def work_words(node: Node, cx: Emit, work: int, words: int) -> tuple[list[str], str]:
    """Scratch as ``int64_t *work`` (``work`` elements) followed, when ``words`` > 0 and the
    node rounds stochastically, by ``uint32_t *r``: words 0 .. ``words``-1 of the node's Philox
    stream (draw 0, word i for element i in C order, as ``KernelContext.words``). Returns the C
    lines and the ``rand`` argument (``r`` or ``NULL``)."""
    rand = words > 0 and stochastic(node)
    base = cx.scratch(8 * max(1, work) + (4 * words if rand else 0))
    lines = [f"int64_t *work = (int64_t *){base};"]
    if not rand:
        return lines, "NULL"
    return [*lines, f"uint32_t *r = (uint32_t *)(work + {max(1, work)});",
            f"rctc_random_words_mt({cx.threads}, seed, step, {cx.node_id(node)}u, 0u, {words}u, r);"], "r"


def bits_of(node: Node, out: Value) -> int:
    """The node's ``bits``; refused when out of range or when the rounded output ``out`` is not
    in the storage of ``bits`` (what the kernels write)."""
    bits = int(node.attrs["bits"])
    if not 2 <= bits <= 32:
        raise refuse(node, f"rounds to {bits} bits (2..32 are mapped)")
    want = storage_dtype(bits)
    if np.dtype(out.dtype) != want:
        raise refuse(node, f"writes {out.name!r} as {np.dtype(out.dtype)}, not the {want} of {bits} bits")
    return bits


def call_rq(call: str, out_e: str) -> list[str]:
    """A kernel call ending ``(..., out, e_out)`` (``call`` without ``&e_out)``): its status
    returned on failure, the exponent stored into ``out_e``."""
    return ["int e_out = 0;", f"int rc = {call}, &e_out);", "if (rc != 0) return rc;", f"{out_e} = e_out;"]


def c_array(ctype_: str, name: str, values: Sequence[int]) -> str:
    """A ``static const`` C array of ``values`` (one element at least)."""
    vals = ", ".join(str(int(v)) for v in values) or "0"
    return f"static const {ctype_} {name}[{max(1, len(values))}] = {{{vals}}};"


def i64(v: int) -> str:
    """An int64 literal."""
    return f"INT64_C({int(v)})"


def _load() -> None:
    """Import every family module (each registers its emitters)."""
    from rctc.native.codegen.emit import (  # noqa: F401
        activations,
        conv,
        elementwise,
        gather,
        instance_norm,
        int_pointwise,
        loss,
        norm,
        pool,
        products,
        reduce,
        requant,
        resample_int,
        shape,
        softmax,
        update,
    )


_load()

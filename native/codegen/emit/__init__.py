"""The C emitters of the native code generator, registered per op type (one module per family).

Needs: an :class:`Emit` context from the generator (C expressions for every value's storage).
Leaves: ``EMITTERS``, op type -> ``fn(node, cx) -> list[str]`` of C statements computing the
node's outputs with the same bits as the numpy reference kernel of that op; ``STEP_ARGS``, op
type -> the input positions it reads as step arguments (the learning rate) instead of tensors.
An op type absent here has no C mapping yet and the generator refuses the graph naming it.

Add an op: write ``@emitter("OpType")`` on a function in the family's module (products,
requant, activations, shape, reduce, update, ...), import the module in :func:`_load`, and set
``c_kernel`` on the op's definition in ``rctc/ops`` (tests/native/test_codegen_registry.py
checks the two agree).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np

from rctc.errors import UnsupportedOpError
from rctc.ir import Node, Value


class Emit(Protocol):
    """What an emitter may ask the generator for."""

    training: bool  # the KernelContext flag of the step (eval / predict programs: False)
    threads: str  # C expression: how many threads a kernel may use (results never depend on it)

    def ptr(self, v: Value) -> str: ...          # typed pointer to v's first element
    def scalar(self, v: Value) -> str: ...       # lvalue of a 0-d value
    def scratch(self, nbytes: int) -> str: ...   # unsigned char * to this node's scratch
    def node_id(self, node: Node) -> int: ...


#: GEMM entry points of rctc_kernels.h by (A, B, C) dtype
GEMMS = {("s8", "s8", "s32"), ("s8", "s8", "s64"), ("s16", "s8", "s32"), ("s16", "s8", "s64"),
         ("s8", "s16", "s32"), ("s8", "s16", "s64")}

EmitFn = Callable[[Node, Emit], list[str]]
EMITTERS: dict[str, EmitFn] = {}
STEP_ARGS: dict[str, tuple[int, ...]] = {}


def emitter(op_type: str, step_args: tuple[int, ...] = ()) -> Callable[[EmitFn], EmitFn]:
    """Register ``fn`` as the C emitter of ``op_type`` (twice is an error)."""
    def deco(fn: EmitFn) -> EmitFn:
        if op_type in EMITTERS:
            raise ValueError(f"C emitter for {op_type} registered twice")
        EMITTERS[op_type] = fn
        if step_args:
            STEP_ARGS[op_type] = tuple(step_args)
        return fn
    return deco


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


def _load() -> None:
    """Import every family module (each registers its emitters)."""
    from rctc.native.codegen.emit import activations, products, reduce, requant, shape, update  # noqa: F401


_load()

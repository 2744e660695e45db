"""C emitters of the layout ops (pure data movement, any integer dtype): Transpose copies; Flatten
and Reshape are views (their output shares the input's bytes; a Reshape's shape input is not read)."""

from __future__ import annotations

from rctc.ir import Node
from rctc.native.codegen.emit import Emit, ctype, emitter, loops, refuse, strides


@emitter("Transpose")
def transpose(node: Node, cx: Emit) -> list[str]:
    (x,), (y,) = node.inputs, node.outputs
    perm = [int(p) for p in node.attrs.get("perm") or reversed(range(len(x.shape)))]
    ostr = strides(tuple(y.shape))
    per_in = [ostr[perm.index(k)] for k in range(len(x.shape))]
    src, dst = cx.ptr(x), cx.ptr(y)
    return [f"const {ctype(x)} *src = {src};", f"{ctype(y)} *dst = {dst};",
            *loops(tuple(x.shape), per_in, lambda i, o: f"dst[{o}] = src[{i}];")]


def _view(node: Node, cx: Emit) -> list[str]:
    """A view: the output shares the input's bytes (the generator's alias plan), no code."""
    (x, y) = node.inputs[0], node.outputs[0]
    if cx.ptr(x) != cx.ptr(y):
        raise refuse(node, "was not planned as a view of its input")
    return [f"/* {y.name} views {x.name}: no copy */"]


emitter("Flatten", alias=True)(_view)
emitter("Reshape", step_args=(1,), alias=True)(_view)

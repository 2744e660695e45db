"""C emitters of the layout ops (pure data movement, any integer dtype)."""

from __future__ import annotations

from rctc.ir import Node
from rctc.native.codegen.emit import Emit, ctype, emitter, loops, strides


@emitter("Transpose")
def transpose(node: Node, cx: Emit) -> list[str]:
    (x,), (y,) = node.inputs, node.outputs
    perm = [int(p) for p in node.attrs.get("perm") or reversed(range(len(x.shape)))]
    ostr = strides(tuple(y.shape))
    per_in = [ostr[perm.index(k)] for k in range(len(x.shape))]
    src, dst = cx.ptr(x), cx.ptr(y)
    return [f"const {ctype(x)} *src = {src};", f"{ctype(y)} *dst = {dst};",
            *loops(tuple(x.shape), per_in, lambda i, o: f"dst[{o}] = src[{i}];")]

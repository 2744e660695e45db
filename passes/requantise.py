"""requantise (rct mode): requantise nodes after the integer products, integer element-wise ops
between them, and the float islands that remain, recorded.

Needs: insert_quant (every product is an ``Int*`` op whose accumulator a ``Dequantize`` reads;
its operands come from ``QuantAct`` / ``QuantGrad`` or are parameters), and runs before
fuse_updates.
Leaves, with ``--elementwise integer``:

* after every integer accumulator another op reads, a ``Requantize`` to the consumer's width
  (``act_bits`` for activations, nearest; ``grad_bits`` for errors, ``--rounding``), exponent
  from the batch max, a Conv / Gemm bias added at the accumulator's exponent first;
* every op with an integer lowering (``rctc.passes.int_lowerings.LOWERINGS``: Relu, MaxPool, Add, GlobalAveragePool, the
  layout ops, the softmax cross-entropy loss, their backward rules, and the bias-gradient
  sums) replaced by its integer twin on ``(q, e)`` pairs, so the values between them, the
  activations the backward pass saves included, are integers at their stored width;
* a ``QuantAct`` / ``QuantGrad`` of a value that now has an integer form removed (the product
  reads that form; its running-max state goes with it);
* an op without an integer lowering stays a **float island**: ``Dequantize`` of its integer
  inputs, the float32 op, ``QuantAct`` / ``QuantGrad`` where an integer op reads its result;
* the ``sample_mask`` input uint8 (0 / 1) when only integer ops (the integer loss and its
  gradient) read it; float32 when a float op does.

With ``--elementwise float`` (version 1's lowering) the graph is left as it is. In both cases
``graph.meta["float_islands"]`` lists ``{"node", "op_type"}`` of every float op between the
products of a training step (an empty list when there is none); the energy model counts them
at FP32 because their operands are float32.
"""

from __future__ import annotations

import numpy as np

from rctc.analysis.islands import float_islands
from rctc.fixedpoint import choose_exponent, int_dtype_for_bits, qmax_for_bits
from rctc.ir import GRAD, Graph, Node, Value
from rctc.ops import INT_PRODUCTS, INTEGER, get
from rctc.options import CompileOptions
from rctc.passes import int_lowerings_cell  # noqa: F401  (registers its rules in LOWERINGS)
from rctc.passes.int_lowerings import LOWERINGS, IntPair


class _Lowerer:
    def __init__(self, g: Graph, options: CompileOptions) -> None:
        self.g = g
        self.o = options
        self.irep: dict[str, IntPair] = {}
        self.lowered: set[str] = set()
        #: buffers a lowering replaced (BatchNorm's float running statistics): dropped when unused
        self.orphans: set[str] = set()

    # ----- the integer form of a float value ---------------------------------------------
    def bits(self, n: Node) -> int:
        return self.o.grad_bits if n.phase == "backward" else self.o.act_bits

    def rounding(self, n: Node) -> str:
        return self.o.rounding if n.phase == "backward" else "nearest"

    def has_int(self, v: Value) -> bool:
        """Whether ``v`` has an integer form without a new quantise node."""
        prod = v.producer
        if v.name in self.irep or self._existing_quantise(v) is not None:
            return True
        if prod is None:
            return v.kind == "const" and v.data is not None
        return prod.name in self.lowered or (prod.op_type == "Dequantize" and (
            self._plain_dequantize(prod) or (prod.inputs[0].producer is not None
                                             and prod.inputs[0].producer.op_type in INT_PRODUCTS)))

    @staticmethod
    def _plain_dequantize(dq: Node) -> bool:
        """``q * 2^e`` of integers that are already stored (a parameter, or a gather from one)."""
        return (len(dq.inputs) == 2 and float(dq.attrs.get("alpha", 1.0)) == 1.0
                and np.issubdtype(np.dtype(dq.inputs[0].dtype), np.signedinteger))

    def _const(self, v: Value) -> IntPair:
        """A float constant quantised once, at compile time, to act_bits (nearest)."""
        data = np.asarray(v.data, np.float64)
        bits = self.o.act_bits
        e = choose_exponent(float(np.abs(data).max()) if data.size else 0.0, bits)
        q = np.clip(np.rint(np.ldexp(data, -e)), -qmax_for_bits(bits), qmax_for_bits(bits))
        return (self.g.add_const(f"{v.name}.q", q.astype(int_dtype_for_bits(bits))),
                self.g.add_const(f"{v.name}.e", np.array(e, np.int32)))

    def int_of(self, v: Value, user: Node) -> IntPair:
        """``(q, e)`` of float value ``v``: the lowered producer's output, a Requantize of a
        product's accumulator, a parameter as stored, an existing quantise node, or a new one."""
        if v.name in self.irep:
            return self.irep[v.name]
        prod = v.producer
        res: IntPair | None = None
        if prod is not None and prod.op_type == "Dequantize":
            src = prod.inputs[0].producer if prod.inputs[0] is not None else None
            if src is not None and src.op_type in INT_PRODUCTS:
                res = self._requantize(prod, v)
            elif self._plain_dequantize(prod):  # a parameter, or integers gathered from one
                res = (prod.inputs[0], prod.inputs[1])
        elif prod is None and v.kind == "const" and v.data is not None:
            res = self._const(v)
        if res is None:
            res = self._existing_quantise(v) or self._quantise(v, user)
        self.irep[v.name] = res
        return res

    def _requantize(self, dq: Node, v: Value) -> IntPair | None:
        if float(dq.attrs.get("alpha", 1.0)) != 1.0 or float(dq.attrs.get("beta", 1.0)) != 1.0:
            return None
        ins: list[Value | None] = [dq.inputs[0], dq.inputs[1]]
        bias = dq.input(2)
        if bias is not None:
            bq, be = self.int_of(bias, dq)
            ins += [bq, be]
        bits = self.bits(dq)
        node = self.g.add_node(
            "Requantize", ins, [(f"{v.name}.q", v.shape, int_dtype_for_bits(bits)), (f"{v.name}.e", (), np.int32)],
            {"bits": bits, "rounding": self.rounding(dq), "bias_axis": int(dq.attrs.get("bias_axis", -1))},
            name=f"{dq.name}.requantize", domain="rctc", after=dq)
        node.meta.update(dq.meta)
        return node.outputs[0], node.outputs[1]

    def _existing_quantise(self, v: Value) -> IntPair | None:
        for u, _ in v.uses:
            if u.op_type in ("QuantAct", "QuantGrad") and u.inputs[0] is v:
                return u.outputs[0], u.outputs[1]
        return None

    def _quantise(self, v: Value, user: Node) -> IntPair:
        """A quantise node for a float value an integer op reads (an input, or a float island's output)."""
        g, o = self.g, self.o
        kw = {"after": v.producer} if v.producer is not None else {"before": g.nodes[0]}
        if v.has_role(GRAD) or user.phase == "backward" and v.producer is not None and v.producer.phase == "backward":
            node = g.add_node("QuantGrad", [v], [(f"{v.name}.q", v.shape, int_dtype_for_bits(o.grad_bits)),
                                                 (f"{v.name}.e", (), np.int32)],
                              {"bits": o.grad_bits, "rounding": o.rounding}, name=f"{v.name}/quant", domain="rctc",
                              **kw)
            node.meta.update({"phase": "backward", "fwd": user.meta.get("fwd", user.name)})
        else:
            amax = g.add_value(f"{v.name}.amax", (), np.float32, "buffer", np.zeros((), np.float32))
            node = g.add_node("QuantAct", [v, amax], [(f"{v.name}.q", v.shape, int_dtype_for_bits(o.act_bits)),
                                                      (f"{v.name}.e", (), np.int32),
                                                      (f"{amax.name}.new", (), np.float32)],
                              {"bits": o.act_bits, "momentum": 0.9}, name=f"{v.name}/quant", domain="rctc", **kw)
            node.meta.update({"phase": "forward"})
            g.state_updates[amax.name] = node.outputs[2].name
        return node.outputs[0], node.outputs[1]

    # ----- building integer nodes ----------------------------------------------------------
    def emit(self, n: Node, op_type: str, inputs: list[Value | None], outs: list[tuple[str, np.dtype]],
             attrs: dict | None = None) -> Node:
        """An integer node standing for ``n``; ``outs`` are (suffix, dtype) with output 0's shape
        for arrays and () for exponents."""
        if op_type not in get(n.op_type).rct_lowering:
            raise RuntimeError(f"{n.op_type} lowered to {op_type}, which its definition's rct_lowering does not list")
        shaped = []
        for i, (suffix, dt) in enumerate(outs):
            ref = n.outputs[min(i // 2, len(n.outputs) - 1)]
            shape = () if suffix.endswith(".e") else ref.shape
            shaped.append((f"{ref.name}{suffix}", shape, dt))
        kept = {k: v for k, v in (attrs or {}).items() if v is not None}  # .rct attributes cannot hold None
        node = self.g.add_node(op_type, inputs, shaped, kept, name=f"{n.name}.int", domain="rctc", before=n)
        node.meta.update(n.meta)
        node.meta.setdefault("fwd", n.name)  # costed in the layer of the op it replaces
        return node

    # ----- the pass -----------------------------------------------------------------------
    def run(self) -> None:
        g = self.g
        for n in list(g.nodes):
            fn = LOWERINGS.get(n.op_type)
            if fn is None or n.phase == "update":
                continue
            outs = fn(self, n)
            if outs is None:
                continue
            for o, pair in zip(n.outputs, outs):
                self.irep[o.name] = pair
            self.lowered.add(n.name)
        self._drop_redundant_quantise()
        self._drain_lowered()
        g.remove_unused()
        for name in self.orphans:
            v = g.values.get(name)
            if v is not None and not v.uses:
                del g.values[name]
        self._integer_mask()
        g.toposort()

    def _integer_mask(self) -> None:
        """``sample_mask`` as uint8 0 / 1 when only integer ops read it."""
        mask = self.g.values.get("sample_mask")
        if mask is not None and mask.kind == "input" and mask.uses and \
                all(get(u.op_type).has(INTEGER) for u, _ in mask.uses):
            mask.dtype = np.dtype(np.uint8)

    def _drop_redundant_quantise(self) -> None:
        """A product's QuantAct / QuantGrad of a value that has an integer form reads that form."""
        g = self.g
        for n in [n for n in g.nodes if n.op_type in ("QuantAct", "QuantGrad")]:
            v = n.inputs[0]
            prod = v.producer
            if v.name not in self.irep and not (prod is not None and (prod.name in self.lowered or (
                    prod.op_type == "Dequantize" and prod.inputs[0].producer is not None
                    and prod.inputs[0].producer.op_type in INT_PRODUCTS))):
                continue
            if v.name not in self.irep:
                pair = self._requantize(prod, v) if prod.op_type == "Dequantize" else None
                if pair is None:
                    continue
                self.irep[v.name] = pair
            q, e = self.irep[v.name]
            if q is n.outputs[0] or q.dtype != n.outputs[0].dtype:
                continue
            n.outputs[0].replace_all_uses_with(q)
            n.outputs[1].replace_all_uses_with(e)
            if n.op_type == "QuantAct":
                amax = n.inputs[1]
                g.state_updates.pop(amax.name, None)
                g.remove_node(n, force=True)
                if not amax.uses:
                    g.values.pop(amax.name, None)

    def _drain_lowered(self) -> None:
        """Float consumers (float islands, updates, graph outputs) of a lowered node's outputs read
        a Dequantize of the integer form; the float node goes."""
        g = self.g
        for n in [n for n in g.nodes if n.name in self.lowered]:
            for o in n.outputs:
                if not o.uses and o not in g.outputs:
                    continue
                q, e = self.irep[o.name]
                dq = g.add_node("Dequantize", [q, e], [(f"{o.name}.f", o.shape, o.dtype)], {},
                                name=f"{o.name}/dequantize", domain="rctc", before=n)
                dq.meta.update({"phase": n.phase, "fwd": n.meta.get("fwd", n.name)})
                dq.outputs[0].role = o.role
                g.replace_value(o, dq.outputs[0], take_name=True)
            g.remove_node(n, force=True)


def run(g: Graph, options: CompileOptions) -> None:
    if getattr(options, "elementwise", "float") == "integer":
        _Lowerer(g, options).run()
    g.meta["float_islands"] = float_islands(g)
    g.meta.setdefault("rct", {})["elementwise"] = getattr(options, "elementwise", "float")


__all__ = ["float_islands", "run"]

"""What the cost model needs to know about each value and node of a compiled graph.

Read-only views over a Graph, built once per graph and shared by the static prediction and
the runtime counter, so both see the same widths, traffic classes and layers:

* ``step_nodes(g)``: the nodes one training step executes, in schedule order (the
  ancestors of the step's outputs and state updates, as ``Executor.train_step`` runs them).
* ``ValueInfo.bits(v, dtype)``: the logical bitwidth of a value. Parameters with a slot:
  the current bits in ``<param>.bits``; QuantAct / QuantGrad / FakeQuant outputs: the node's
  ``bits``; layout ops (Reshape, Transpose, ...) keep their input's width; everything else
  its dtype's width (float32 = 32, int32 accumulators = 32, int64 = 64).
* ``ValueInfo.kind[name]``: the traffic class: ``param`` (parameters, their slot scalars and
  their quantised / dequantised copies, and the updated parameter), ``optimizer``
  (momentum state), ``grad`` (parameter gradients), ``epilogue`` (an integer product's
  accumulator that only its Dequantize reads: on an integer accelerator requantisation is
  the GEMM's output stage, so the accumulator never goes to memory and moves no bytes) or
  ``activation`` (everything else: inputs, activations, errors, other buffers).
* ``layer_of``: the forward layer a node belongs to (``meta["fwd"]`` for backward nodes,
  the parameter's first forward consumer for updates, the consumer's layer for quantise /
  dequantise helpers, the node's own name for forward nodes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rctc.ir import BITS, EXPONENT, Graph, Node, Value
from rctc.ops import INT_PRODUCTS, UPDATE_OPS
from rctc.ops import QUANT_HELPERS as HELPER_OPS
from rctc.ops import QUANTISE_OPS as QUANT_BITS_OPS
from rctc.ops import WIDTH_PRESERVING as LAYOUT_OPS
from rctc.slots import bits_value, has_slot


def step_outputs(g: Graph) -> list[str]:
    """Names one training step computes: the graph outputs and every state update."""
    return list(dict.fromkeys([v.name for v in g.outputs] + list(g.state_updates.values())))


def step_nodes(g: Graph) -> list[Node]:
    """The nodes of one training step in schedule order (those the step's outputs depend on)."""
    needed = g.ancestors(g.value(name) for name in step_outputs(g))
    return [n for n in g.nodes if n.name in needed]


def _dtype_bits(dtype: np.dtype) -> int:
    return 8 if dtype == np.bool_ else int(dtype.itemsize) * 8


class ValueInfo:
    """Static facts about the values of one graph (widths rule, traffic class, layer)."""

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.mode = str(g.meta.get("mode", "fp32"))
        # bits rule per value: ("slot", bits buffer name) or ("fixed", bits); absent -> dtype
        self.rule: dict[str, tuple[str, Any]] = {}
        self.kind: dict[str, str] = {}
        self._classify()
        self._layers: dict[str, str] = {}
        self._index = {n.name: i for i, n in enumerate(g.nodes)}
        self._param_layer = self._param_layers()

    # ----- widths ---------------------------------------------------------
    def bits(self, v: Value, dtype: np.dtype | None = None) -> int:
        rule = self.rule.get(v.name)
        if rule is not None:
            if rule[0] == "slot":
                return int(self.g.values[rule[1]].data)
            return int(rule[1])
        return _dtype_bits(np.dtype(dtype if dtype is not None else v.dtype))

    def is_float(self, v: Value, dtype: np.dtype | None = None) -> bool:
        if v.name in self.rule:
            return False
        return bool(np.issubdtype(np.dtype(dtype if dtype is not None else v.dtype), np.floating))

    def fake_quant_bits(self, v: Value) -> int | None:
        """Bits of a QAT fake-quantised operand (FakeQuant output, through layout ops), else None."""
        rule = self.rule.get(v.name)
        if rule is None or rule[0] != "fixed":
            return None
        return int(rule[1]) if self.mode == "qat" else None

    # ----- classification ------------------------------------------------
    def _classify(self) -> None:
        g = self.g
        params = {p.name for p in g.params()}
        for p in g.params():
            if has_slot(p):
                self.rule[p.name] = ("slot", bits_value(g, p).name)
        param_scalars = _slot_scalars(g, params)
        opt: set[str] = set()
        for n in g.nodes:
            if n.op_type in UPDATE_OPS:
                for v in n.inputs[1:]:
                    if v is not None and v.kind == "buffer" and v.name not in param_scalars:
                        opt.add(v.name)
        opt |= _slot_scalars(g, opt)
        for v in g.values.values():
            if v.kind == "param" or v.name in param_scalars:
                self.kind[v.name] = "param"
            elif v.name in opt:
                self.kind[v.name] = "optimizer"
            else:
                self.kind[v.name] = "activation"
        for state, new in g.state_updates.items():
            if state in params:
                self.kind[new] = "param"
            elif self.kind.get(state) == "optimizer":
                self.kind[new] = "optimizer"
        for n in g.nodes:
            src = n.inputs[0] if n.inputs else None
            for i, out in enumerate(n.outputs):
                if i == 0 and n.op_type in QUANT_BITS_OPS:
                    self.rule[out.name] = ("fixed", int(n.attrs["bits"]))
                elif i == 0 and n.op_type in LAYOUT_OPS and src is not None and src.name in self.rule:
                    self.rule[out.name] = self.rule[src.name]
                if i == 0 and n.op_type in HELPER_OPS and src is not None and self.kind.get(src.name) == "param":
                    self.kind[out.name] = "param"
        for n in g.nodes:  # accumulators only a Dequantize reads: the product's epilogue, never in memory
            if n.domain == "rctc" and n.op_type in INT_PRODUCTS:
                if all(u.op_type in ("Dequantize", "Requantize") for o in n.outputs for u, _ in o.uses):
                    for o in n.outputs:
                        self.kind[o.name] = "epilogue"
        for gname in g.meta.get("param_grads", {}).values():
            if gname in g.values and self.kind.get(gname) == "activation":
                self.kind[gname] = "grad"

    # ----- layers ---------------------------------------------------------
    def _param_layers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for n in self.g.nodes:
            if n.phase != "forward" or (n.op_type in HELPER_OPS and "fwd" not in n.meta):
                continue
            for v in n.inputs:
                p = self._param_source(v)
                if p is not None and p not in out:
                    out[p] = self._base_name(n)
        return out

    def _param_source(self, v: Value | None) -> str | None:
        while v is not None:
            if v.kind == "param":
                return v.name
            prod = v.producer
            if prod is None or prod.op_type not in HELPER_OPS:
                return None
            v = prod.inputs[0]
        return None

    @staticmethod
    def _base_name(n: Node) -> str:
        if "lowered_from" in n.meta:  # an integer product: the layer of the product it replaced
            return str(n.meta["lowered_from"])
        return str(n.meta.get("fwd", n.name))

    def layer_of(self, n: Node) -> str:
        if n.name in self._layers:
            return self._layers[n.name]
        layer = self._layer(n, 0)
        self._layers[n.name] = layer
        return layer

    def _layer(self, n: Node, depth: int) -> str:
        if "fwd" in n.meta:
            return str(n.meta["fwd"])
        if "param" in n.meta:
            p = str(n.meta["param"])
            return self._param_layer.get(p, p)
        if n.op_type in HELPER_OPS and depth < 16:
            users = [u for u, _ in n.outputs[0].uses] if n.outputs else []
            if users:
                first = min(users, key=lambda u: self._index.get(u.name, len(self._index)))
                return self._layer(first, depth + 1)
        return self._base_name(n)


def _slot_scalars(g: Graph, owners: set[str]) -> set[str]:
    """Names of the slot scalars (roles ``exponent`` / ``bits``) of the values ``owners``."""
    return {v.name for v in g.values.values() if v.kind != "temp" and (r := v.role) is not None
            and r.kind in (EXPONENT, BITS) and r.of in owners}


__all__ = ["HELPER_OPS", "LAYOUT_OPS", "UPDATE_OPS", "ValueInfo", "step_nodes", "step_outputs"]

"""Finite-difference gradient check for one op: the shared harness of the gradient-rule tests.

``check_op_grad`` builds a one-node float64 graph whose inputs listed in ``wrt`` are
trainable parameters, seeds each output's gradient with a random tensor R (so the
implicit loss is sum(y * R)), runs the backward pass that build_backward emits, and
compares it with central differences of the same loss computed by the forward kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rctc.ir import Graph
from rctc.node_ids import assign_node_ids
from rctc.passes.build_backward import backward
from rctc.runtime.executor import Executor
from rctc.runtime.kernels import KernelContext


def _forward_shapes(op_type: str, inputs: dict[str, np.ndarray | None], attrs: dict[str, Any], n_out: int,
                    training: bool, domain: str) -> list[np.ndarray]:
    g = Graph()
    ins = [g.add_value(k, v.shape, v.dtype, "const", v) if v is not None else None for k, v in inputs.items()]
    node = g.add_node(op_type, ins, [(f"y{i}", (), np.float64) for i in range(n_out)], attrs, domain=domain)
    assign_node_ids(g)
    out = Executor(g).run({}, [o.name for o in node.outputs], KernelContext(training=training))
    return [out[o.name] for o in node.outputs]


def check_op_grad(
    op_type: str,
    inputs: dict[str, np.ndarray | None],
    attrs: dict[str, Any] | None = None,
    wrt: Sequence[str] | None = None,
    n_out: int = 1,
    grad_outputs: Sequence[int] = (0,),
    training: bool = True,
    domain: str = "",
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    seed: int = 0,
) -> None:
    """Assert the emitted backward of ``op_type`` matches central differences in float64."""
    attrs = dict(attrs or {})
    wrt = list(inputs) if wrt is None else list(wrt)
    rng = np.random.default_rng(seed)
    ys = _forward_shapes(op_type, inputs, attrs, n_out, training, domain)
    g = Graph()
    ins = []
    for k, v in inputs.items():
        if v is None:
            ins.append(None)
            continue
        kind = "param" if k in wrt else "const"
        val = g.add_value(k, v.shape, v.dtype, kind, v)
        val.trainable = k in wrt
        ins.append(val)
    node = g.add_node(op_type, ins, [(f"y{i}", y.shape, y.dtype) for i, y in enumerate(ys)], attrs, domain=domain)
    seeds_np = {i: rng.standard_normal(ys[i].shape).astype(ys[i].dtype) for i in grad_outputs}
    seeds = {node.outputs[i].name: g.add_const(f"R{i}", r) for i, r in seeds_np.items()}
    grads = backward(g, seeds, [g.value(k) for k in wrt])
    g.outputs = [node.outputs[i] for i in grad_outputs] + list(grads.values())
    g.verify()
    assign_node_ids(g)  # the keys of the nodes' random streams (Dropout): one mask for every run
    ex = Executor(g)
    got = ex.run({}, [v.name for v in grads.values()], KernelContext(training=training))

    def loss() -> float:
        out = ex.run({}, [node.outputs[i].name for i in grad_outputs], KernelContext(training=training))
        return float(sum(np.sum(out[node.outputs[i].name] * r) for i, r in seeds_np.items()))

    for k in wrt:
        p = g.value(k)
        assert k in grads, f"no gradient emitted for {k}"
        base = p.data.copy()
        num = np.zeros_like(base, dtype=np.float64)
        flat = num.reshape(-1)
        for j in range(base.size):
            pert = base.copy().reshape(-1)
            pert[j] += eps
            p.data = pert.reshape(base.shape)
            lp = loss()
            pert[j] -= 2 * eps
            p.data = pert.reshape(base.shape)
            lm = loss()
            flat[j] = (lp - lm) / (2 * eps)
        p.data = base
        np.testing.assert_allclose(got[grads[k].name], num, rtol=rtol, atol=atol, err_msg=f"{op_type} d/d{k}")

"""The same emitters on one-node graphs built by hand, for the layouts the bundled models do
not reach: broadcasts both ways, IntAddGrad (no lowering emits it yet), means over axes that
are not one contiguous run, LayerNorm over two axes, softmax along a middle axis, Gather along
axis 1 with negative indices, repeated embedding rows, a 2-D BatchNorm, clip bounds off the
grid, integer matmuls of 3-D by 2-D and batched 4-D operands; each bit for bit against the
numpy kernel at two (seed, step) keys, nearest and stochastic. Then the failures: an index out
of range fails the step with one line, and a node the kernels cannot take is refused naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from rctc.errors import RctcError, UnsupportedOpError
from rctc.ir import Graph
from rctc.native.codegen import NativeStep, generate
from rctc.node_ids import assign_node_ids
from rctc.runtime.executor import Executor, KernelError
from rctc.runtime.kernels import KernelContext
from tests.native.codegen_cases import assert_same

KEYS = ((3, 0), (11, 5))
I8, I16, I32, I64 = np.int8, np.int16, np.int32, np.int64


def _q(shape: tuple[int, ...], dtype: Any = I8, seed: int = 0, lim: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = lim or min(int(np.iinfo(dtype).max), 2**12)
    return rng.integers(-m, m + 1, shape).astype(dtype)


def _e(v: int) -> np.ndarray:
    return np.array(v, I32)


def _graph(cases: dict[str, tuple], state: Sequence[str] = ()) -> tuple[Graph, dict[str, np.ndarray]]:
    """One node per case, every value named ``case.value`` (so one build runs them all): the
    inputs fed, except those in ``state`` (stored as buffers); returns the graph and its feeds."""
    g = Graph(name="cases")
    feeds = {}
    for case, (op, ins, outs, attrs) in cases.items():
        vals = []
        for name, arr in ins:
            full = f"{case}.{name}"
            if name in state:
                vals.append(g.add_value(full, arr.shape, arr.dtype, "buffer", arr))
            else:
                vals.append(g.add_input(full, arr.shape, arr.dtype))
                feeds[full] = arr
        g.add_node(op, vals, [(f"{case}.{n}", s, d) for n, s, d in outs], attrs, name=case)
    assign_node_ids(g)
    return g, feeds


def _binary(op: str, sa, sb, da, db, rounding: str):
    a, b = _q(sa, da, 1), _q(sb, db, 2)
    shape = np.broadcast_shapes(sa, sb)
    return (op, [("a", a), ("ae", _e(-5)), ("b", b), ("be", _e(-9))], [("y", shape, I8), ("ye", (), I32)],
            {"bits": 8, "rounding": rounding})


CASES = {
    "add-nchw-nc11": _binary("IntAdd", (2, 3, 4, 5), (2, 3, 1, 1), I8, I16, "stochastic"),
    "add-scalar-first": _binary("IntAdd", (), (3, 1, 5), I16, I8, "nearest"),
    "mul-c11-nchw": _binary("IntMul", (1, 3, 1, 1), (2, 3, 4, 5), I8, I8, "stochastic"),
    "mul-both-broadcast": _binary("IntMul", (4, 1), (1, 6), I32, I8, "nearest"),
    "add-grad-to-c1w": ("IntAddGrad", [("d", _q((2, 3, 4, 5), I8, 3)), ("de", _e(-7))],
                        [("da", (3, 1, 5), I8), ("dae", (), I32)],
                        {"shape": [3, 1, 5], "bits": 8, "rounding": "stochastic"}),
    "add-grad-to-scalar": ("IntAddGrad", [("d", _q((4, 6), I16, 4)), ("de", _e(-3))],
                           [("da", (), I16), ("dae", (), I32)], {"shape": [], "bits": 16, "rounding": "nearest"}),
    "mean-axes-0-2": ("IntReduceMean", [("x", _q((3, 4, 5, 2), I8, 5)), ("xe", _e(-4))],
                      [("y", (4, 2), I8), ("ye", (), I32)], {"axes": [0, 2], "keepdims": 0, "bits": 8}),
    "mean-axes-1-3-keep": ("IntReduceMean", [("x", _q((2, 3, 4, 5), I16, 6)), ("xe", _e(-8))],
                           [("y", (2, 1, 4, 1), I16), ("ye", (), I32)], {"axes": [-1, 1], "keepdims": 1, "bits": 16}),
    "mean-grad-axes-0-2": ("IntReduceMeanGrad", [("d", _q((4, 2), I8, 7)), ("de", _e(-6))],
                           [("dx", (3, 4, 5, 2), I8), ("dxe", (), I32)],
                           {"shape": [3, 4, 5, 2], "axes": [0, 2], "keepdims": 0, "bits": 8, "rounding": "stochastic"}),
    "mean-grad-axis-2-keep": ("IntReduceMeanGrad", [("d", _q((2, 3, 1), I8, 8)), ("de", _e(-6))],
                              [("dx", (2, 3, 7), I8), ("dxe", (), I32)],
                              {"shape": [2, 3, 7], "axes": [2], "keepdims": 1, "bits": 8, "rounding": "nearest"}),
    "layernorm-two-axes": ("IntLayerNormalization",
                           [("x", _q((2, 3, 4), I8, 9)), ("xe", _e(-5)), ("g", _q((3, 4), I16, 10, 900)),
                            ("ge", _e(-10)), ("b", _q((3, 4), I16, 11, 900)), ("bee", _e(-12))],
                           [("y", (2, 3, 4), I8), ("ye", (), I32)], {"axis": 1, "epsilon": 1e-3, "bits": 8}),
    "layernorm-grad-two-axes": ("IntLayerNormGrad",
                                [("d", _q((2, 3, 4), I8, 12)), ("de", _e(-7)), ("x", _q((2, 3, 4), I8, 9)),
                                 ("xe", _e(-5)), ("g", _q((3, 4), I16, 10, 900)), ("ge", _e(-10))],
                                [("dx", (2, 3, 4), I8), ("dxe", (), I32), ("dg", (3, 4), I64), ("dge", (), I32),
                                 ("db", (3, 4), I64), ("dbe", (), I32)],
                                {"axis": -2, "epsilon": 1e-5, "bits": 8, "rounding": "stochastic"}),
    "softmax-middle-axis": ("IntSoftmax", [("x", _q((2, 5, 3), I8, 13)), ("xe", _e(-4))],
                            [("y", (2, 5, 3), I16), ("ye", (), I32)], {"axis": 1, "bits": 12}),
    "softmax-grad-middle-axis": ("IntSoftmaxGrad",
                                 [("d", _q((2, 5, 3), I8, 14)), ("de", _e(-9)), ("y", _q((2, 5, 3), I8, 15, 127)),
                                  ("ye", _e(-7))], [("dx", (2, 5, 3), I8), ("dxe", (), I32)],
                                 {"axis": -2, "bits": 8, "rounding": "stochastic"}),
    "batchnorm-2d": ("IntBatchNormalization",
                     [("x", _q((5, 3), I8, 16)), ("xe", _e(-3)), ("g", _q((3,), I16, 17, 900)), ("ge", _e(-10)),
                      ("b", _q((3,), I16, 18, 900)), ("bee", _e(-11)), ("m", _q((3,), I16, 19)), ("me", _e(-12)),
                      ("v", np.abs(_q((3,), I16, 20))), ("ve", _e(-9))],
                     [("y", (5, 3), I8), ("ye", (), I32), ("m2", (3,), I16), ("me2", (), I32), ("v2", (3,), I16),
                      ("ve2", (), I32)], {"epsilon": 1e-5, "momentum": 0.75, "bits": 8}),
    "batchnorm-grad-2d": ("IntBatchNormGrad",
                          [("d", _q((5, 3), I8, 21)), ("de", _e(-6)), ("x", _q((5, 3), I8, 16)), ("xe", _e(-3)),
                           ("g", _q((3,), I16, 17, 900)), ("ge", _e(-10))],
                          [("dx", (5, 3), I8), ("dxe", (), I32), ("dg", (3,), I64), ("dge", (), I32),
                           ("db", (3,), I64), ("dbe", (), I32)],
                          {"epsilon": 1e-5, "bits": 8, "rounding": "stochastic"}),
    "clip-off-grid": ("IntClip", [("x", _q((3, 7), I16, 22)), ("xe", _e(-9))], [("y", (3, 7), I16), ("ye", (), I32)],
                      {"min": -1.3, "max": 2.7}),
    "clip-grad-upper-only": ("IntClipGrad", [("d", _q((3, 7), I8, 23)), ("de", _e(-2)), ("x", _q((3, 7), I16, 22)),
                                             ("xe", _e(-9))], [("dx", (3, 7), I8), ("dxe", (), I32)],
                             {"min": None, "max": 0.5}),
    "gather-axis1-negative": ("Gather", [("t", _q((3, 5, 4), I16, 24)),
                                         ("i", np.array([[0, -1, 4], [-5, 2, 2]], I64))],
                              [("y", (3, 2, 3, 4), I16)], {"axis": 1}),
    "matmul-3d-by-2d": ("IntMatMul", [("a", _q((2, 3, 5), I8, 26)), ("ae", _e(-4)), ("b", _q((5, 7), I8, 27)),
                                      ("be", _e(-6))], [("y", (2, 3, 7), I32), ("ye", (), I32)], {}),
    "matmul-batched-4d": ("IntMatMul", [("a", _q((2, 3, 4, 5), I16, 28)), ("ae", _e(-4)),
                                        ("b", _q((2, 3, 5, 6), I8, 29)), ("be", _e(-6))],
                          [("y", (2, 3, 4, 6), I64), ("ye", (), I32)], {}),
    "gather-grad-repeats": ("IntGatherGrad", [("d", _q((2, 3, 4), I8, 25)), ("de", _e(-4)),
                                              ("i", np.array([[1, 1, -1], [0, 5, 1]], I32))],
                            [("acc", (6, 4), I64), ("acce", (), I32)], {"table_shape": [6, 4]}),
    # a bias along the last axis: IntAdd's kernel where the bias's exponent is at or above the
    # accumulator's (within 45 bits for int16), the general widened path otherwise
    **{f"requant-bias-{name}": ("Requantize", [("a", _q((2, 3, 5), I32, 30, 1 << 28)), ("ae", _e(-20)),
                                               ("b", _q((5,), I16, 31)), ("bee", _e(eb))],
                                [("y", (2, 3, 5), I8), ("ye", (), I32)],
                                {"bits": 8, "rounding": rounding, "bias_axis": -1})
       for name, eb, rounding in (("above", -12, "stochastic"), ("equal", -20, "nearest"),
                                  ("below", -23, "stochastic"), ("far-above", 26, "nearest"))},
    "requant-bias-channels": ("Requantize", [("a", _q((2, 3, 4), I32, 32, 1 << 20)), ("ae", _e(-9)),
                                             ("b", _q((3,), I8, 33)), ("bee", _e(-6))],
                              [("y", (2, 3, 4), I8), ("ye", (), I32)],
                              {"bits": 8, "rounding": "stochastic", "bias_axis": 1}),
}


FAMILY = {"Requantize", "IntAdd", "IntMul", "IntAddGrad", "IntReduceMean", "IntReduceMeanGrad", "IntLayerNormalization",
          "IntLayerNormGrad", "IntSoftmax", "IntSoftmaxGrad", "IntBatchNormalization", "IntBatchNormGrad", "IntClip",
          "IntClipGrad", "Gather", "IntGatherGrad", "IntMatMul"}
RUNNING = {"m": "m2", "me": "me2", "v": "v2", "ve": "ve2"}  # BatchNorm's state and its update


def test_one_node_graphs_bit_identical_to_numpy(native_env: dict[str, str]) -> None:
    g, feeds = _graph(CASES, tuple(RUNNING))
    for case, (op, *_rest) in CASES.items():
        if op == "IntBatchNormalization":  # the running statistics are state the node updates
            g.state_updates.update({f"{case}.{s}": f"{case}.{new}" for s, new in RUNNING.items()})
    outs = [o.name for n in g.nodes for o in n.outputs]
    prog = generate(g, g.nodes, outs)
    assert {n.op_type for n in g.nodes} == FAMILY
    stored = {nm: g.values[nm].data for nm in prog.state}
    assert set(prog.updates) == {f"batchnorm-2d.{s}" for s in RUNNING}
    native = NativeStep(prog, stored, env=native_env)
    for seed, step in KEYS:
        ref = Executor(g).run(feeds, outs, KernelContext(training=True, seed=seed, step=step))
        native.load_state(stored)
        got = native.run(feeds, seed=seed, step=step)
        assert_same(got, ref, outs)
        assert_same(got, {s: ref[new] for s, new in prog.updates.items()}, list(prog.updates))
    # an index outside [-n, n) fails the whole step with one line (numpy: an IndexError)
    for bad in (5, -6):
        idx = feeds["gather-axis1-negative.i"].copy()
        idx[1, 2] = bad
        wrong = feeds | {"gather-axis1-negative.i": idx}
        with pytest.raises(KernelError, match="IndexError"):
            Executor(g).run(wrong, outs, KernelContext(training=True))
        with pytest.raises(RctcError, match="index out of range") as info:
            native.run(wrong)
        assert "\n" not in str(info.value)


def test_unmappable_nodes_refused_naming_them() -> None:
    x = _q((2, 3), I8)
    bad = {
        "as int32, not int16": (
            "IntBatchNormalization", [("x", x), ("xe", _e(0)), ("g", x[0]), ("ge", _e(0)), ("b", x[0]), ("bee", _e(0)),
                                      ("m", x[0].astype(I32)), ("me", _e(0)), ("v", x[0].astype(I32)), ("ve", _e(0))],
            [("y", (2, 3), I8), ("ye", (), I32), ("m2", (3,), I32), ("me2", (), I32), ("v2", (3,), I32),
             ("ve2", (), I32)], {"bits": 8}),
        "int16, not the int8 of 8 bits": (
            "IntAdd", [("a", x), ("ae", _e(0)), ("b", x), ("be", _e(0))], [("y", (2, 3), I16), ("ye", (), I32)],
            {"bits": 8}),
        "at most 8": (
            "IntMul", [("a", _q((1,) * 9)), ("ae", _e(0)), ("b", _q((1,) * 9)), ("be", _e(0))],
            [("y", (1,) * 9, I8), ("ye", (), I32)], {"bits": 8}),
        "does not broadcast": (
            "IntAddGrad", [("d", _q((2, 3))), ("de", _e(0))], [("da", (2,), I8), ("dae", (), I32)],
            {"shape": [2], "bits": 8}),
    }
    for why, case in bad.items():
        g, _ = _graph({"bad": case})
        with pytest.raises(UnsupportedOpError, match=why) as info:
            generate(g, g.nodes)
        msg = str(info.value)
        assert "'bad'" in msg and "numpy backend" in msg and "\n" not in msg

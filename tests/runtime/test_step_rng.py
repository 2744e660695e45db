"""The training step's randomness comes from the counter-based stream of (seed, step, node_id).

* ``KernelContext.words``: element i is word ``draw * 2^40 + start + i`` of ``rctc.rng``'s stream,
  so drawing [0, n) at once equals drawing [0, k) and [k, n) (in either order).
* Every stochastic rounding (errors on the 2^-16 grid, updates on the 2^-24 grid, momentum's
  velocity and update, Dropout) equals an int64 / exact reference built from ``random_words``
  directly, is unbiased, and gives the same bits however its elements are split.
* Whole runs: same seed -> the same state; another seed -> another; steps continue the stream
  across ``train`` calls; node ids are assigned at compile and survive the .rct.
* The C stream (native/csrc/support/philox.c) rounds a compiled node's error to the numpy
  kernel's bits, computing its words in blocks.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
from cshared import CSRC, build_shared, compiler

import rctc
from rctc.fixedpoint import choose_exponent
from rctc.ir import Node, Value
from rctc.models import build, input_spec, num_classes
from rctc.node_ids import assign_node_ids
from rctc.rct_format import load_rct, save_rct
from rctc.rng import random_words
from rctc.runtime.executor import Executor, KernelError
from rctc.runtime.intref.momentum import momentum_update
from rctc.runtime.kernels import KERNELS, KernelContext
from rctc.runtime.kernels.int_adamw import float_gradient, lr_exact
from rctc.runtime.kernels.int_momentum import node_constants
from rctc.runtime.kernels.quant_ops import stochastic_floor, stochastic_round_error
from rctc.runtime.kernels.registry import DRAW_STRIDE


def _node(op: str, nid: int | None, **attrs: object) -> Node:
    n = Node(op, op, [], [Value("o0", None, np.float32)], dict(attrs), domain="rctc")
    if nid is not None:
        n.meta["node_id"] = nid
    return n


# ----- the helper ------------------------------------------------------------------------------

def test_words_are_the_nodes_stream_in_any_split() -> None:
    ctx, node = KernelContext(seed=2**40 + 5, step=17), _node("QuantGrad", 9)
    n, k = 1001, 389
    whole = ctx.words(node, n)
    np.testing.assert_array_equal(whole, random_words(2**40 + 5, 17, 9, 0, n))
    tail, head = ctx.words(node, n - k, start=k), ctx.words(node, k)  # the later block first
    np.testing.assert_array_equal(np.concatenate([head, tail]), whole)
    np.testing.assert_array_equal(ctx.words(node, (7, 11, 13)).reshape(-1), whole)  # C order
    np.testing.assert_array_equal(ctx.words(node, 50, start=3, draw=1),
                                  random_words(2**40 + 5, 17, 9, DRAW_STRIDE + 3, 50))
    assert (ctx.words(node, n, draw=1) != whole).mean() > 0.99
    for other in (KernelContext(seed=2**40 + 6, step=17), KernelContext(seed=2**40 + 5, step=18)):
        assert (other.words(node, n) != whole).mean() > 0.99
    assert (ctx.words(_node("QuantGrad", 10), n) != whole).mean() > 0.99


def test_words_refuse_a_node_without_id_and_out_of_range_draws() -> None:
    with pytest.raises(RuntimeError, match="'QuantGrad' .*has no node id"):
        KernelContext().words(_node("QuantGrad", None), 4)
    with pytest.raises(ValueError, match="outside a node's stream"):
        KernelContext().words(_node("QuantGrad", 1), 4, start=DRAW_STRIDE - 3)
    with pytest.raises(ValueError, match="outside a node's stream"):
        KernelContext().words(_node("QuantGrad", 1), 4, draw=-1)
    with pytest.raises(RuntimeError, match="lacks the needs-rng trait"):
        KernelContext().words(_node("QuantAct", 1), 4)


def test_executor_names_the_node_without_id() -> None:
    from rctc.ir import Graph

    g = Graph()
    x = g.add_input("x", (4,), np.float32)
    g.add_node("QuantGrad", [x], [("q", (4,), np.int8), ("e", (), np.int32)], {"bits": 8}, domain="rctc")
    with pytest.raises(KernelError, match="node 'QuantGrad.*no node id"):
        Executor(g).run({"x": np.ones(4, np.float32)}, ["q"], KernelContext(training=True))


# ----- the roundings ---------------------------------------------------------------------------

def test_error_rounding_is_the_int64_definition_in_any_split() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(5000) * 3).astype(np.float32)
    e = choose_exponent(float(np.abs(x).max()), 8)
    ctx, node = KernelContext(seed=11, step=4), _node("QuantGrad", 3)
    q = stochastic_round_error(x, e, 8, ctx.words(node, x.shape))
    u16 = (random_words(11, 4, 3, 0, x.size) >> 16).astype(np.int64)
    ref = (np.floor(x.astype(np.float64) * 2.0 ** (16 - e)).astype(np.int64) + u16) >> 16
    np.testing.assert_array_equal(q.astype(np.int64), ref)
    cuts = [0, 1, 777, 778, 4096, 5000]
    blocks = list(zip(cuts, cuts[1:]))[::-1]  # the last block first
    parts = [stochastic_round_error(x[a:b], e, 8, ctx.words(node, b - a, start=a)) for a, b in blocks]
    np.testing.assert_array_equal(np.concatenate(parts[::-1]), q)


def test_update_rounding_in_any_split_and_unbiased() -> None:
    vals = np.array([0.3, -0.3, 2.75, -5.5, 1e-3, -1e-3, 7.0, 3 * 2.0**-24], np.float64)
    n = 40000
    u = np.repeat(vals, n)
    ctx, node = KernelContext(seed=5, step=1), _node("IntSGDUpdate", 8)
    fl, up = stochastic_floor(u, ctx.words(node, u.shape))
    r = (random_words(5, 1, 8, 0, u.size) >> 8).astype(np.float64)
    np.testing.assert_array_equal(up, r < (u - np.floor(u)) * 2.0**24)
    got = (fl + up).reshape(len(vals), n)
    frac = vals - np.floor(vals)
    sigma = np.sqrt(np.maximum(frac * (1 - frac), 1e-6) / n)
    assert np.all(np.abs(got.mean(axis=1) - vals) < 5 * sigma + 2.0**-24)
    assert np.all(got[-2] == 7.0)  # an integer update is never rounded away
    k = 123457
    fa, ua = stochastic_floor(u[:k], ctx.words(node, k))
    fb, ub = stochastic_floor(u[k:], ctx.words(node, u.size - k, start=k))
    np.testing.assert_array_equal(np.concatenate([fa + ua, fb + ub]), fl + up)


def test_momentum_update_rounds_velocity_from_draw_0_and_update_from_draw_1() -> None:
    rng = np.random.default_rng(1)
    shape = (37, 5)
    q = rng.integers(-100, 100, shape).astype(np.int8)
    vq = rng.integers(-3000, 3000, shape).astype(np.int16)
    g = (rng.standard_normal(shape) * 0.01).astype(np.float32)
    e, ve, lr, mu = -7, -14, 0.05, 0.9
    node = _node("IntMomentumUpdate", 21, momentum=mu, velocity_bits=16, rounding="stochastic", weight_decay=0.0)
    node.meta["param"] = "p"
    ctx = KernelContext(training=True, seed=8, step=6)
    q_new, new_vq, new_ve = KERNELS["IntMomentumUpdate"](ctx, node, q, np.array(e), np.array(8), g, vq,
                                                          np.array(ve), np.array(lr, np.float32))

    gq, eg = float_gradient(g, "IntMomentumUpdate")
    lr_m, lr_k = lr_exact(0.05)
    consts = node_constants(node)

    def words(draw: int) -> np.ndarray:
        return random_words(8, 6, 21, draw * 2**40, q.size).reshape(shape)

    want = momentum_update(q, e, 8, gq, eg, vq, ve, 16, lr_m, lr_k, consts, (words(0), words(1)))
    assert int(new_ve) == want.ve
    np.testing.assert_array_equal(new_vq, want.vq)
    np.testing.assert_array_equal(q_new, want.q)
    swapped = momentum_update(q, e, 8, gq, eg, vq, ve, 16, lr_m, lr_k, consts, (words(1), words(0)))
    assert not np.array_equal(swapped.vq, want.vq)  # the draws are told apart


def test_dropout_mask_is_the_word_threshold() -> None:
    x = np.ones((300, 200), np.float32)
    node = _node("Dropout", 4)
    node.outputs.append(Value("mask", None, np.bool_))
    for ratio in (0.25, 0.1, 0.5 + 2.0**-30):
        y, mask = KERNELS["Dropout"](KernelContext(training=True, seed=3, step=2), node, x,
                                     np.asarray(ratio, np.float32))
        r = float(np.float32(ratio))
        want = random_words(3, 2, 4, 0, x.size).reshape(x.shape) >= math.ceil(r * 2**32)
        np.testing.assert_array_equal(mask, want)
        assert abs(mask.mean() - (1 - r)) < 5 * math.sqrt(r * (1 - r) / x.size)
        np.testing.assert_array_equal(y, np.where(mask, np.float32(1 / (1 - r)), 0).astype(np.float32))


# ----- whole runs ------------------------------------------------------------------------------

def _mlp(seed: int = 0, elementwise: str = "integer") -> rctc.CompiledModel:
    return rctc.compile(build("mlp"), batch_size=8, seed=seed, adjust_every=0, elementwise=elementwise)


def _data() -> tuple[np.ndarray, np.ndarray]:
    _, shape, dtype = input_spec("mlp")
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, *shape)).astype(dtype), rng.integers(0, num_classes("mlp"), 8)


def _state(m: rctc.CompiledModel) -> dict[str, bytes]:
    return {v.name: np.ascontiguousarray(v.data).tobytes() for v in m.graph.state_values()}


def test_runs_are_a_function_of_seed_and_step() -> None:
    x, y = _data()
    runs = {}
    for key, seed in (("a", 3), ("b", 3), ("c", 4)):
        m = _mlp()
        m.train(x, y, steps=3, lr=0.05, seed=seed, shuffle=False)
        runs[key] = _state(m)
    assert runs["a"] == runs["b"]
    assert any(runs["a"][k] != runs["c"][k] for k in runs["a"])
    # 2 steps, then 1 more in a second call (one batch of data: every step reads the same batch):
    # the third step runs at step 2 of the stream, as in one call of 3 steps
    m = _mlp()
    m.train(x, y, steps=2, lr=0.05, seed=3, shuffle=False)
    m.train(x, y, steps=1, lr=0.05, seed=3, shuffle=False)
    assert _state(m) == runs["a"]


def test_node_ids_are_assigned_at_compile_and_kept_by_the_rct(tmp_path) -> None:  # noqa: ANN001
    m = _mlp()
    ids = {n.name: n.meta["node_id"] for n in m.graph.nodes}
    assert sorted(ids.values()) == list(range(len(m.graph.nodes)))
    save_rct(m.graph, tmp_path / "a.rct")
    assert {n.name: n.meta["node_id"] for n in load_rct(tmp_path / "a.rct").nodes} == ids
    for n in m.graph.nodes:  # a file written before node ids: the same numbering on load
        del n.meta["node_id"]
    save_rct(m.graph, tmp_path / "b.rct")
    assert {n.name: n.meta["node_id"] for n in load_rct(tmp_path / "b.rct").nodes} == ids
    g = load_rct(tmp_path / "b.rct")
    g.nodes[0].meta.pop("node_id")
    with pytest.raises(ValueError, match="node ids on some nodes only"):
        assign_node_ids(g)


def test_trainer_refuses_a_seed_outside_64_bits() -> None:
    from rctc.errors import RctcError
    from rctc.runtime.trainer import Trainer

    for seed in (-1, 2**64):
        with pytest.raises(RctcError, match=r"seed must be an integer in \[0, 2\^64\)"):
            Trainer(_mlp().graph, seed)


# ----- the C stream ----------------------------------------------------------------------------

SHIM = r"""
#include "rctc_rng.h"
/* (w[i] + top16(word i)) >> 16 as a floor, the words computed block by block, last block first */
void shim_round_error(const int64_t *w, size_t n, size_t block, uint64_t seed, uint32_t step,
                      uint32_t node_id, int64_t *out)
{
    uint32_t words[64];
    size_t first = ((n + block - 1) / block) * block;
    while (first > 0) {
        size_t i, start = first - block, count = n - start < block ? n - start : block;
        first = start;
        rctc_random_words(seed, step, node_id, start, count, words);
        for (i = 0; i < count; ++i) {
            int64_t t = w[start + i] + (int64_t)rctc_uniform_bits(words[i], 16u);
            out[start + i] = t >= 0 ? t / 65536 : -((-t + 65535) / 65536);
        }
    }
}
"""


def test_c_words_round_a_compiled_nodes_error_to_the_numpy_bits(tmp_path) -> None:  # noqa: ANN001
    if compiler() is None:
        pytest.skip("no C compiler (set CC or install cc): the C RNG cannot be built")
    (tmp_path / "shim.c").write_text(SHIM)
    lib = build_shared([CSRC / "support" / "philox.c", tmp_path / "shim.c"], tmp_path, "shim")
    i64p = ctypes.POINTER(ctypes.c_int64)
    lib.shim_round_error.argtypes = [i64p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_uint64, ctypes.c_uint32,
                                     ctypes.c_uint32, i64p]
    lib.shim_round_error.restype = None
    # QuantGrad (float errors -> int8) is version 1's lowering; the integer graph rounds with the same words
    node = next(n for n in _mlp(elementwise="float").graph.nodes if n.op_type == "QuantGrad")
    x = (np.random.default_rng(2).standard_normal(3001) * 0.02).astype(np.float32)
    seed, step = 2**63 + 12345, 77
    q, e = KERNELS["QuantGrad"](KernelContext(training=True, seed=seed, step=step), node, x)
    w = np.ascontiguousarray(np.floor(x.astype(np.float64) * 2.0 ** (16 - int(e))).astype(np.int64))
    out = np.zeros_like(w)
    lib.shim_round_error(w.ctypes.data_as(i64p), w.size, 64, seed, step, node.meta["node_id"],
                         out.ctypes.data_as(i64p))
    np.testing.assert_array_equal(out, q.astype(np.int64))


def test_no_kernel_draws_from_numpy_random() -> None:
    """Every random bit of a step comes from ``KernelContext.words``: no module of the runtime's
    kernels (or of its integer algorithms) names ``np.random`` / ``numpy.random``, a generator
    (``.rng``, ``default_rng``) or a bit generator."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "runtime"
    offenders = []
    for path in sorted([*(root / "kernels").glob("*.py"), *(root / "intref").glob("*.py"), root / "executor.py"]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "random" and isinstance(node.value, ast.Name) \
                    and node.value.id in ("np", "numpy"):
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr in ("rng", "default_rng", "bit_generator", "random_raw"):
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("numpy.random"):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, offenders

"""The chunked C of the nodes whose result is larger than a rounding chunk (IntAdd / IntSub,
IntBatchNormalization, IntBatchNormGrad, IntGlobalAveragePoolGrad): one-node graphs past the
1024-element chunk at sizes that leave a partial last chunk and split channels, broadcast and
dense, stochastic and nearest, run by the generated C bit for bit as numpy runs them, with a
scratch block of a chunk (plus the per-channel plan), not of the whole tensor."""

from __future__ import annotations

import numpy as np

from rctc.native.codegen import NativeStep, generate
from rctc.runtime.executor import Executor
from rctc.runtime.kernels import KernelContext
from tests.native.codegen_cases import assert_same
from tests.native.test_codegen_norm_cases import I8, I16, I32, I64, _binary, _e, _graph, _q

BN = (2, 3, 20, 23)  # 2760 elements: channels of 460, chunks of 1024 cross them
BN_C = BN[1]
CASES = {
    "add-bcast": _binary("IntAdd", (2, 3, 20, 21), (2, 3, 1, 1), I8, I16, "stochastic"),
    "add-dense": _binary("IntAdd", (3, 1100), (3, 1100), I8, I8, "nearest"),
    "sub-dense": _binary("IntSub", (2, 1500), (2, 1500), I16, I8, "stochastic"),
    "bn": ("IntBatchNormalization",
           [("x", _q(BN, I8, 30)), ("xe", _e(-3)), ("g", _q((BN_C,), I16, 31, 900)), ("ge", _e(-10)),
            ("b", _q((BN_C,), I16, 32, 900)), ("bee", _e(-11)), ("m", _q((BN_C,), I16, 33)), ("me", _e(-12)),
            ("v", np.abs(_q((BN_C,), I16, 34))), ("ve", _e(-9))],
           [("y", BN, I8), ("ye", (), I32), ("m2", (BN_C,), I16), ("me2", (), I32), ("v2", (BN_C,), I16),
            ("ve2", (), I32)], {"epsilon": 1e-5, "momentum": 0.9, "bits": 8}),
    "bn-grad": ("IntBatchNormGrad",
                [("d", _q(BN, I8, 35)), ("de", _e(-6)), ("x", _q(BN, I8, 30)), ("xe", _e(-3)),
                 ("g", _q((BN_C,), I16, 31, 900)), ("ge", _e(-10))],
                [("dx", BN, I8), ("dxe", (), I32), ("dg", (BN_C,), I64), ("dge", (), I32), ("db", (BN_C,), I64),
                 ("dbe", (), I32)], {"epsilon": 1e-5, "bits": 8, "rounding": "stochastic"}),
    "bn-grad-nearest": ("IntBatchNormGrad",
                        [("d", _q(BN, I8, 36)), ("de", _e(-6)), ("x", _q(BN, I8, 37)), ("xe", _e(-2)),
                         ("g", _q((BN_C,), I16, 38, 900)), ("ge", _e(-10))],
                        [("dx", BN, I8), ("dxe", (), I32), ("dg", (BN_C,), I64), ("dge", (), I32),
                         ("db", (BN_C,), I64), ("dbe", (), I32)], {"epsilon": 1e-3, "bits": 4, "rounding": "nearest"}),
    "gap-grad": ("IntGlobalAveragePoolGrad", [("d", _q((2, 5, 1, 1), I8, 39)), ("de", _e(-5))],
                 [("dx", (2, 5, 17, 15), I8), ("dxe", (), I32)],
                 {"input_shape": [2, 5, 17, 15], "bits": 8, "rounding": "stochastic"}),
}
RUNNING = {"m": "m2", "me": "me2", "v": "v2", "ve": "ve2"}
CHUNK_CALLS = ("rctc_iq_add_range", "rctc_iq_batchnorm_backward_acc", "rctc_iq_round_store")


def test_chunked_nodes_bit_identical_to_numpy(native_env: dict[str, str]) -> None:
    g, feeds = _graph(CASES, tuple(RUNNING))
    g.state_updates.update({f"bn.{s}": f"bn.{new}" for s, new in RUNNING.items()})
    outs = [o.name for n in g.nodes for o in n.outputs]
    prog = generate(g, g.nodes, outs)
    assert all(call in prog.source for call in CHUNK_CALLS)
    # one chunk of int64 and words (12 KB) and BatchNorm's plan: none holds a whole tensor's 12 B an element
    need = dict((name, b) for name, _op, b in prog.scratch_nodes)
    assert max(need.values()) == prog.scratch_bytes <= 12 * 1024 + 9 * 8 * BN_C + 64, need
    assert need["bn"] < 8 * 1024, need  # the train kernel: 9 C + 256 int64
    stored = {nm: g.values[nm].data for nm in prog.state}
    native = NativeStep(prog, stored, env=native_env)
    for seed, step in ((3, 0), (11, 5)):
        ref = Executor(g).run(feeds, outs, KernelContext(training=True, seed=seed, step=step))
        native.load_state(stored)
        got = native.run(feeds, seed=seed, step=step)
        assert_same(got, ref, outs)
        assert_same(got, {s: ref[new] for s, new in prog.updates.items()}, list(prog.updates))

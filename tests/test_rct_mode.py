"""rct mode end to end: state audit, fused updates, determinism, the bitwidth controller."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import rctc
from rctc.cli import main
from rctc.data import load_data
from rctc.ir import Node
from rctc.models import build, path
from rctc.ops import UPDATE_OPS
from rctc.rct_format import load_rct
from rctc.slots import bits_name, exp_name, read_slot

FLOAT_STATE_OK = ("running_mean", "running_var", ".amax")


def _digits(n: int = 256) -> tuple[np.ndarray, np.ndarray]:
    ds = load_data("digits")
    return ds.x[:n], ds.y[:n]


def _audit(g) -> None:  # noqa: ANN001
    """Every trainable parameter is an integer array plus an integer exponent; no float parameter copy."""
    params = g.params()
    assert params
    shapes = {p.shape for p in params}
    for p in params:
        assert np.issubdtype(p.data.dtype, np.signedinteger), p.name
        e = g.value(exp_name(p.name)).data
        assert np.issubdtype(e.dtype, np.integer) and e.shape == ()
        slot = read_slot(g, p)
        qmax = (1 << (slot["bits"] - 1)) - 1
        assert np.abs(p.data.astype(np.int64)).max() <= qmax
    for v in g.state_values():
        if np.issubdtype(v.data.dtype, np.floating):
            assert v.name.endswith(FLOAT_STATE_OK), f"float state {v.name} {v.shape}"
            assert v.kind == "buffer" and (v.shape not in shapes or "running" in v.name)


FUSED = {"sgd": "FusedIntUpdate", "momentum": "FusedIntMomentumUpdate"}
FLOAT_PRODUCTS = {"Conv", "Gemm", "MatMul", "ConvGradInput", "ConvGradWeight", "SGDUpdate", "MomentumUpdate"}


def _products_integer_and_fused(g, optimizer: str) -> None:  # noqa: ANN001
    """The GEMM-class products are integer, every weight's update is fused, no float weight gradient."""
    assert not {n.op_type for n in g.nodes} & FLOAT_PRODUCTS
    for n in g.nodes:
        if n.op_type.startswith("Int") and n.op_type not in ("IntSGDUpdate", "IntMomentumUpdate"):
            assert all(np.issubdtype(v.dtype, np.integer) for v in n.inputs  # the loss's row mask is a batch input
                       if v is not None and (v.producer is not None or v.kind == "param")), n.name
    fused = {n.meta["param"] for n in g.nodes if n.op_type == FUSED[optimizer]}
    weights = {p.name for p in g.params() if len(p.shape) >= 2 and p.name != "embed.weight" and p.name != "pos_embed"}
    assert weights <= fused, weights - fused
    for p in weights:  # no float value of the weight's shape anywhere in the step
        assert not any(v.shape == p.shape for v in g.values.values() if v.kind == "temp"
                       and np.issubdtype(v.dtype, np.floating) and v.producer is not None
                       and v.producer.meta.get("phase") in ("backward", "update")
                       and v.name.startswith(f"grad::{p}")), p


def _float_edges(g) -> list[tuple[Node, Node, str]]:  # noqa: ANN001
    """(producer, consumer, value) of every float32 tensor passed from one op of the step to another."""
    return [(v.producer, n, v.name) for n in g.nodes for v in n.inputs
            if v is not None and v.producer is not None and np.issubdtype(np.dtype(v.dtype), np.floating)]


def _allowed_float_edge(g, prod: Node, cons: Node) -> bool:  # noqa: ANN001
    """The one float edge the integer graph still has (it reads exact integers and feeds no integer
    op): the user's float logits, a ``Dequantize`` producing a graph output, read their bias
    dequantised. No update reads a float gradient: a bias, BatchNorm / LayerNorm parameter or
    embedding is updated from its int64 accumulator (IntAccSGDUpdate / IntAccMomentumUpdate).
    """
    if cons.op_type == "Dequantize" and all(o in g.outputs for o in cons.outputs):
        return prod.op_type == "Dequantize" and np.issubdtype(np.dtype(prod.inputs[0].dtype), np.integer)
    return False


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
@pytest.mark.parametrize("model", ["mlp", "lenet", "resnet8", "tiny_transformer"])
def test_rct_integer_graph_has_no_float_tensor_between_ops(model: str, optimizer: str) -> None:
    """The default integer graph (rewritten from version 1's audit, which allowed float element-wise
    ops): no float islands, and no float tensor passes between two ops of the training step except
    the one named in ``_allowed_float_edge``."""
    m = rctc.compile(build(model), batch_size=4, optimizer=optimizer)
    g = m.graph
    assert g.meta["rct"]["elementwise"] == "integer" and g.meta["float_islands"] == []
    _products_integer_and_fused(g, optimizer)
    bad = [(p.op_type, c.op_type, v) for p, c, v in _float_edges(g) if not _allowed_float_edge(g, p, c)]
    assert not bad, bad
    assert not any(n.op_type in ("QuantAct", "QuantGrad") and n.inputs[0].producer is not None for n in g.nodes)
    _audit(g)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
@pytest.mark.parametrize("model", ["mlp", "lenet", "resnet8", "tiny_transformer"])
def test_rct_float_elementwise_graph_is_integer_only_for_gemms(model: str, optimizer: str) -> None:
    """Version 1's lowering (``--elementwise float``): integer products, float element-wise ops."""
    m = rctc.compile(build(model), batch_size=4, optimizer=optimizer, elementwise="float")
    g = m.graph
    _products_integer_and_fused(g, optimizer)
    assert any(n.op_type == "Dequantize" and n.outputs[0] not in g.outputs and n.outputs[0].uses[0][0]
               .op_type not in UPDATE_OPS for n in g.nodes)  # float element-wise values exist in this lowering
    _audit(g)


def test_state_audit_after_training_and_in_file(tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "m.rct"
    r = CliRunner().invoke(main, ["compile", str(path("lenet")), "-o", str(out), "--batch-size", "16"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["train", str(out), "--data", "digits", "--steps", "30", "--json"])
    assert r.exit_code == 0, r.output
    g = load_rct(out)
    assert g.meta["step"] == 30
    _audit(g)
    r = CliRunner().invoke(main, ["inspect", str(out), "--json"])
    import json

    info = json.loads(r.stdout)
    assert info["mode"] == "rct"
    for row in info["parameters"]:
        assert row["dtype"].startswith("int") and isinstance(row["exponent"], int)
        assert row["min_bits"] <= row["bits"] <= row["max_bits"]
        assert {"name", "shape", "dtype", "bits", "min_bits", "max_bits", "exponent", "trainable"} <= set(row)


def _train_bytes(seed: int, tmp_path, tag: str) -> bytes:  # noqa: ANN001
    x, y = _digits(128)
    m = rctc.compile(build("lenet"), batch_size=16, seed=seed)
    m.train(x, y, steps=12, seed=seed)
    out = tmp_path / f"{tag}.rct"
    m.save(out)
    return out.read_bytes()


def test_same_seed_bit_identical_different_seed_differs(tmp_path) -> None:  # noqa: ANN001
    a = _train_bytes(1, tmp_path, "a")
    b = _train_bytes(1, tmp_path, "b")
    c = _train_bytes(2, tmp_path, "c")
    assert a == b
    assert a != c


def _bits_after(lr: float, **opts) -> tuple[dict[str, int], dict[str, int]]:  # noqa: ANN003
    x, y = _digits(256)
    m = rctc.compile(build("mlp"), batch_size=32, adjust_every=4, **opts)
    before = {p.name: read_slot(m.graph, p)["bits"] for p in m.graph.params()}
    m.train(x, y, steps=40, lr=lr)
    return before, {p.name: read_slot(m.graph, p)["bits"] for p in m.graph.params()}


def test_controller_adds_bits_when_updates_underflow() -> None:
    before, after = _bits_after(1e-5)
    assert all(after[k] > before[k] for k in before), after
    m = rctc.compile(build("mlp"), batch_size=32, adjust_every=4)
    assert m.graph.value(bits_name("fc1.weight")).data.dtype == np.int32


def test_controller_drops_bits_when_updates_are_large() -> None:
    before, after = _bits_after(2.0, bits=12)
    assert sum(after.values()) < sum(before.values()), after
    assert all(after[k] >= 4 for k in after)


def test_controller_logs_changes(tmp_path) -> None:  # noqa: ANN001
    out = tmp_path / "m.rct"
    log = tmp_path / "run.jsonl"
    CliRunner().invoke(main, ["compile", str(path("mlp")), "-o", str(out), "--adjust-every", "2"])
    r = CliRunner().invoke(main, ["train", str(out), "--data", "digits", "--steps", "10", "--lr", "1e-5",
                                  "--log", str(log), "--json"])
    assert r.exit_code == 0, r.output
    import json

    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(rows) == 10 and all("loss" in r and "bits" in r and "gavg" in r for r in rows)
    changes = [c for r in rows for c in r.get("bit_changes", [])]
    assert changes and {"step", "param", "old_bits", "new_bits", "gavg"} <= set(changes[0])


@pytest.mark.parametrize("args,msg", [
    (["--bits", "20"], "--bits 20 is outside"),
    (["--min-bits", "1"], "--min-bits must be >= 2"),
    (["--max-bits", "40"], "--max-bits must be <= 32"),
    (["--act-bits", "1"], "--act-bits must be in 2..16"),
    (["--grad-bits", "17"], "--grad-bits must be in 2..16"),
    (["--bits", "3"], "--bits 3 is outside"),
])
def test_bad_bit_options_exit_2(tmp_path, args: list[str], msg: str) -> None:  # noqa: ANN001
    out = tmp_path / "m.rct"
    r = CliRunner().invoke(main, ["compile", str(path("mlp")), "-o", str(out), *args])
    assert r.exit_code == 2
    assert msg in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_op_without_integer_lowering_is_named(monkeypatch) -> None:  # noqa: ANN001
    from rctc.passes import insert_quant

    monkeypatch.setattr(insert_quant, "RCT_RUNNABLE", insert_quant.RCT_RUNNABLE - {"Relu"})
    with pytest.raises(rctc.RctcError, match=r"no integer lowering.*Relu \(relu1\)"):
        rctc.compile(build("mlp"), batch_size=4)


def test_embedding_reads_integer_rows() -> None:
    g = rctc.compile(build("tiny_transformer"), batch_size=4).graph
    gathers = [n for n in g.nodes if n.op_type == "Gather"]
    assert gathers and all(n.inputs[0].name == "embed.weight" for n in gathers)
    assert not any(n.op_type == "Dequantize" and n.inputs[0].name == "embed.weight" for n in g.nodes)


def _transposed_gemm_model():  # noqa: ANN202 - an onnx.ModelProto
    """x -> Gemm(W1, x^T; transA, alpha 0.5) -> Relu -> Gemm: W1's weight gradient is a transposed
    product and its Dequantize has alpha != 1."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 16)) / 3).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal((4, 16)) / 4).astype(np.float32), "w2")]
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
             helper.make_node("Gemm", ["w1", "xt"], ["h"], transA=1, alpha=0.5),
             helper.make_node("Transpose", ["h"], ["ht"], perm=[1, 0]), helper.make_node("Relu", ["ht"], ["a"]),
             helper.make_node("Gemm", ["a", "w2"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


MOMENTUM_CASES = {
    "mlp": ("mlp", {}),
    "lenet": ("lenet", {}),
    "tiny_transformer": ("tiny_transformer", {}),
    "transposed_alpha_decay_nearest": ("transposed", {"weight_decay": 1e-2, "rounding": "nearest"}),
}


@pytest.mark.parametrize("case", list(MOMENTUM_CASES))
def test_fused_momentum_update_trains_bit_identically_to_the_unfused_graph(
        case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """FusedIntMomentumUpdate forms the integer gradient inside the kernel: the same bits as the
    unfused Int* product -> Dequantize (-> Transpose) -> IntMomentumUpdate chain, step after step
    (parameters, velocities, their exponents and the controller's bitwidths), wherever the
    product fits the 22 bits the unfused update rounds its float gradient to (8-bit operands here)."""
    from rctc.models import input_spec, num_classes
    from rctc.passes.registry import PIPELINES
    from rctc.runtime.trainer import Trainer

    model, extra = MOMENTUM_CASES[case]
    proto = _transposed_gemm_model() if model == "transposed" else build(model)
    shape, dtype, classes = ((8,), np.float32, 4) if model == "transposed" else (
        input_spec(model)[1], input_spec(model)[2], num_classes(model))
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 50, (8, *shape)) if np.dtype(dtype).kind == "i"
         else rng.standard_normal((8, *shape))).astype(dtype)
    y = rng.integers(0, classes, 8)
    mask = np.ones(8, np.float32)
    states = []
    ids: dict[str, int] = {}  # the fused graph's node ids, by node name and by updated parameter
    for fuse in (True, False):
        if not fuse:
            monkeypatch.setitem(PIPELINES, "rct", [p for p in PIPELINES["rct"] if p != "fuse_updates"])
        g = rctc.compile(proto, batch_size=8, optimizer="momentum", adjust_every=2, seed=3, **extra).graph
        fused_nodes = [n for n in g.nodes if n.op_type == "FusedIntMomentumUpdate"]
        assert bool(fused_nodes) == fuse
        # the two graphs number their nodes differently; the unfused one takes the fused one's ids
        # (an update the id of the fused update of its parameter), so both draw the same words
        for n in g.nodes:
            key = f"update:{n.meta['param']}" if "Momentum" in n.op_type else n.name
            if fuse:
                ids[key] = n.meta["node_id"]
            else:
                n.meta["node_id"] = ids.get(key, 1 << 20 | n.meta["node_id"])
        if fuse and model == "transposed":
            w1 = next(n for n in fused_nodes if n.meta["param"] == "w1")
            assert w1.attrs["transpose"] and w1.attrs["alpha"] == 0.5
        t = Trainer(g, seed=3)
        for _ in range(6):
            t.train_step(x, y, mask, 0.05)
        states.append({v.name: np.array(v.data, copy=True) for v in g.state_values()})
    fused, plain = states
    assert fused.keys() == plain.keys() and any(k.endswith(".momentum") for k in fused)
    for k in fused:
        np.testing.assert_array_equal(fused[k], plain[k], err_msg=k)

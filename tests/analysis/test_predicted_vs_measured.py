"""The static prediction against what the runtime executed, on every model in models/ in all modes.

With the bitwidth controller off, the op counts and bytes the runtime counter measures in a
training step must equal the static prediction exactly, and the buffer plan's peak must not
be below the bytes the executor really held. MAC totals are also checked against an
independent count from onnx shape inference on the source model.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

import rctc
from rctc import models
from rctc.analysis.counter import attach_counter
from rctc.analysis.model import CostModel
from rctc.analysis.profiles import load_profile

MODES = ("rct", "qat", "fp32")
BATCH = 4


def _data(name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    _, shape, dtype = models.input_spec(name)
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        x = rng.integers(0, 16, size=(n, *shape)).astype(dtype)
    else:
        x = rng.standard_normal((n, *shape)).astype(dtype)
    return x, rng.integers(0, models.num_classes(name), size=n)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(models.BUILDERS))
def test_measured_counts_equal_prediction(name: str, mode: str) -> None:
    m = rctc.compile(models.build(name), mode=mode, batch_size=BATCH, adjust_every=0)
    prof = load_profile()
    predicted, _ = CostModel(m.graph, prof).predict()
    counter = attach_counter(m.trainer(), prof)
    steps = 1 if name == "resnet20" else 2
    x, y = _data(name, BATCH * steps)
    m.train(x, y, steps=steps, shuffle=False)
    assert counter.steps == steps
    if mode == "rct" and not m.graph.meta["float_islands"]:  # no update reads a float gradient
        assert "IntSGDUpdate" not in {n.op_type for n in m.graph.nodes}
        assert "IntAccSGDUpdate" in {n.op_type for n in m.graph.nodes}
    measured = counter.per_step()
    assert measured.to_dict() == predicted.to_dict()
    assert measured.total_macs() > 0 and measured.total_bytes() > 0
    report = counter.report()["measured"]
    assert report["counts"] == predicted.to_dict()
    assert report["energy_pj_per_step"] == pytest.approx(predicted.energy(prof)["total"])
    # the buffer plan holds at least what the executor really held at any point of the step
    assert 0 < report["live_bytes_peak"] <= m.graph.meta["memory_plan"]["peak_bytes"]


@pytest.mark.parametrize("name", ["mlp", "lenet", "tiny_transformer"])
def test_measured_counts_equal_prediction_with_fused_momentum(name: str) -> None:
    m = rctc.compile(models.build(name), mode="rct", batch_size=BATCH, adjust_every=0, optimizer="momentum")
    ops = {n.op_type for n in m.graph.nodes}
    # weights fused with their product; biases, LayerNorm and the embedding from their accumulators
    assert {"FusedIntMomentumUpdate", "IntAccMomentumUpdate"} <= ops and "IntMomentumUpdate" not in ops
    prof = load_profile()
    predicted, _ = CostModel(m.graph, prof).predict()
    counter = attach_counter(m.trainer(), prof)
    x, y = _data(name, BATCH * 2)
    m.train(x, y, steps=2, shuffle=False)
    assert counter.per_step().to_dict() == predicted.to_dict()


def _forward_macs(model: onnx.ModelProto, batch: int) -> dict[str, int]:
    """Independent reference: forward MACs per Conv / Gemm / MatMul node from onnx shape inference."""
    inp = model.graph.input[0]
    inp.type.tensor_type.shape.dim[0].dim_value = batch
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    out: dict[str, int] = {}
    for n in model.graph.node:
        if n.op_type == "Conv":
            out[n.name] = math.prod(shapes[n.output[0]]) * math.prod(shapes[n.input[1]][1:])
        elif n.op_type in ("Gemm", "MatMul"):
            trans_a = any(a.name == "transA" and a.i for a in n.attribute)
            a = shapes[n.input[0]]
            out[n.name] = math.prod(shapes[n.output[0]]) * (a[0] if trans_a else a[-1])
    return out


@pytest.mark.parametrize("name", ["mlp", "lenet"])
def test_training_macs_against_shape_inference(name: str) -> None:
    """A training step does each product three times (forward, data gradient, weight gradient),
    except the data gradient of the first layer, whose input needs none."""
    fwd = _forward_macs(models.build(name), BATCH)
    first = next(iter(fwd.values()))
    expected = 3 * sum(fwd.values()) - first
    prof = load_profile()
    for mode in MODES:
        m = rctc.compile(models.build(name), mode=mode, batch_size=BATCH)
        counts, _ = CostModel(m.graph, prof).predict()
        assert counts.total_macs() == expected, mode
        if mode == "fp32":
            assert set(counts.macs) == {"fp32*fp32+fp32"}
            assert counts.energy(prof)["gemm"] == pytest.approx(expected * (3.7 + 0.9))
        if mode == "rct":
            assert set(counts.macs) <= {"int8*int8+int32", "int8*int8+int64"}
        if mode == "qat":  # forward products at the fake-quant bits, backward in FP32
            assert counts.macs["int8*int8+int32"] == sum(fwd.values())
            assert counts.macs["fp32*fp32+fp32"] == expected - sum(fwd.values())


@pytest.mark.parametrize("name", ["lenet", "mlp", "mobilenet", "resnet8", "tiny_transformer"])
def test_integer_elementwise_counts_equal_prediction(name: str) -> None:
    """--elementwise integer: activations and errors at their stored widths, each op at its width."""
    m = rctc.compile(models.build(name), mode="rct", elementwise="integer", batch_size=2, adjust_every=0)
    prof = load_profile()
    predicted, _ = CostModel(m.graph, prof).predict()
    counter = attach_counter(m.trainer(), prof)
    x, y = _data(name, 2)
    m.train(x, y, steps=1, shuffle=False)
    assert counter.per_step().to_dict() == predicted.to_dict()
    widths = {w for kinds in predicted.elementwise.values() for w in kinds}
    assert "int8" in widths

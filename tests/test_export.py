"""Export to ONNX (``rctc export --format float|qdq``): onnxruntime against ``rctc predict``.

rct mode, integer from end to end (the default): every requantise is written as rctc rounds it
(exponent from the batch max, nearest half up), so models whose forward ops are exact on the
integers or requantise only (LeNet, MLP) export bit-exact in both formats; models with
BatchNorm / LayerNorm / Softmax / average pools differ from rctc's fixed-point algorithms by
their error bounds, which a rounding near a tie can turn into a quantisation step: measured
<= 1.2% of max |logit| (ResNet-8 0.81%, MobileNet 0.45%, tiny transformer 1.19%), tested at
<= 2%, with argmax agreement >= 99% of samples (measured 100%).
rct ``--elementwise float`` (version 1's lowering): the qdq export reproduces ``predict``
exactly under onnxruntime's default optimisations (so argmax agrees on every sample); the
float export agrees within 1e-4 relative. For models with BatchNormalization the float comparison disables onnxruntime's
ConvBNFusion: folding BatchNorm into float Conv weights re-rounds them, and the next
activation quantisation can turn a 1-ulp change into one quantisation step (documented in
rctc/export.py). qat mode quantises activations with a batch-max scale, so the comparison
feeds the same batches; fp32 mode is plain float.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import rctc
from rctc.cli import main
from rctc.data import load_data
from rctc.errors import RctcError

MODELS = Path(__file__).resolve().parents[1] / "models"


def _session(path: Path, disabled: list[str] | None = None, level: str = "all") -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if level == "none":
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled or [])


def _run(sess: ort.InferenceSession, x: np.ndarray, batch: int) -> np.ndarray:
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def _within_integer_tolerance(got: np.ndarray, ref: np.ndarray) -> bool:
    """The stated export tolerance of a non-exact integer graph: max |diff| at most 2% of max |logit|
    or two steps of the logits' own quantisation grid (their exponent), whichever is larger: an
    export that rounds one tie differently moves a logit by one step, which small logits make > 2%."""
    steps = np.diff(np.unique(ref))
    step = float(np.min(steps)) if steps.size else 0.0
    return float(np.max(np.abs(got - ref))) <= max(0.02 * float(np.max(np.abs(ref))), 2 * step)


def _trained(name: str, mode: str, steps: int, batch: int = 32, n: int = 64, elementwise: str = "integer"
             ) -> tuple[rctc.CompiledModel, np.ndarray]:
    m = rctc.compile(MODELS / f"{name}.onnx", mode=mode, batch_size=batch, adjust_every=2, elementwise=elementwise)
    v = m.graph.value(m.input_name)
    if name in ("mlp", "lenet"):
        ds = load_data("digits:train")
        m.train(ds.x, ds.y, steps=steps, lr=0.1)
        return m, m._x(load_data("digits:test").x, "digits:test")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, (n, *v.shape[1:])) if v.dtype.kind == "i" else \
        rng.standard_normal((n, *v.shape[1:])).astype(np.float32)
    y = rng.integers(0, int(m.graph.meta["num_classes"]), n)
    m.train(x, y, steps=steps, lr=0.02)
    return m, m._x(x, "random")


RCT_CASES = [("lenet", 40, 32), ("mlp", 40, 32), ("resnet8", 3, 8), ("mobilenet", 3, 8), ("tiny_transformer", 4, 8)]


#: integer graphs exported bit-exact (every forward op exact on the integers or a requantise with its bias
#: rounded to the accumulator's grid, and every accumulator below 2^24, where onnxruntime's float32 products
#: are exact). LeNet was held to the tolerance below until the export chose the requantise exponent as rctc
#: does for a batch max in (qmax, qmax + 1/2) last bits (one finer) and rounded the bias like rctc.
EXACT_INTEGER = {"mlp", "lenet"}


@pytest.mark.parametrize(("name", "steps", "batch"), RCT_CASES)
def test_rct_export_matches_predict(tmp_path: Path, name: str, steps: int, batch: int) -> None:
    """The default integer graph: bit-exact where rctc's forward is exact or a requantise, else
    within 2% of max |logit| with argmax agreeing on >= 99% of samples (module docstring)."""
    # the transformer's logits are close together: 64 samples would make "99%" mean "all", so it
    # is measured on 512 (its export agrees on 99.2% of them, 508 / 512)
    m, x = _trained(name, "rct", steps, batch, n=512 if name == "tiny_transformer" else 64)
    assert m.graph.meta["rct"]["elementwise"] == "integer"
    ref = m.predict(x)["logits"]
    for fmt in ("qdq", "float"):
        m.export(tmp_path / f"{fmt}.onnx", fmt)
        got = _run(_session(tmp_path / f"{fmt}.onnx"), x, batch)
        if name in EXACT_INTEGER:
            assert np.array_equal(got, ref), (fmt, _rel(got, ref))
        assert _within_integer_tolerance(got, ref), (fmt, _rel(got, ref))
        assert np.mean(got.argmax(-1) == ref.argmax(-1)) >= 0.99, fmt


@pytest.mark.parametrize(("name", "steps", "batch"), RCT_CASES[1:4])
def test_rct_float_elementwise_export_matches_predict(tmp_path: Path, name: str, steps: int, batch: int) -> None:
    """Version 1's lowering (``--elementwise float``): qdq reproduces predict, float within 1e-4."""
    m, x = _trained(name, "rct", steps, batch, elementwise="float")
    ref = m.predict(x)["logits"]
    has_bn = any(n.op_type == "BatchNormalization" for n in m.graph.nodes)
    m.export(tmp_path / "q.onnx", "qdq")
    got = _run(_session(tmp_path / "q.onnx"), x, batch)
    assert np.array_equal(got.argmax(-1), ref.argmax(-1))
    assert _rel(got, ref) <= 1e-4
    m.export(tmp_path / "f.onnx", "float")
    got = _run(_session(tmp_path / "f.onnx", ["ConvBNFusion"] if has_bn else None), x, batch)
    assert _rel(got, ref) <= 1e-4
    assert np.array_equal(got.argmax(-1), ref.argmax(-1))


def test_float_export_structure_and_names(tmp_path: Path) -> None:
    m, _ = _trained("resnet8", "rct", 1, 8, 16)
    src = onnx.load(str(MODELS / "resnet8.onnx"))
    m.export(tmp_path / "f.onnx", "float")
    model = onnx.load(str(tmp_path / "f.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 18
    assert [i.name for i in model.graph.input] == [i.name for i in src.graph.input]
    assert [o.name for o in model.graph.output] == [o.name for o in src.graph.output]
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    src_names = {t.name for t in src.graph.initializer}
    params = [p.name for p in m.graph.params()]
    assert params and set(params) <= set(inits) and set(params) <= src_names
    for p in m.graph.params():  # float weights: q * 2^exp exactly
        exp = int(m.graph.value(f"{p.name}.exp").data)
        np.testing.assert_array_equal(inits[p.name], np.ldexp(p.data.astype(np.float64), exp).astype(np.float32))
    ops = [n.op_type for n in model.graph.node]
    assert "Dropout" not in ops and not any(n.domain for n in model.graph.node)
    assert all(len(n.output) == 1 for n in model.graph.node if n.op_type == "BatchNormalization")
    assert "SoftmaxCrossEntropy" not in ops and "labels" not in {i.name for i in model.graph.input}


@pytest.mark.parametrize("mode", ["rct", "qat"])
def test_float_export_holds_no_quantize_or_dequantize(tmp_path: Path, mode: str) -> None:
    """``--format float`` is a plain float model; only ``qdq`` has QuantizeLinear / DequantizeLinear."""
    m, x = _trained("lenet", mode, 5)
    ref = m.predict(x)["logits"]
    m.export(tmp_path / "f.onnx", "float")
    model = onnx.load(str(tmp_path / "f.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"QuantizeLinear", "DequantizeLinear"}, sorted(ops)
    assert all(t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64) for t in model.graph.initializer)
    assert {p.name for p in m.graph.params()} <= {t.name for t in model.graph.initializer}
    level = "none" if mode == "qat" else "all"  # qat: batch-max scales, the same batches, no rewrites
    got = _run(_session(tmp_path / "f.onnx", level=level), x, 32)
    assert np.array_equal(got.argmax(-1), ref.argmax(-1))
    assert _rel(got, ref) <= (1e-4 if mode == "rct" else 1e-5)
    m.export(tmp_path / "q.onnx", "qdq")
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}


def test_qdq_export_integer_weights(tmp_path: Path) -> None:
    m, _ = _trained("mlp", "rct", 30)
    m.export(tmp_path / "q.onnx", "qdq")
    model = onnx.load(str(tmp_path / "q.onnx"))
    assert model.opset_import[0].version == 21
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    pmap = json.loads({p.key: p.value for p in model.metadata_props}["rctc.parameters"])
    assert set(pmap) == {p.name for p in m.graph.params()}
    for p in m.graph.params():
        info = pmap[p.name]
        bits = int(m.graph.value(f"{p.name}.bits").data)
        q = inits[info["quantized"]]
        assert info["quantized"] == f"{p.name}_quantized" and info["bits"] == bits
        assert q.dtype == (np.int8 if bits <= 8 else np.int16)
        np.testing.assert_array_equal(q, p.data)
        assert inits[info["scale"]] == np.float32(2.0 ** info["exp"])
        assert p.name not in inits  # the float tensor is DequantizeLinear's output
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def test_fp32_and_qat_exports(tmp_path: Path) -> None:
    for mode in ("fp32", "qat"):
        m, x = _trained("lenet", mode, 10)
        ref = m.predict(x)["logits"]
        m.export(tmp_path / f"{mode}.onnx", "float")
        assert _rel(_run(_session(tmp_path / f"{mode}.onnx"), x, 32), ref) <= 1e-5
        if mode == "qat":  # batch-max activation scales: same batches, bit-exact without graph rewrites
            m.export(tmp_path / "qat_qdq.onnx", "qdq")
            assert np.array_equal(_run(_session(tmp_path / "qat_qdq.onnx", level="none"), x, 32), ref)
            assert np.array_equal(_run(_session(tmp_path / f"{mode}.onnx", level="none"), x, 32), ref)
        else:
            with pytest.raises(RctcError, match="qdq needs"):
                m.export(tmp_path / "bad.onnx", "qdq")


def test_export_cli(tmp_path: Path) -> None:
    model = tmp_path / "mlp.rct"
    r = CliRunner().invoke(main, ["compile", str(MODELS / "mlp.onnx"), "-o", str(model), "--mode", "fp32"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["export", str(model), "-o", str(tmp_path / "m.onnx"), "--format", "qdq"])
    assert r.exit_code == 2 and r.stderr.startswith("rctc: error:") and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()
    r = CliRunner().invoke(main, ["export", str(model), "-o", str(tmp_path / "m.onnx"), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["format"] == "float"
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")), full_check=True)

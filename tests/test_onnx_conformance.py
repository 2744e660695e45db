"""ONNX's own operator conformance cases through rctc's public compile + predict, in fp32, qat and rct.

The cases: every node case of ``onnx.backend.test.case.node.collect_testcases`` (the suite
onnxruntime runs; one small model, its inputs and the outputs onnx's numpy reference computed)
whose ops are all ONNX ops of ``rctc ops``. Each runs once per mode through ``rctc.compile``
(``loss="mse"``: the loss is not part of predict) and ``CompiledModel.predict``, no subprocess.

Adaptation (what the test changes, and why it is honest):

* ``predict`` takes one input, the model's data: the first float32 input (else the first
  input) stays the runtime input; every other input becomes an initializer holding the case's
  own value (a second operand, a weight, Reshape's shape, Dropout's ratio), as in a real model,
  where such operands are weights or constants. A constant of more than one element in a
  parameter slot becomes a parameter, initialised to that value: predict reads it unchanged.
* The batch is the runtime input's first dimension (1 for a 0-d input, fed as one sample).
* Models of IR version < 4 get IR 4 (an initializer that is not a graph input is IR-4 form).
* Dropout with a constant ``training_mode=1``: rctc switches dropout itself (it drops in
  ``train`` only; predict / eval / export are inference, whatever the file says, as for
  BatchNormalization), so these cases are compared with onnx's reference evaluator on the same
  model with ``training_mode=0`` (the case's expectation is a random mask from numpy's RNG).

Tolerances:

* fp32: the case's own ``rtol`` / ``atol``.
* qat: the case's own, except for cases with a product qat fake-quantises (Conv, ConvTranspose,
  Gemm, MatMul: ``rctc.ops.FAKE_QUANT_PRODUCTS``), whose operands are rounded to ``bits`` by design;
  those take the rct tolerance. (Conv cases still meet the case's tolerance: their operands are
  small integers, exact at 8 bits.)
* rct: ``|got - want| <= atol + rtol |want| + RCT_LSBS * 2^(1 - act_bits) * S``, i.e. the case's
  tolerance plus ``RCT_LSBS`` = 4 steps at ``act_bits`` = 8 of the output's scale ``S`` (3.1 %
  of it): the values between integer ops are ``act_bits``-bit integers with a per-tensor
  power-of-two exponent, each integer op rounds once, and a product rounds both operands
  (weights at ``bits``). ``S`` is ``max|want|``; for a product (bilinear, so its rounding errors
  add up over the operands' magnitudes, not over the possibly cancelled result) it is the
  largest output of the same model on the operands' absolute values (onnx's reference evaluator).
  ``RCT_COARSE`` lists the cases that exceed it, each
  with the reason (an input range far wider than the output's); they must still run, give
  finite values of the right shape and stay outside the bound (so the list cannot go stale).

Refusals: a case rctc refuses must raise one ``RctcError`` of one line containing a phrase the op
table states (``rctc ops``): a ``limits`` phrase of an op of the case (its definition) or one of
``rctc.ops.limits.GENERAL_LIMITS``. Anything else (another exception, a wrong value) fails.

Counts (onnx 1.23.2: 712 cases run in each mode; ``EXPECTED``, checked by the last test when the
whole module runs; ``pytest -s`` prints them): fp32 555 pass, 157 refused; qat 555 pass, 157
refused; rct 554 pass, 1 coarse (``RCT_COARSE``), 157 refused. The refusals, by the phrase of the
op table they give: an unsupported element type 107 (Cast / CastLike to or from bfloat16, int2 /
int4, float8 / float4, strings), Resize 23 (cubic 11, tf_crop_and_resize 4,
keep_aspect_ratio_policy 4, half_pixel_symmetric 2, antialias 2), NaN / Inf data 10 (Cast of
NaN / Inf), a zero-size batch 6, a type opset 18 lacks 4 (bool ReduceMax / ReduceMin, float16
Celu), sequence / optional values 2, MaxPool's Indices output 2, BatchNormalization reading its
training-mode outputs 2, Pad mode wrap 1.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import rctc
from rctc.errors import RctcError
from rctc.ops import FAKE_QUANT_PRODUCTS, get
from rctc.ops.limits import GENERAL_LIMITS
from rctc.ops.table import operator_table

MODES = ("fp32", "qat", "rct")
ACT_BITS = 8
RCT_LSBS = 4
#: cases beyond the rct tolerance: the measured reason (checked to stay beyond it)
RCT_COARSE: dict[str, str] = {
    "test_softmax_large_number": "logits up to 10003 at 8 bits: a step of 78 merges logits 1 apart",
}
#: outcome counts per mode of the whole module (onnx 1.23.2)
EXPECTED: dict[str, dict[str, int]] = {
    "fp32": {"pass": 555, "refused": 157},
    "qat": {"pass": 555, "refused": 157},
    "rct": {"pass": 554, "refused": 157, "coarse": 1},
}
MIN_CASES = 600  # onnx 1.23 has 712 such cases; far fewer means the collection broke

ONNX_OPS = frozenset(r["op_type"] for r in operator_table() if r["domain"] == "ai.onnx")


def _collect() -> list:
    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators' own numpy warnings
        if hasattr(node_cases, "_TargetOpType"):
            node_cases._TargetOpType = None  # a previous collect_testcases(op) may have set a filter
        found = node_cases.collect_testcases(None)
    seen: set[str] = set()
    out = []
    for c in found:
        if c.kind == "node" and c.name not in seen and {n.op_type for n in c.model.graph.node} <= ONNX_OPS:
            seen.add(c.name)
            out.append(c)
    return out


CASES = _collect()
RESULTS: dict[str, Counter] = {m: Counter() for m in MODES}


def _array(a: object) -> np.ndarray:
    return numpy_helper.to_array(a) if isinstance(a, onnx.TensorProto) else np.asarray(a)


@dataclass
class Adapted:
    model: onnx.ModelProto
    x: np.ndarray | None
    expected: list[np.ndarray]
    batch: int


def _adapt(case) -> Adapted:  # noqa: ANN001
    """The case's model with one runtime input (see the module docstring) and its expected outputs."""
    m = onnx.ModelProto()
    m.CopyFrom(case.model)
    m.ir_version = max(m.ir_version, 4)
    inputs, expected = case.data_sets[0]
    feeds = [(vi, _array(a)) for vi, a in zip(m.graph.input, inputs)]
    run = next((i for i, (_, a) in enumerate(feeds) if a.dtype == np.float32), 0 if feeds else None)
    keep = [vi for i, (vi, _) in enumerate(feeds) if i == run]
    consts = [numpy_helper.from_array(a, vi.name) for i, (vi, a) in enumerate(feeds) if i != run]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    m.graph.initializer.extend(consts)
    x = feeds[run][1] if run is not None else None
    want = [_array(a) for a in expected]
    if _training_dropout(m):
        want = _inference_reference(m, x)
    batch = int(x.shape[0]) if x is not None and x.ndim else 1
    return Adapted(m, x, want, max(batch, 1))


def _training_dropout(m: onnx.ModelProto) -> bool:
    """Set a constant training_mode=1 of a Dropout to 0; whether there was one."""
    inits = {t.name: t for t in m.graph.initializer}
    changed = False
    for n in m.graph.node:
        if n.op_type == "Dropout" and len(n.input) > 2 and n.input[2] in inits:
            t = inits[n.input[2]]
            if bool(numpy_helper.to_array(t)):
                t.CopyFrom(numpy_helper.from_array(np.array(False), t.name))
                changed = True
    return changed


def _inference_reference(m: onnx.ModelProto, x: np.ndarray | None) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    feeds = {m.graph.input[0].name: x} if x is not None else {}
    return [np.asarray(a) for a in ReferenceEvaluator(m).run(None, feeds)]


def _limits(case) -> list[str]:  # noqa: ANN001
    return [*GENERAL_LIMITS, *(p for op in {n.op_type for n in case.model.graph.node} for p in get(op).limits)]


def _quantised(case, mode: str) -> bool:  # noqa: ANN001
    return mode == "rct" or (mode == "qat" and any(n.op_type in FAKE_QUANT_PRODUCTS for n in case.model.graph.node))


def _magnitude(a: Adapted, case) -> list[float]:  # noqa: ANN001
    """Per output, the scale a quantisation step is relative to: max|want|, and for a product
    (bilinear: its rounding errors add up over the operands' magnitudes, not the cancelled sum)
    the largest output of the same model on the operands' absolute values (onnx's reference)."""
    scale = [float(np.max(np.abs(w), initial=0.0)) if w.dtype.kind in "fc" else 0.0 for w in a.expected]
    if not any(n.op_type in FAKE_QUANT_PRODUCTS for n in case.model.graph.node):
        return scale
    from onnx.reference import ReferenceEvaluator

    m = onnx.ModelProto()
    m.CopyFrom(a.model)
    for t in m.graph.initializer:
        arr = numpy_helper.to_array(t)
        if arr.dtype.kind == "f":
            t.CopyFrom(numpy_helper.from_array(np.abs(arr), t.name))
    feeds = {m.graph.input[0].name: np.abs(a.x)} if a.x is not None else {}
    mags = ReferenceEvaluator(m).run(None, feeds)
    return [max(s, float(np.max(np.abs(np.asarray(g)), initial=0.0))) for s, g in zip(scale, mags)]


def _excess(got: np.ndarray, want: np.ndarray, rtol: float, atol: float, scale: float | None) -> float:
    """max(|got - want| - bound) (<= 0: within the tolerance); NaNs must sit where they are expected."""
    if want.dtype.kind not in "fc":
        return 0.0 if np.array_equal(got, want) else float("inf")
    g, w = got.astype(np.float64), want.astype(np.float64)
    if not np.array_equal(np.isnan(g), np.isnan(w)):
        return float("inf")
    finite = np.isfinite(w)
    if not np.array_equal(g[~finite], w[~finite]):
        return float("inf")
    if not finite.any():
        return 0.0
    g, w = g[finite], w[finite]
    bound = atol + rtol * np.abs(w)
    if scale is not None:
        bound = bound + RCT_LSBS * 2.0 ** (1 - ACT_BITS) * scale
    return float(np.max(np.abs(g - w) - bound))


def _run(case, mode: str) -> tuple[str, str]:  # noqa: ANN001
    """('pass' | 'refused' | 'coarse', detail); raises AssertionError on a wrong answer."""
    a = _adapt(case)
    try:
        cm = rctc.compile(a.model, mode=mode, batch_size=a.batch, loss="mse", act_bits=ACT_BITS)
        x = a.x if a.x is None or a.x.ndim else a.x.reshape(1)
        out = cm.predict(x, source="data")
    except RctcError as exc:
        msg = str(exc)
        assert len(msg.splitlines()) == 1, f"refusal of more than one line: {msg!r}"
        assert any(p in msg for p in _limits(case)), f"refusal the op table does not state: {msg}"
        return "refused", msg
    names = [o.name for o in a.model.graph.output]
    scales = _magnitude(a, case) if _quantised(case, mode) else [None] * len(names)
    worst = -np.inf
    for name, want, scale in zip(names, a.expected, scales):
        got = out[name]
        assert got.dtype == want.dtype, f"{mode} {name}: dtype {got.dtype}, expected {want.dtype}"
        assert got.shape == want.shape, f"{mode} {name}: shape {got.shape}, expected {want.shape}"
        worst = max(worst, _excess(got, want, case.rtol, case.atol, scale))
    if case.name in RCT_COARSE and mode == "rct":
        assert all(np.all(np.isfinite(out[n])) for n in names), "a coarse case gave non-finite values"
        assert worst > 0, f"{case.name} now meets the rct tolerance: remove it from RCT_COARSE"
        return "coarse", RCT_COARSE[case.name]
    assert worst <= 0, f"{mode}: beyond the tolerance by {worst:.3g}"
    return "pass", ""


def test_enough_cases_collected() -> None:
    assert len(CASES) >= MIN_CASES, f"only {len(CASES)} backend node cases of rctc's ops found"
    assert set(RCT_COARSE) <= {c.name for c in CASES}, "RCT_COARSE lists a case that does not exist"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_conformance_case(case, mode: str) -> None:  # noqa: ANN001
    outcome, _ = _run(case, mode)
    RESULTS[mode][outcome] += 1


def test_outcome_counts() -> None:
    """The counts of the whole module (skipped when only some cases ran)."""
    ran = {m: sum(c.values()) for m, c in RESULTS.items()}
    print({m: dict(c) for m, c in RESULTS.items()})
    if any(n != len(CASES) for n in ran.values()):
        pytest.skip(f"only part of the module ran: {ran}")
    assert {m: dict(c) for m, c in RESULTS.items()} == EXPECTED

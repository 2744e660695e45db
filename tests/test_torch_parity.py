"""One SGD step of a compiled fp32 model equals one torch.optim.SGD step of its PyTorch twin.

Both sides run in float64 (the ONNX model is converted to double), so the comparison of the
parameter updates at rtol 1e-5 checks the gradients, not float32 rounding.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from torch_twins import torch_forward

import rctc
from rctc.models import build, input_spec, num_classes

torch = pytest.importorskip("torch")

BATCH = 8
LR = 0.1


def _to_double(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i, t in enumerate(m.graph.initializer):
        if t.data_type == onnx.TensorProto.FLOAT:
            m.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name)
            )
    for vi in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    return m


@pytest.mark.parametrize("name", ["mlp", "lenet", "resnet8", "tiny_transformer"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_one_step_matches_torch(name: str, optimizer: str) -> None:
    model = _to_double(build(name, seed=3))
    init = {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    _, shape, dtype = input_spec(name)
    if np.issubdtype(dtype, np.integer):
        x = rng.integers(0, 64, (BATCH, *shape)).astype(np.int64)
    else:
        x = rng.standard_normal((BATCH, *shape))
    y = rng.integers(0, num_classes(name), BATCH)

    # PyTorch's habits: sgd means momentum 0 unless given; two steps so a momentum mix-up would show
    mom = {"momentum": 0.9} if optimizer == "momentum" else {}
    m = rctc.compile(model, mode="fp32", batch_size=BATCH, optimizer=optimizer, weight_decay=1e-3, **mom)
    steps = 2
    m.train(x, y, steps=steps, lr=LR, shuffle=False)

    params = {
        k: torch.tensor(
            v, requires_grad=not k.endswith(("running_mean", "running_var")) and v.ndim > 0 and k not in ("attn.scale",)
        )
        for k, v in init.items()
        if v.dtype == np.float64
    }
    consts = {k: torch.tensor(v) for k, v in init.items() if v.dtype != np.float64}
    trainable = [p for p in params.values() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=LR, momentum=0.9 if optimizer == "momentum" else 0.0, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        logits = torch_forward(name, {**params, **consts}, x, training=True)
        torch.nn.functional.cross_entropy(logits, torch.tensor(y)).backward()
        opt.step()
    checked = 0
    for k, p in params.items():
        if not p.requires_grad:
            continue
        got = m.graph.value(k).data - init[k]
        want = p.detach().numpy() - init[k]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-10, err_msg=k)
        checked += 1
    assert checked >= 6
    for k in params:
        if k.endswith("running_mean"):  # ONNX momentum 0.9 == torch momentum 0.1
            np.testing.assert_allclose(m.graph.value(k).data, params[k].numpy(), rtol=1e-6, atol=1e-12)

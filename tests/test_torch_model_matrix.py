"""Fifteen PyTorch models of the kinds edge users export (issue 14's matrix), half through each
exporter, every one with a dynamic batch: compile in rct and fp32, train a few steps, export, and
run the export in onnxruntime at batch 1 and 7 against ``rctc predict`` of the trained model.

References: onnxruntime on the exported file (fp32: within 1e-4 of the largest logit; rct: its
integer predict against the float export of the same integer weights, within 5% of the largest
logit and the same argmax on most samples), and PyTorch's own forward for the untrained file.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import rctc

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional


class MlpNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.n, self.d, self.b = nn.Linear(12, 16), nn.LayerNorm(16), nn.Dropout(0.1), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.d(F.gelu(self.n(self.a(x)))))


class ConvBn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.c2, self.b2 = nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 2 * 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.b1(self.c1(x))), 2)
        h = F.max_pool2d(F.relu(self.b2(self.c2(h))), 2)
        return self.fc(torch.flatten(h, 1))


class Separable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dw, self.pw, self.bn = nn.Conv2d(3, 3, 3, padding=1, groups=3), nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.bn(self.pw(F.relu6(self.dw(x)))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.c1, self.b1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        h = F.relu(h + self.b2(self.c2(F.relu(self.b1(self.c1(h))))))
        return self.fc(h.mean((2, 3)))


class Sensor1d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.bn = nn.Conv1d(3, 8, 5, padding=2), nn.BatchNorm1d(8)
        self.c2 = nn.Conv1d(8, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool1d(F.relu(self.bn(self.c1(x))), 2)
        return self.fc(torch.flatten(F.relu(self.c2(h)), 1))


class KwsGru(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.fc = nn.GRU(10, 12, batch_first=True), nn.Linear(12, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x)[0][:, -1])


class BiLstm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.fc = nn.LSTM(10, 8, batch_first=True, bidirectional=True), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x)[0].mean(1))


class TinyUnet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.down = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 2, stride=2)
        self.mix = nn.Conv2d(5, 4, 3, padding=1)
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = F.relu(self.down(x))
        u = torch.cat([F.relu(self.up(d)), x], dim=1)
        h = F.relu(self.mix(u)) + F.interpolate(d, scale_factor=2.0, mode="nearest").mean(1, keepdim=True)
        return self.fc(h.mean((2, 3)))


class GroupNormCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c, self.g, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.g(self.c(x))).mean((2, 3)))


class AttentionBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.att, self.n, self.fc = nn.MultiheadAttention(8, 2, batch_first=True), nn.LayerNorm(8), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.n(x + self.att(x, x, x, need_weights=False)[0]).mean(1))


class EmbedBag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.e, self.fc = nn.Embedding(20, 8), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(self.e(x).mean(1)))


class Activations(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.p, self.b, self.c = nn.Linear(12, 16), nn.PReLU(16), nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.b(F.leaky_relu(self.p(self.a(x)), 0.1)))
        return self.c(F.hardswish(h) + torch.sigmoid(h))


class UpsampleBilinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, padding=1), \
            nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.c1(x)), scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.fc(F.relu(self.c2(h)).amax((2, 3)))


class SqueezeExcite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c, self.s1, self.s2, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.Linear(8, 4), nn.Linear(4, 8), \
            nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.c(x))
        w = torch.sigmoid(self.s2(F.relu(self.s1(h.mean((2, 3))))))
        return self.fc((h * w[:, :, None, None]).mean((2, 3)))


class SplitGate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.fc = nn.Linear(12, 16), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = torch.chunk(self.a(x), 2, dim=1)
        return self.fc(torch.where(left > 0, left * torch.sigmoid(right), torch.maximum(left, right)))


#: (module, input shape without batch, integer input?) -- alternating exporters below
MODELS: list[tuple[type[nn.Module], tuple[int, ...], bool]] = [
    (MlpNorm, (12,), False), (ConvBn, (1, 8, 8), False), (Separable, (3, 8, 8), False),
    (Residual, (3, 8, 8), False), (Sensor1d, (3, 16), False), (KwsGru, (6, 10), False),
    (BiLstm, (5, 10), False), (TinyUnet, (1, 8, 8), False), (GroupNormCnn, (3, 6, 6), False),
    (AttentionBlock, (5, 8), False), (EmbedBag, (7,), True), (Activations, (12,), False),
    (UpsampleBilinear, (3, 8, 8), False), (SqueezeExcite, (3, 6, 6), False), (SplitGate, (12,), False),
]
CASES = [(cls, shape, ints, k % 2 == 1) for k, (cls, shape, ints) in enumerate(MODELS)]
BATCH = 4


def _ids(case: tuple) -> str:
    return f"{case[0].__name__}-{'dynamo' if case[3] else 'torchscript'}"


def _inputs(shape: tuple[int, ...], ints: bool, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if ints:
        return rng.integers(0, 20, (n, *shape)).astype(np.int64)
    return rng.standard_normal((n, *shape)).astype(np.float32)


def _export(module: nn.Module, x: torch.Tensor, path: Path, dynamo: bool) -> None:
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dynamo:
                torch.onnx.export(module, (x,), str(path), input_names=["x"], output_names=["logits"], dynamo=True,
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},), verbose=False)
            else:
                torch.onnx.export(module, (x,), str(path), input_names=["x"], output_names=["logits"], dynamo=False,
                                  opset_version=17, dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    finally:
        logging.disable(logging.NOTSET)


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_compiles_trains_and_exports(tmp_path: Path, case: tuple) -> None:
    cls, shape, ints, dynamo = case
    torch.manual_seed(0)
    module = cls().eval()
    src = tmp_path / "model.onnx"
    x = _inputs(shape, ints, 16, 0)
    _export(module, torch.from_numpy(x[:BATCH]), src, dynamo)
    want = module(torch.from_numpy(x[:7])).detach().numpy()
    np.testing.assert_allclose(_ort(src, x[:7]), want, rtol=1e-4, atol=1e-5)  # the file is what PyTorch computes
    y = np.random.default_rng(1).integers(0, 4, 16)
    for mode in ("fp32", "rct"):
        m = rctc.compile(src, mode=mode, batch_size=BATCH)
        if mode == "fp32":
            np.testing.assert_allclose(m.predict(x[:7])["logits"], want, rtol=1e-4, atol=1e-5)
        first = m.evaluate(x, y)["loss"]
        m.train(x, y, steps=6, lr=0.05)
        assert np.isfinite(m.evaluate(x, y)["loss"]) and m.evaluate(x, y)["loss"] < first + 0.05, mode
        out = tmp_path / f"{mode}.onnx"
        m.export(out, "float")
        for n in (1, 7):
            xs = _inputs(shape, ints, n, 2)
            got, ref = _ort(out, xs), m.predict(xs)["logits"]
            scale = float(np.abs(ref).max()) or 1.0
            if mode == "fp32":
                np.testing.assert_allclose(got, ref, atol=1e-4 * scale, rtol=1e-4, err_msg=f"{mode} batch {n}")
            else:
                assert float(np.abs(got - ref).max()) <= 0.05 * scale, f"rct batch {n}"

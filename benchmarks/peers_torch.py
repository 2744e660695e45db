"""PyTorch peers: FP32 training and eager-mode QAT training of the six rctc models.

The ``nn.Module`` twins mirror the specs of ``rctc.models.build`` layer for
layer. Each twin carries ``QuantStub``/``DeQuantStub`` and ``FloatFunctional``
adds (identity-cost when no qconfig is set), so the same class serves FP32 and
QAT. One training step = forward + CrossEntropyLoss + backward +
SGD(lr=0.01).step() + zero_grad, 2 intra-op threads.

Run one peer (prints one JSON line; use ``_common.run_in_subprocess``)::

    python benchmarks/peers_torch.py --peer torch_qat --model resnet8 --batch 32
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.ao.quantization as tq
from torch import nn
from torch.ao.nn.intrinsic import LinearReLU
from torch.ao.nn.quantized import FloatFunctional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

#: name -> (input shape without batch, input dtype, number of classes); vocab for tokens.
SPECS: dict[str, tuple[tuple[int, ...], str, int]] = {
    "mlp": ((64,), "float32", 10),
    "lenet": ((1, 8, 8), "float32", 10),
    "resnet8": ((3, 32, 32), "float32", 10),
    "resnet20": ((3, 32, 32), "float32", 10),
    "mobilenet": ((3, 32, 32), "float32", 10),
    "tiny_transformer": ((16,), "int64", 4),
}
VOCAB = 64

# torch.ao.quantization eager mode is deprecated but is the documented eager QAT API.
warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch")
warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated.*")


class MLP(nn.Module):
    """x[N,64] -> fc1(64) ReLU -> fc2(32) ReLU -> fc3(10)."""

    def __init__(self) -> None:
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.fc1, self.relu1 = nn.Linear(64, 64), nn.ReLU()
        self.fc2, self.relu2 = nn.Linear(64, 32), nn.ReLU()
        self.fc3 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.fc1(self.quant(x)))
        x = self.relu2(self.fc2(x))
        return self.dequant(self.fc3(x))

    def fuse_groups(self) -> list[list[str]]:
        return [["fc1", "relu1"], ["fc2", "relu2"]]


class LeNet(nn.Module):
    """x[N,1,8,8] -> conv8 ReLU pool -> conv16 ReLU pool -> fc(64,32) ReLU -> fc(32,10)."""

    def __init__(self) -> None:
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv1, self.relu1, self.pool1 = nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.conv2, self.relu2, self.pool2 = nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.fc1, self.relu3 = nn.Linear(64, 32), nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(self.quant(x))))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(torch.flatten(x, 1)))
        return self.dequant(self.fc2(x))

    def fuse_groups(self) -> list[list[str]]:
        return [["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"]]


class BasicBlock(nn.Module):
    """conv3x3-bn-relu-conv3x3-bn + shortcut (identity or conv1x1-bn), add, relu."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1, self.relu1 = nn.BatchNorm2d(cout), nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.skip = FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = x if self.shortcut is None else self.shortcut(x)
        return self.skip.add_relu(out, sc)

    def fuse_groups(self, prefix: str) -> list[list[str]]:
        groups = [[f"{prefix}conv1", f"{prefix}bn1", f"{prefix}relu1"], [f"{prefix}conv2", f"{prefix}bn2"]]
        if self.shortcut is not None:
            groups.append([f"{prefix}shortcut.0", f"{prefix}shortcut.1"])
        return groups


class ResNet(nn.Module):
    """CIFAR ResNet (resnet8: 1 block per stage, resnet20: 3)."""

    def __init__(self, blocks_per_stage: int) -> None:
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(16), nn.ReLU()
        layers: list[nn.Module] = []
        cin = 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(blocks_per_stage):
                layers.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(self.quant(x))))
        x = self.pool(self.layers(x))
        return self.dequant(self.fc(torch.flatten(x, 1)))

    def fuse_groups(self) -> list[list[str]]:
        groups = [["conv1", "bn1", "relu"]]
        for i, block in enumerate(self.layers):
            assert isinstance(block, BasicBlock)
            groups += block.fuse_groups(f"layers.{i}.")
        return groups


class MobileNet(nn.Module):
    """Stem conv-BN-ReLU6, four depthwise-separable blocks, GAP, fc(128,10)."""

    CFG = ((16, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2))

    def __init__(self) -> None:
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv, self.bn, self.act = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6()
        blocks = []
        for cin, cout, stride in self.CFG:
            blocks.append(nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(),
            ))
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.conv(self.quant(x))))
        x = self.pool(self.blocks(x))
        return self.dequant(self.fc(torch.flatten(x, 1)))

    def fuse_groups(self) -> list[list[str]]:
        # eager mode fuses conv+bn(+ReLU) only; ReLU6 stays a separate module.
        groups = [["conv", "bn"]]
        for i in range(len(self.CFG)):
            groups += [[f"blocks.{i}.0", f"blocks.{i}.1"], [f"blocks.{i}.3", f"blocks.{i}.4"]]
        return groups


class TinyTransformer(nn.Module):
    """Tokens[N,16] -> emb+pos -> pre-LN 2-head attention + residual -> pre-LN FFN
    + residual -> mean over sequence -> fc(32,4)."""

    def __init__(self, vocab: int = VOCAB, seq: int = 16, d: int = 32, heads: int = 2, classes: int = 4) -> None:
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.scale = self.dh ** -0.5  # 0.25
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(seq, d) * 0.02)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ffn1, self.relu, self.ffn2 = nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d)
        self.head = nn.Linear(d, classes)
        # one QuantStub per quantised tensor (a stub's observer tracks one range)
        self.quant_attn, self.quant_ffn, self.dequant = tq.QuantStub(), tq.QuantStub(), tq.DeQuantStub()

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        n, s, _ = t.shape
        return t.reshape(n, s, self.heads, self.dh).transpose(1, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.tok(tokens) + self.pos
        h = self.quant_attn(self.ln1(x))
        q, k, v = self._split(self.q(h)), self._split(self.k(h)), self._split(self.v(h))
        att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1)
        a = torch.matmul(att, v).transpose(1, 2).reshape(x.shape)
        x = x + self.dequant(self.o(a))
        h = self.quant_ffn(self.ln2(x))
        x = x + self.dequant(self.ffn2(self.relu(self.ffn1(h))))
        return self.head(x.mean(dim=1))

    def fuse_groups(self) -> list[list[str]]:
        return [["ffn1", "relu"]]


def build_twin(name: str) -> nn.Module:
    """The PyTorch twin of ``rctc.models.build(name)`` (fresh random init)."""
    makers = {"mlp": MLP, "lenet": LeNet, "resnet8": lambda: ResNet(1), "resnet20": lambda: ResNet(3),
              "mobilenet": MobileNet, "tiny_transformer": TinyTransformer}
    if name not in makers:
        raise KeyError(f"unknown model {name!r}; expected one of {sorted(makers)}")
    return makers[name]()


def prepare_qat(model: nn.Module, name: str, backend: str = "x86") -> tuple[nn.Module, str]:
    """Eager-mode QAT: fuse, set qconfig, ``prepare_qat``. Returns (model, note)."""
    torch.backends.quantized.engine = backend
    qconfig = tq.get_default_qat_qconfig(backend)
    model.train()
    tq.fuse_modules_qat(model, model.fuse_groups(), inplace=True)  # type: ignore[operator]
    note = f"eager QAT, {backend} default qconfig, conv-bn(-relu) and linear-relu fused"
    if name == "tiny_transformer":
        # Embedding / LayerNorm / softmax / batched matmul cannot be prepared for
        # eager QAT with this qconfig: fake-quantise only the Linear layers.
        for mod in model.modules():
            if isinstance(mod, nn.Linear | tq.QuantStub | LinearReLU):
                mod.qconfig = qconfig
        note = ("eager QAT on the Linear layers only (q/k/v/o, ffn, head); Embedding, LayerNorm, "
                "softmax and attention matmuls stay FP32")
    else:
        model.qconfig = qconfig
        if name == "mobilenet":
            note += "; ReLU6 not fusable in eager mode (separate module)"
    tq.prepare_qat(model, inplace=True)
    return model, note


def _time_torch(name: str, qat: bool, batch: int, seed: int, **timing: Any) -> dict[str, Any]:
    torch.set_num_threads(_common.NUM_THREADS)
    torch.manual_seed(seed)
    baseline_rss = _common.current_rss_bytes()
    shape, dtype, classes = SPECS[name]
    model = build_twin(name)
    note = "plain PyTorch FP32"
    if qat:
        model, note = prepare_qat(model, name)
    model.train()
    x_np, y_np = _common.make_batch(shape, dtype, batch, classes, seed=seed, int_high=VOCAB)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def step() -> None:
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()

    ms = _common.time_steps(step, **timing)
    return _common.result_dict(
        ms, note=note, rss_before_model_bytes=baseline_rss, threads=torch.get_num_threads(), torch=torch.__version__,
        params=sum(p.numel() for p in model.parameters()), kernels=_common.kernel_info(),
        torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
    )


def time_torch_fp32(name: str, batch: int = 32, warmup: int = 5, min_steps: int = 20,
                    min_seconds: float = 2.0, max_steps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Time FP32 training steps of the twin of ``name`` in THIS process.

    ``warmup`` untimed steps, then timed steps until ``min_steps`` and
    ``min_seconds`` are both reached (at most ``max_steps``). Returns
    ``ms_per_step_median``, ``ms_list``, ``peak_rss_bytes``, ``note`` ... For a
    clean peak RSS call it through ``_common.run_in_subprocess("torch_fp32", ...)``.
    """
    return _time_torch(name, False, batch, seed, warmup=warmup, min_steps=min_steps,
                       min_seconds=min_seconds, max_steps=max_steps)


def time_torch_qat(name: str, batch: int = 32, warmup: int = 5, min_steps: int = 20,
                   min_seconds: float = 2.0, max_steps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Time eager-mode QAT training steps of the twin of ``name`` in THIS process
    (same arguments and result as :func:`time_torch_fp32`)."""
    return _time_torch(name, True, batch, seed, warmup=warmup, min_steps=min_steps,
                       min_seconds=min_seconds, max_steps=max_steps)


def main(argv: list[str] | None = None) -> int:
    args = _common.peer_parser(peers=("torch_fp32", "torch_qat")).parse_args(argv)
    fn = time_torch_qat if args.peer == "torch_qat" else time_torch_fp32
    try:
        res = fn(args.model, batch=args.batch, seed=args.seed, **_common.timing_kwargs(args))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as JSON
        res = {"error": f"{type(exc).__name__}: {exc}", "peak_rss_bytes": _common.peak_rss_bytes()}
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

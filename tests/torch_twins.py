"""PyTorch twins of the models/ architectures, written from their spec (test reference only)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def torch_forward(name: str, p: dict[str, Any], x: np.ndarray, training: bool = False) -> Any:
    """Forward of model ``name`` in torch; ``p`` maps parameter names to arrays or tensors.

    Arrays are converted to float64 tensors and the result is returned as a numpy array;
    tensors are used as given (so autograd works) and the result is a tensor.
    """
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    as_tensors = all(isinstance(v, torch.Tensor) for v in p.values())
    if as_tensors:
        t = dict(p)
    else:
        t = {k: torch.from_numpy(np.array(v)) for k, v in p.items()}
        t = {k: v.double() if v.dtype == torch.float32 else v for k, v in t.items()}
    fdtype = next(v.dtype for k, v in t.items() if k.endswith("weight"))

    def out(z: Any) -> Any:
        return z if as_tensors else z.detach()

    def lin(h, prefix):
        return F.linear(h, t[f"{prefix}.weight"], t[f"{prefix}.bias"])

    def bn(h, prefix):
        return F.batch_norm(h, t[f"{prefix}.running_mean"], t[f"{prefix}.running_var"],
                            t[f"{prefix}.weight"], t[f"{prefix}.bias"], training=training, momentum=0.1, eps=1e-5)

    def conv_bn(h, cprefix, bprefix, stride=1, groups=1):
        w = t[f"{cprefix}.weight"]
        return bn(F.conv2d(h, w, stride=stride, padding=w.shape[-1] // 2, groups=groups), bprefix)

    if name == "tiny_transformer":
        tok = torch.from_numpy(x)
        h0 = F.embedding(tok, t["embed.weight"]) + t["pos_embed"]
        h = F.layer_norm(h0, (32,), t["ln1.weight"], t["ln1.bias"], eps=1e-5)

        def proj(z, prefix):
            return z @ t[f"{prefix}.weight"] + t[f"{prefix}.bias"]

        def split(z):
            return z.reshape(z.shape[0], 16, 2, 16).transpose(1, 2)

        q, k, v = (split(proj(h, f"attn.{s}_proj")) for s in "qkv")
        a = torch.softmax(q @ k.transpose(-1, -2) / 4.0, dim=-1) @ v
        h1 = h0 + proj(a.transpose(1, 2).reshape(-1, 16, 32), "attn.out_proj")
        f = F.layer_norm(h1, (32,), t["ln2.weight"], t["ln2.bias"], eps=1e-5)
        h2 = h1 + proj(torch.relu(proj(f, "ffn.fc1")), "ffn.fc2")
        return out(proj(h2.mean(dim=1), "head"))

    h = torch.from_numpy(x).to(fdtype)
    if name == "mlp":
        h = torch.relu(lin(torch.relu(lin(h, "fc1")), "fc2"))
        return out(lin(h, "fc3"))
    if name == "lenet":
        h = F.max_pool2d(torch.relu(F.conv2d(h, t["conv1.weight"], t["conv1.bias"], padding=1)), 2)
        h = F.max_pool2d(torch.relu(F.conv2d(h, t["conv2.weight"], t["conv2.bias"], padding=1)), 2)
        return out(lin(torch.relu(lin(h.flatten(1), "fc1")), "fc2"))
    if name == "mobilenet":
        h = torch.clamp(conv_bn(h, "conv1", "bn1"), 0, 6)
        for i, (c, stride) in enumerate(((16, 1), (32, 2), (64, 1), (64, 2))):
            h = torch.clamp(conv_bn(h, f"layers.{i}.dw", f"layers.{i}.bn1", stride, groups=c), 0, 6)
            h = torch.clamp(conv_bn(h, f"layers.{i}.pw", f"layers.{i}.bn2"), 0, 6)
        return out(lin(h.mean(dim=(2, 3)), "fc"))
    blocks = 1 if name == "resnet8" else 3
    h = torch.relu(conv_bn(h, "conv1", "bn1"))
    for s, stride in ((1, 1), (2, 2), (3, 2)):
        for b in range(blocks):
            pre = f"layer{s}.{b}"
            st = stride if b == 0 else 1
            y = torch.relu(conv_bn(h, f"{pre}.conv1", f"{pre}.bn1", st))
            y = conv_bn(y, f"{pre}.conv2", f"{pre}.bn2")
            if f"{pre}.downsample.0.weight" in t:
                h = conv_bn(h, f"{pre}.downsample.0", f"{pre}.downsample.1", st)
            h = torch.relu(y + h)
    return out(lin(h.mean(dim=(2, 3)), "fc"))




def displacement_errors(name: str, model: Any, x: np.ndarray, y: np.ndarray, steps: int, lr: float,
                        optimizer: Any) -> dict[str, float]:
    """Train the compiled rct ``model`` ``steps`` steps, and its float64 twin from the same start
    with ``optimizer(params)`` (a torch.optim factory); per parameter, the relative error of rct's
    displacement ``w_t - w_0`` against torch's."""
    import torch

    g = model.graph
    scale = {p.name: 2.0 ** int(g.value(f"{p.name}.exp").data) for p in g.params()}
    init = {p.name: p.data.astype(np.float64) * scale[p.name] for p in g.params()}
    model.train(x, y, steps=steps, lr=lr, shuffle=False)
    params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in init.items()}
    opt = optimizer(list(params.values()))
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(torch_forward(name, params, x.astype(np.float64), training=True),
                                          torch.tensor(y)).backward()
        opt.step()
    out = {}
    for k, p in params.items():
        want, got = p.detach().numpy(), g.value(k).data * scale[k]
        out[k] = float(np.linalg.norm((got - init[k]) - (want - init[k])) / np.linalg.norm(want - init[k]))
    return out

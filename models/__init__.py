"""Model builders and small ready ONNX files (import name ``rctc.models``).

Every builder makes an opset-17, IR-version-8 ONNX model with onnx.helper only, a dynamic
batch dimension ``N`` on input and output, the output ``logits`` and PyTorch-style
initializer names. ``build(name, seed)`` is deterministic: the same seed gives the same
bytes. Ready files ``<name>.onnx`` next to this module are ``build(name, seed=0)``;
``python -m rctc.models`` (or :func:`write_ready_files`) regenerates them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from .groupnorm_cnn import build_groupnorm_cnn
from .kws_gru import build_kws_gru
from .lenet import build_lenet
from .mlp import build_mlp
from .mobilenet import build_mobilenet
from .resnet import build_resnet8, build_resnet20
from .tabular_mlp import build_tabular_mlp
from .transformer import build_tiny_transformer
from .unet import build_unet

__all__ = ["BUILDERS", "READY", "build", "input_spec", "num_classes", "parameter_count", "path",
           "write_ready_files"]

BUILDERS: dict[str, Callable[..., onnx.ModelProto]] = {
    "mlp": build_mlp,
    "lenet": build_lenet,
    "resnet8": build_resnet8,
    "resnet20": build_resnet20,
    "mobilenet": build_mobilenet,
    "tiny_transformer": build_tiny_transformer,
    "unet": build_unet,
    "groupnorm_cnn": build_groupnorm_cnn,
    "kws_gru": build_kws_gru,
    "tabular_mlp": build_tabular_mlp,
}

# name -> (input name, input shape without batch, input dtype, number of classes)
_SPECS: dict[str, tuple[str, tuple[int, ...], np.dtype, int]] = {
    "mlp": ("x", (64,), np.dtype(np.float32), 10),
    "lenet": ("x", (1, 8, 8), np.dtype(np.float32), 10),
    "resnet8": ("x", (3, 32, 32), np.dtype(np.float32), 10),
    "resnet20": ("x", (3, 32, 32), np.dtype(np.float32), 10),
    "mobilenet": ("x", (3, 32, 32), np.dtype(np.float32), 10),
    "tiny_transformer": ("tokens", (16,), np.dtype(np.int64), 4),
    "unet": ("x", (1, 16, 16), np.dtype(np.float32), 10),
    "groupnorm_cnn": ("x", (3, 16, 16), np.dtype(np.float32), 10),
    "kws_gru": ("x", (20, 10), np.dtype(np.float32), 12),
    "tabular_mlp": ("x", (30,), np.dtype(np.float32), 2),
}

# Models shipped as ready files (all of them: resnet20 is ~1.1 MB, under the 1.5 MB limit).
READY: tuple[str, ...] = ("mlp", "lenet", "resnet8", "resnet20", "mobilenet", "tiny_transformer", "tabular_mlp")

_HERE = Path(__file__).resolve().parent


def _check_name(name: str) -> None:
    if name not in BUILDERS:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(BUILDERS)}")


def build(name: str, seed: int = 0) -> onnx.ModelProto:
    """Build model ``name`` with initial weights from ``np.random.default_rng(seed)``."""
    _check_name(name)
    return BUILDERS[name](seed=seed)


def input_spec(name: str) -> tuple[str, tuple[int, ...], np.dtype]:
    """(input name, input shape without the batch dim, numpy dtype) of model ``name``."""
    _check_name(name)
    inp, shape, dtype, _ = _SPECS[name]
    return inp, shape, dtype


def num_classes(name: str) -> int:
    """Number of output classes (width of ``logits``) of model ``name``."""
    _check_name(name)
    return _SPECS[name][3]


def path(name: str) -> Path:
    """Path of the ready ONNX file of model ``name`` (built with seed 0)."""
    _check_name(name)
    if name not in READY:
        raise KeyError(f"model {name!r} has no ready file; use rctc.models.build({name!r})")
    return _HERE / f"{name}.onnx"


def parameter_count(model: onnx.ModelProto) -> int:
    """Number of learnable values: float initializers that are not BN running statistics
    and not scalar constants (the PyTorch ``sum(p.numel() for p in parameters())``)."""
    total = 0
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or len(init.dims) == 0:
            continue
        if init.name.endswith((".running_mean", ".running_var")):
            continue
        total += int(np.prod(init.dims))
    return total


def write_ready_files(directory: str | os.PathLike[str] | None = None) -> list[Path]:
    """(Re)write ``<name>.onnx`` for every name in READY (atomically); return the paths."""
    out_dir = Path(directory) if directory is not None else _HERE
    written = []
    for name in READY:
        target = out_dir / f"{name}.onnx"
        data = build(name, seed=0).SerializeToString()
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return written

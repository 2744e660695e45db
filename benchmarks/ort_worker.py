"""ONNX Runtime on-device training worker; runs INSIDE the ORT venv (peers_ort.venv_dir()).

That venv holds onnxruntime-training 1.19.2, onnx 1.16 and numpy < 2 (the
newest combination onnxruntime-training supports). It never imports rctc; the
parent (``peers_ort.py``) writes the model ONNX file (ir_version <= 9, opset 17)
and passes the input description on the command line.

Steps: ``generate_artifacts`` (CrossEntropyLoss, SGD) with every float
initializer trainable except BatchNormalization running statistics and scalar
constants, then ``onnxruntime.training.api`` Module + Optimizer (lr 0.01, 2
intra-op threads). One timed step = ``module(x, labels)`` (forward + backward)
+ ``optimizer.step()`` + ``module.lazy_reset_grad()``. Prints one JSON line:
``ms_per_step_median``, ``ms_list``, ``peak_rss_bytes`` ... or ``error``.

``onnxruntime/training/__init__.py`` imports torch (for ORTModule and its fp16
optimizer) although the on-device ``artifacts`` and ``api`` modules do not need
it; to keep the venv torch-free the package ``__init__`` is bypassed with a
namespace stub before the two submodules are imported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


def _import_training() -> tuple[Any, Any]:
    """Import onnxruntime.training.{artifacts, api} without the torch-needing __init__."""
    import onnxruntime

    if "onnxruntime.training" not in sys.modules:
        pkg = types.ModuleType("onnxruntime.training")
        pkg.__path__ = [os.path.join(os.path.dirname(onnxruntime.__file__), "training")]
        pkg.__package__ = "onnxruntime.training"
        sys.modules["onnxruntime.training"] = pkg
    from onnxruntime.training import api, artifacts

    return artifacts, api


def trainable_names(model: Any) -> list[str]:
    """Float initializers that train: not BN running stats, not scalar constants."""
    from onnx import TensorProto

    floats = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)
    bn_stats = {n.input[i] for n in model.graph.node if n.op_type == "BatchNormalization"
                for i in (3, 4) if len(n.input) > i}
    out = []
    for init in model.graph.initializer:
        size = 1
        for d in init.dims:
            size *= d
        if init.data_type in floats and init.name not in bn_stats and len(init.dims) > 0 and size > 1:
            out.append(init.name)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import onnx
    import onnxruntime as ort

    artifacts, api = _import_training()
    baseline_rss = _common.current_rss_bytes()
    model = onnx.load(args.onnx)
    req = trainable_names(model)
    if not req:
        return {"error": "model has no trainable float initializer"}
    with tempfile.TemporaryDirectory(prefix="rctc_ort_art_") as art:
        try:
            artifacts.generate_artifacts(
                model, requires_grad=req,
                frozen_params=[i.name for i in model.graph.initializer if i.name not in set(req)],
                loss=artifacts.LossType.CrossEntropyLoss, optimizer=artifacts.OptimType.SGD,
                artifact_directory=art,
            )
        except Exception as exc:  # noqa: BLE001 - reported as the peer's error
            return {"error": f"generate_artifacts failed: {type(exc).__name__}: {_first_line(exc)}"}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = _common.NUM_THREADS
        opts.inter_op_num_threads = 1
        try:
            state = api.CheckpointState.load_checkpoint(os.path.join(art, "checkpoint"))
            module = api.Module(os.path.join(art, "training_model.onnx"), state,
                                os.path.join(art, "eval_model.onnx"), device="cpu", session_options=opts)
            optimizer = api.Optimizer(os.path.join(art, "optimizer_model.onnx"), module)
            optimizer.set_learning_rate(0.01)
        except Exception as exc:  # noqa: BLE001
            return {"error": f"training session failed: {type(exc).__name__}: {_first_line(exc)}"}

    shape = [int(d) for d in args.shape.split(",") if d]
    x, y = _common.make_batch(shape, args.dtype, args.batch, args.num_classes, seed=args.seed,
                              int_high=args.int_high)
    module.train()
    losses: list[float] = []

    def step() -> None:
        loss = module(x, y)
        optimizer.step()
        module.lazy_reset_grad()
        losses.append(float(np.asarray(loss)))

    try:
        ms = _common.time_steps(step, **_common.timing_kwargs(args))
    except Exception as exc:  # noqa: BLE001
        return {"error": f"train_step failed: {type(exc).__name__}: {_first_line(exc)}"}
    return _common.result_dict(
        ms, note="onnxruntime-training on-device API, SGD lr 0.01, CrossEntropyLoss",
        rss_before_model_bytes=baseline_rss, threads=_common.NUM_THREADS,
        onnxruntime=ort.__version__, trainable_initializers=len(req),
        params=int(sum(np.prod(i.dims) for i in model.graph.initializer if i.name in set(req))),
        loss_first=losses[0], loss_last=losses[-1], kernels=_common.kernel_info(),
        ort_providers=ort.get_available_providers(),
        kernels_note="ORT's own MLAS kernels and thread pool are linked into onnxruntime and not visible to "
                     "threadpoolctl (which sees the venv numpy's BLAS only)",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:400] if text else "(no message)"


def main(argv: list[str] | None = None) -> int:
    ap = _common.peer_parser(peers=("ort",))
    ap.add_argument("--onnx", required=True, help="model file (ir_version <= 9, opset 17)")
    ap.add_argument("--shape", required=True, help="input shape without batch, comma separated")
    ap.add_argument("--dtype", required=True)
    ap.add_argument("--num-classes", type=int, required=True)
    ap.add_argument("--int-high", type=int, default=64, help="token id range for integer inputs")
    args = ap.parse_args(argv)
    try:
        res = run(args)
    except Exception as exc:  # noqa: BLE001 - the parent must always get JSON
        traceback.print_exc()
        res = {"error": f"{type(exc).__name__}: {_first_line(exc)}"}
    res.setdefault("peak_rss_bytes", _common.peak_rss_bytes())
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

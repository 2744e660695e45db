"""Compile time of every models/ network and of onnx's bundled light ResNet-50 (prints one JSON line).

Each network is compiled with ``rctc.compile(..., mode=M, batch_size=B)`` after one untimed warm-up
compile (imports and first-call caches are not compile time); the reported time is the best of
``--repeat`` compiles. The light ResNet-50 comes from
``os.path.dirname(onnx.__file__)/backend/test/data/light/light_resnet50.onnx`` and is compiled with
``--r50-batch`` (default 1, the batch of its bundled test data).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MODELS, best_seconds  # noqa: E402


def light_resnet50_path() -> str:
    import onnx

    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_resnet50.onnx")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--mode", default="rct")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--r50-batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    import rctc
    from rctc.models import build

    rctc.compile(build("mlp"), mode=args.mode, batch_size=args.batch)  # warm-up
    out: dict[str, Any] = {"mode": args.mode, "batch": args.batch, "seconds": {}}
    for name in [m for m in args.models.split(",") if m]:
        proto = build(name)
        out["seconds"][name] = best_seconds(
            lambda p=proto: rctc.compile(p, mode=args.mode, batch_size=args.batch), args.repeat, warmup=False)
    path = light_resnet50_path()
    if os.path.exists(path):
        out["light_resnet50"] = {
            "path": path, "batch": args.r50_batch,
            "seconds": best_seconds(lambda: rctc.compile(path, mode=args.mode, batch_size=args.r50_batch),
                                    max(1, args.repeat - 1), warmup=False),
        }
    else:
        out["light_resnet50"] = {"path": path, "error": "not bundled with this onnx"}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

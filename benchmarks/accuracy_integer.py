"""Accuracy, energy and peak memory of rct integer from end to end, rct --elementwise float, qat and fp32.

    python benchmarks/accuracy_integer.py [--seeds 0] [--epochs 30] [--models lenet mlp tabular_mlp]
                                          [-o benchmarks/ACCURACY_INTEGER.md]

Trains the bundled LeNet and MLP on the bundled scikit-learn digits (seeded 80/20 split; the
MLP reads the 8x8 images flattened) and the tabular MLP on the bundled breast-cancer data (the
same split, standardised features) with the digits recipe (batch 32, SGD, lr 0.2), in four
configurations: rct with integer element-wise ops (``--elementwise integer``), rct with version
1's float element-wise ops (``--elementwise float``), qat and fp32. Writes the test accuracy,
the static energy per training step and the peak memory (``rctc inspect``'s figures) and the
wall time side by side. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset before numpy loads
(users' machines do not set them); the BLAS kernels that ran are recorded with threadpoolctl.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_var, None)

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info  # noqa: E402

import rctc  # noqa: E402
from rctc.cli.demo import DIGITS_RECIPE  # noqa: E402
from rctc.data import load_data  # noqa: E402
from rctc.models import path  # noqa: E402
from rctc.rct_format import atomic_write_bytes  # noqa: E402

CONFIGS = (("rct integer", {"mode": "rct", "elementwise": "integer"}),
           ("rct float", {"mode": "rct", "elementwise": "float"}),
           ("qat", {"mode": "qat"}), ("fp32", {"mode": "fp32"}))
MODELS = ("lenet", "mlp", "tabular_mlp")
DATA = {"lenet": "digits", "mlp": "digits", "tabular_mlp": "breast_cancer"}


def _xy(model: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    d = load_data(f"{DATA[model]}:{split}")
    x = d.x if model == "lenet" else d.x.reshape(len(d.x), -1)
    return x.astype(np.float32), d.y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "ACCURACY_INTEGER.md")
    args = ap.parse_args()
    rows = []
    for model in args.models:
        (xtr, ytr), (xte, yte) = _xy(model, "train"), _xy(model, "test")
        for label, opts in CONFIGS:
            accs, secs = [], []
            est = None
            for seed in args.seeds:
                t0 = time.perf_counter()
                m = rctc.compile(path(model), seed=seed, **opts, **DIGITS_RECIPE)
                m.train(xtr, ytr, epochs=args.epochs, seed=seed)
                accs.append(m.evaluate(xte, yte)["accuracy"])
                secs.append(time.perf_counter() - t0)
                est = m.estimate()
            assert est is not None
            pred = est["predicted"]
            row = {"model": model, "config": label, "accuracy": statistics.mean(accs), "accuracies": accs,
                   "energy_pj_per_step": pred["energy_pj_per_step"], "peak_memory_bytes": pred["peak_memory_bytes"],
                   "float_islands": len(est.get("float_islands", [])), "seconds": statistics.mean(secs)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    blas = sorted({f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}" for i in threadpool_info()})
    lines = ["# rct integer from end to end vs rct float element-wise vs qat vs fp32 (digits, breast cancer)", "",
             f"Command: `python benchmarks/accuracy_integer.py --seeds {' '.join(map(str, args.seeds))} "
             f"--epochs {args.epochs} --models {' '.join(args.models)}`", "",
             "Recipe: bundled digits (lenet, mlp) / breast_cancer (tabular_mlp), seeded 80/20 split, "
             f" {DIGITS_RECIPE}, {args.epochs} epochs; energy and peak "
             "memory are the static per-step estimate (`rctc inspect`, default profile). OPENBLAS_CORETYPE / "
             f"OPENBLAS_L2_SIZE unset; BLAS: {', '.join(blas)}.", "",
             "| model | config | test accuracy | energy / step | vs fp32 | peak memory | vs fp32 | float islands | "
             "wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = next(b for b in rows if b["model"] == r["model"] and b["config"] == "fp32")
        lines.append(f"| {r['model']} | {r['config']} | {100 * r['accuracy']:.2f}% | "
                     f"{r['energy_pj_per_step'] / 1e6:.2f} uJ | "
                     f"{100 * (1 - r['energy_pj_per_step'] / base['energy_pj_per_step']):.1f}% | "
                     f"{r['peak_memory_bytes'] / 1024:.1f} KiB | "
                     f"{100 * (1 - r['peak_memory_bytes'] / base['peak_memory_bytes']):.1f}% | "
                     f"{r['float_islands']} | {r['seconds']:.1f} |")
    atomic_write_bytes(args.output, ("\n".join(lines) + "\n").encode())
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

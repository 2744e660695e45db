"""Digits accuracy with AdamW: rct (integer moments) vs fp32, bundled LeNet.

    python benchmarks/accuracy_adamw.py [--seeds 0 1] [--epochs 10] [--lr 0.003] [-o benchmarks/ACCURACY_ADAMW.md]

Recipe: the digits recipe of `rctc demo` (batch 32, seeded 80/20 split, default controller) with
``--optimizer adamw`` (PyTorch's defaults: betas 0.9 / 0.999, eps 1e-8, weight decay 0.01) at the
given lr. Reports the test accuracy per seed and mode and its mean.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import rctc
from rctc.cli.demo import DIGITS_RECIPE
from rctc.data import load_data
from rctc.models import path
from rctc.rct_format import atomic_write_bytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "ACCURACY_ADAMW.md")
    args = ap.parse_args()
    train, test = load_data("digits:train"), load_data("digits:test")
    recipe = {k: v for k, v in DIGITS_RECIPE.items() if k not in ("lr", "momentum", "optimizer")}
    rows: dict[str, list[float]] = {}
    for mode in ("fp32", "rct"):
        for seed in args.seeds:
            t0 = time.perf_counter()
            m = rctc.compile(path("lenet"), mode=mode, seed=seed, optimizer="adamw", lr=args.lr, **recipe)
            m.train(train.x, train.y, epochs=args.epochs, seed=seed)
            acc = m.evaluate(test.x, test.y)["accuracy"]
            rows.setdefault(mode, []).append(acc)
            print(json.dumps({"mode": mode, "seed": seed, "test_accuracy": acc,
                              "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    lines = ["# Digits accuracy with AdamW: fp32 vs rct (integer moments)", "",
             f"Command: `python benchmarks/accuracy_adamw.py --seeds {' '.join(map(str, args.seeds))} "
             f"--epochs {args.epochs} --lr {args.lr}`", "",
             f"Recipe: bundled LeNet, digits seeded 80/20 split, {recipe}, optimizer adamw (PyTorch defaults), "
             f"lr {args.lr}, {args.epochs} epochs.", "",
             "| mode | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |",
             "|---|" + "---|" * (len(args.seeds) + 1)]
    for mode, accs in rows.items():
        lines.append(f"| {mode} | " + " | ".join(f"{100 * a:.2f}%" for a in accs)
                     + f" | **{100 * statistics.mean(accs):.2f}%** |")
    text = "\n".join(lines) + "\n"
    atomic_write_bytes(args.output, text.encode())
    print(text)


if __name__ == "__main__":
    main()

"""Accuracy of the digits recipe in fp32, qat and rct mode (the README's accuracy table).

    python benchmarks/accuracy_digits.py [--seeds 0 1 2] [--epochs 30] [-o benchmarks/ACCURACY.md]

Recipe (the same as `rctc demo`): bundled LeNet, bundled scikit-learn digits with the seeded
80/20 split, batch 32, SGD, lr 0.2, 30 epochs, default controller settings. Reports the test
accuracy per seed and its mean, and for rct the final bits of every layer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import rctc
from rctc.cli.demo import DIGITS_EPOCHS, DIGITS_RECIPE
from rctc.data import load_data
from rctc.models import path
from rctc.rct_format import atomic_write_bytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=DIGITS_EPOCHS)
    ap.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "ACCURACY.md")
    args = ap.parse_args()
    train, test = load_data("digits:train"), load_data("digits:test")
    rows: dict[str, list[float]] = {}
    bits: dict[int, dict[str, int]] = {}
    for mode in ("fp32", "qat", "rct"):
        for seed in args.seeds:
            t0 = time.perf_counter()
            m = rctc.compile(path("lenet"), mode=mode, seed=seed, **DIGITS_RECIPE)
            s = m.train(train.x, train.y, epochs=args.epochs, seed=seed)
            acc = m.evaluate(test.x, test.y)["accuracy"]
            rows.setdefault(mode, []).append(acc)
            if mode == "rct":
                bits[seed] = s["final_bits"]
            print(json.dumps({"mode": mode, "seed": seed, "test_accuracy": acc, "seconds": time.perf_counter() - t0,
                              "final_bits": s.get("final_bits")}), flush=True)
    lines = [
        "# Digits accuracy: fp32 vs qat vs rct", "",
        f"Command: `python benchmarks/accuracy_digits.py --seeds {' '.join(map(str, args.seeds))} "
        f"--epochs {args.epochs}`", "",
        f"Recipe: bundled LeNet, digits seeded 80/20 split (1438 train / 359 test), {DIGITS_RECIPE}, "
        f"{args.epochs} epochs.", "",
        "| mode | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |",
        "|---|" + "---|" * (len(args.seeds) + 1),
    ]
    for mode, accs in rows.items():
        lines.append(f"| {mode} | " + " | ".join(f"{100 * a:.2f}%" for a in accs)
                     + f" | **{100 * statistics.mean(accs):.2f}%** |")
    params = list(next(iter(bits.values())))
    lines += ["", "Final rct bits per parameter (the controller starts every slot at 8 bits):", "",
              "| parameter | " + " | ".join(f"seed {s}" for s in args.seeds) + " |",
              "|---|" + "---|" * len(args.seeds)]
    lines += [f"| {p} | " + " | ".join(str(bits[s][p]) for s in args.seeds) + " |" for p in params]
    text = "\n".join(lines) + "\n"
    atomic_write_bytes(args.output, text.encode())
    print(text)


if __name__ == "__main__":
    main()

"""The experiment behind the bitwidth controller's defaults (--gavg-low / --gavg-high).

    python benchmarks/controller_grid.py [--epochs 30] [--seed 0]

Trains the digits recipe (bundled LeNet, seeded 80/20 split, batch 32, SGD lr 0.2) in rct
mode for a grid of (gavg_low, gavg_high) with the controller every 20 steps, and prints
test accuracy and the final mean bits per parameter, beside the fp32 accuracy of the recipe.
"""

from __future__ import annotations

import argparse
import json
import statistics

import rctc
from rctc.cli.demo import DIGITS_EPOCHS, DIGITS_RECIPE
from rctc.data import load_data
from rctc.models import path

GRID = [(0.01, 1.0), (0.05, 0.5), (0.1, 2.0), (0.25, 2.0), (0.5, 4.0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=DIGITS_EPOCHS)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    train, test = load_data("digits:train"), load_data("digits:test")
    rows = []
    for low, high in GRID:
        m = rctc.compile(path("lenet"), mode="rct", seed=args.seed, gavg_low=low, gavg_high=high, **DIGITS_RECIPE)
        s = m.train(train.x, train.y, epochs=args.epochs)
        acc = m.evaluate(test.x, test.y)["accuracy"]
        rows.append({"gavg_low": low, "gavg_high": high, "test_accuracy": acc,
                     "mean_bits": statistics.mean(s["final_bits"].values()), "final_bits": s["final_bits"]})
        print(json.dumps(rows[-1]), flush=True)
    fp = rctc.compile(path("lenet"), mode="fp32", seed=args.seed, **DIGITS_RECIPE)
    fp.train(train.x, train.y, epochs=args.epochs)
    fp_acc = fp.evaluate(test.x, test.y)["accuracy"]
    print(f"\nfp32 test accuracy {100 * fp_acc:.2f}%\n")
    print("| --gavg-low | --gavg-high | rct test accuracy | mean final bits |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['gavg_low']} | {r['gavg_high']} | {100 * r['test_accuracy']:.2f}% | {r['mean_bits']:.2f} |")


if __name__ == "__main__":
    main()

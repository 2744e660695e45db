"""``rctc inspect --plot energy.png``: the static estimate as a picture.

Top: energy per training step of every layer, stacked by kind (GEMM, element-wise,
parameter movement, activation movement). Bottom left: energy per step by kind for this
model against its QAT and FP32 baselines; bottom right: parameter memory and peak memory
against the same baselines. Needs matplotlib (``pip install 'rctc[plot]'``).
"""

from __future__ import annotations

import io
import os
from typing import Any

from rctc.errors import RctcError
from rctc.rct_format import atomic_write_bytes

KINDS = ("gemm", "elementwise", "parameter_movement", "activation_movement")
LABELS = {"gemm": "GEMM", "elementwise": "element-wise", "parameter_movement": "parameter movement",
          "activation_movement": "activation movement"}
COLORS = {"gemm": "#4c72b0", "elementwise": "#55a868", "parameter_movement": "#c44e52",
          "activation_movement": "#8172b2"}


def _unit(max_pj: float) -> tuple[float, str]:
    for scale, name in ((1e12, "J"), (1e9, "mJ"), (1e6, "uJ"), (1e3, "nJ")):
        if max_pj >= scale:
            return scale, name
    return 1.0, "pJ"


def _bytes(n: float) -> str:
    for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.1f} {name}"
    return f"{n:.0f} B"


def plot_estimate(est: dict[str, Any], output: str | os.PathLike[str], title: str = "") -> None:
    """Draw the estimate returned by ``rctc.analysis.report.estimate`` into a PNG (atomically)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RctcError("--plot needs matplotlib: pip install 'rctc[plot]'") from exc
    pred = est["predicted"]
    layers = pred["per_layer"]
    fig = plt.figure(figsize=(11, 3.2 + 0.22 * len(layers)))
    grid = fig.add_gridspec(2, 2, height_ratios=[max(2.0, 0.22 * len(layers)), 2.2], hspace=0.3, wspace=0.3)
    ax = fig.add_subplot(grid[0, :])
    scale, unit = _unit(max(row["energy_pj"]["total"] for row in layers) or 1.0)
    names = [row["layer"] for row in layers][::-1]
    left = [0.0] * len(layers)
    for kind in KINDS:
        vals = [row["energy_pj"][kind] / scale for row in layers][::-1]
        ax.barh(names, vals, left=left, color=COLORS[kind], label=LABELS[kind])
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlabel(f"energy per training step ({unit})")
    ax.set_title(title or f"{pred['mode']} mode, batch {pred['batch_size']}, profile {pred['profile']}: "
                 f"{pred['energy_pj_per_step'] / scale:.3g} {unit} per step", fontsize=11)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)

    modes = [(pred["mode"], pred["energy_pj"], pred["parameter_memory_bytes"], pred["peak_memory_bytes"])]
    for base in ("qat", "fp32"):
        b = est.get("savings", {}).get(f"vs_{base}", {}).get("baseline")
        if b and b["mode"] != pred["mode"]:
            modes.append((b["mode"], b["energy_pj"], b["parameter_memory_bytes"], b["peak_memory_bytes"]))
    ax2 = fig.add_subplot(grid[1, 0])
    scale2, unit2 = _unit(max(m[1]["total"] for m in modes) or 1.0)
    bottom = [0.0] * len(modes)
    for kind in KINDS:
        vals = [m[1][kind] / scale2 for m in modes]
        ax2.bar([m[0] for m in modes], vals, bottom=bottom, color=COLORS[kind])
        bottom = [a + b for a, b in zip(bottom, vals)]
    ax2.set_ylabel(f"energy per step ({unit2})")
    ax2.set_title("energy vs baselines", fontsize=10)
    ax2.grid(axis="y", alpha=0.3)
    ax3 = fig.add_subplot(grid[1, 1])
    xs = range(len(modes))
    params = [m[2] for m in modes]
    peaks = [m[3] for m in modes]
    ax3.bar([x - 0.2 for x in xs], params, width=0.4, color="#dd8452", label="parameters")
    ax3.bar([x + 0.2 for x in xs], peaks, width=0.4, color="#937860", label="peak (plan)")
    for x, p, k in zip(xs, params, peaks):
        ax3.text(x - 0.2, p, _bytes(p), ha="center", va="bottom", fontsize=7)
        ax3.text(x + 0.2, k, _bytes(k), ha="center", va="bottom", fontsize=7)
    ax3.set_xticks(list(xs), [m[0] for m in modes])
    ax3.set_yscale("log")
    ax3.set_ylabel("bytes (log)")
    ax3.set_title("memory vs baselines", fontsize=10)
    ax3.legend(fontsize=8, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(output, buf.getvalue())

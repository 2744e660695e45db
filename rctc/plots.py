"""Training report charts from a ``rctc train --log run.jsonl`` file (matplotlib, optional extra).

One PNG with up to four panels, each drawn only when the log has its data:

* loss per step (raw, faint) with a moving average, learning rate on a second axis;
* training accuracy per step (raw and moving average);
* per-layer weight bitwidth over the steps (rct mode): a heat map, one row per parameter;
* measured energy per step (``measured_energy_pj`` rows, written when energy counting is on).

Epoch boundaries are marked in every panel. The file is written atomically.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from rctc.errors import RctcError
from rctc.rct_format import atomic_write_bytes

NUMBER_KEYS = ("lr", "accuracy", "measured_energy_pj")  # optional numbers (null: not measured at that step)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_row(row: dict[str, Any], where: str) -> None:
    """The row's values have the types the report reads; the message names the line and the key."""
    step, epoch = row["step"], row.get("epoch")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise RctcError(f"{where}: 'step' must be a non-negative integer, got {step!r}")
    if epoch is not None and (not isinstance(epoch, int) or isinstance(epoch, bool)):
        raise RctcError(f"{where}: 'epoch' must be an integer, got {epoch!r}")
    if not _is_number(row["loss"]):
        raise RctcError(f"{where}: 'loss' must be a number, got {row['loss']!r}")
    for key in NUMBER_KEYS:
        if row.get(key) is not None and not _is_number(row[key]):
            raise RctcError(f"{where}: {key!r} must be a number, got {row[key]!r}")
    bits = row.get("bits")
    if bits is not None and not (isinstance(bits, dict) and all(_is_number(b) for b in bits.values())):
        raise RctcError(f"{where}: 'bits' must map parameter names to numbers, got {bits!r:.60}")


def read_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The log's rows (one JSON object per line); a bad line is an error naming its number."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RctcError(f"{p}: no such log file; write one with `rctc train ... --log {p.name}`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RctcError(f"{p}: cannot read the log ({type(exc).__name__})") from exc
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RctcError(f"{p}: line {i} is not JSON ({exc.msg}); is this an `rctc train --log` file?") from exc
        if not isinstance(row, dict) or "step" not in row or "loss" not in row:
            raise RctcError(f"{p}: line {i} has no step/loss; is this an `rctc train --log` file?")
        _check_row(row, f"{p}: line {i}")
        rows.append(row)
    if not rows:
        raise RctcError(f"{p}: the log has no steps")
    rows.sort(key=lambda r: r["step"])
    dedup = {r["step"]: r for r in rows}  # a resumed run repeats the steps after its checkpoint: keep the last
    return [dedup[s] for s in sorted(dedup)]


def _smooth(v: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average that ignores NaN (missing values)."""
    ok = ~np.isnan(v)
    num = np.convolve(np.where(ok, v, 0.0), np.ones(window), mode="full")[: len(v)]
    den = np.convolve(ok.astype(float), np.ones(window), mode="full")[: len(v)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _series(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([float(r[key]) if r.get(key) is not None else np.nan for r in rows])


def _energy_unit(max_pj: float) -> tuple[float, str]:
    for scale, unit in ((1e12, "J"), (1e9, "mJ"), (1e6, "uJ"), (1e3, "nJ")):
        if max_pj >= scale:
            return scale, unit
    return 1.0, "pJ"


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the report shows, as numbers (for --json and tests)."""
    params = sorted({k for r in rows for k in (r.get("bits") or {})})
    out: dict[str, Any] = {"steps": len(rows), "first_step": rows[0]["step"], "last_step": rows[-1]["step"],
                           "final_loss": rows[-1]["loss"], "panels": ["loss"]}
    if any(r.get("accuracy") is not None for r in rows):
        out["panels"].append("accuracy")
    if params:
        out["panels"].append("bits")
        out["final_bits"] = {p: rows[-1].get("bits", {}).get(p) for p in params}
    if any(r.get("measured_energy_pj") is not None for r in rows):
        out["panels"].append("energy")
        out["energy_pj_total"] = float(np.nansum(_series(rows, "measured_energy_pj")))
    return out


def plot_report(rows: list[dict[str, Any]], output: str | os.PathLike[str], title: str | None = None,
                smooth: int | None = None) -> dict[str, Any]:
    """Draw the report PNG for log ``rows`` into ``output``; returns :func:`summarize`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RctcError("rctc report needs matplotlib: pip install 'rctc[plot]'") from exc
    info = summarize(rows)
    steps = np.array([r["step"] for r in rows], float)
    window = smooth or max(1, min(50, len(rows) // 20))
    epochs = [r["step"] for a, r in zip(rows, rows[1:]) if r.get("epoch") != a.get("epoch")]
    panels = info["panels"]
    heights = [1.0 if p != "bits" else max(0.8, 0.11 * len(info.get("final_bits", {})) + 0.3) for p in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.3 * sum(heights) + 0.8), sharex=True,
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    axes = axes[:, 0]
    for ax, panel in zip(axes, panels):
        for s in epochs:  # epoch boundaries (over the heat map, under the curves)
            ax.axvline(s - 0.5, color="white" if panel == "bits" else "0.8", lw=0.8, ls=":", zorder=3 if
                       panel == "bits" else 0)
        if panel == "loss":
            loss = _series(rows, "loss")
            ax.plot(steps, loss, color="tab:blue", alpha=0.3, lw=0.8, label="loss")
            ax.plot(steps, _smooth(loss, window), color="tab:blue", lw=2, label=f"loss (mean of {window})")
            ax.set_ylabel("training loss")
            lr = _series(rows, "lr")
            if np.any(np.isfinite(lr)):
                ax2 = ax.twinx()
                ax2.plot(steps, lr, color="tab:gray", lw=1.2, ls="--", label="learning rate")
                ax2.set_ylabel("learning rate", color="tab:gray")
                ax2.tick_params(axis="y", colors="tab:gray")
                ax2.set_ylim(0, float(np.nanmax(lr)) * 1.15)
                handles = ax.get_legend_handles_labels()
                extra = ax2.get_legend_handles_labels()
                ax.legend(handles[0] + extra[0], handles[1] + extra[1], loc="lower left", fontsize=8, frameon=False)
            else:
                ax.legend(loc="lower left", fontsize=8, frameon=False)
        elif panel == "accuracy":
            acc = _series(rows, "accuracy")
            ax.plot(steps, acc, color="tab:green", alpha=0.3, lw=0.8, label="batch accuracy")
            ax.plot(steps, _smooth(acc, window), color="tab:green", lw=2, label=f"mean of {window}")
            ax.set_ylim(0, 1.02)
            ax.set_ylabel("training accuracy")
            ax.legend(loc="lower right", fontsize=8, frameon=False)
        elif panel == "bits":
            _bits_panel(ax, rows, steps, fig)
        elif panel == "energy":
            e = _series(rows, "measured_energy_pj")
            scale, unit = _energy_unit(float(np.nanmax(e)))
            ax.plot(steps, e / scale, color="tab:red", lw=1.2, drawstyle="steps-mid")
            ax.set_ylim(0, float(np.nanmax(e)) / scale * 1.15)
            ax.set_ylabel(f"measured energy\nper step ({unit})")
            ax.set_title(f"total {info['energy_pj_total'] / _energy_unit(info['energy_pj_total'])[0]:.3g} "
                         f"{_energy_unit(info['energy_pj_total'])[1]}", fontsize=9, loc="right")
        if panel != "bits":
            ax.grid(axis="y", color="0.92")
    axes[-1].set_xlabel("training step")
    axes[-1].set_xlim(steps[0] - 0.5, steps[-1] + 0.5)
    fig.suptitle(title or f"rctc training report: {info['steps']} steps, final loss {info['final_loss']:.4f}",
                 fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(output, buf.getvalue())
    return info


def _bits_panel(ax: Any, rows: list[dict[str, Any]], steps: np.ndarray, fig: Any) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap

    params = sorted({k for r in rows for k in (r.get("bits") or {})})
    grid = np.array([[float((r.get("bits") or {}).get(p, np.nan)) for r in rows] for p in params])
    lo, hi = int(np.nanmin(grid)), int(np.nanmax(grid))
    levels = np.arange(lo, hi + 2) - 0.5
    cmap = ListedColormap(plt.get_cmap("viridis")(np.linspace(0.05, 0.95, max(hi - lo + 1, 1))))
    mesh = ax.pcolormesh(np.append(steps - 0.5, steps[-1] + 0.5), np.arange(len(params) + 1), grid, cmap=cmap,
                         norm=BoundaryNorm(levels, cmap.N), shading="flat")
    ax.set_yticks(np.arange(len(params)) + 0.5)
    ax.set_yticklabels(params, fontsize=7 if len(params) > 12 else 8)
    ax.set_ylim(len(params), 0)
    ax.set_ylabel("weight bits per layer")
    cax = ax.inset_axes((1.01, 0.0, 0.012, 1.0))  # outside the plot area: keeps the panels' x extents aligned
    bar = fig.colorbar(mesh, cax=cax, ticks=np.arange(lo, hi + 1))
    bar.set_label("bits", fontsize=8)
    bar.ax.tick_params(labelsize=7)

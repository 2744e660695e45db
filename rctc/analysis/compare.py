"""Two compiled graphs' static estimates side by side (``rctc inspect A.rct --compare B.rct``).

Needs: two ``inspect`` info dicts (``graph_summary`` + ``estimate``: ``mode``, ``elementwise``,
``batch_size``, ``float_islands``, ``predicted``). Leaves: ``compare_estimates`` - one row per
quantity with both values and B's change relative to A - and ``format_comparison``. Nothing is
recomputed here: both columns are the files' own predictions, so the comparison is exactly what
``rctc inspect`` says of each file alone.
"""

from __future__ import annotations

from typing import Any

#: (key, label, unit) of each compared quantity, in display order
ROWS: tuple[tuple[str, str, str], ...] = (
    ("energy_total_pj", "energy per step, total", "pJ"),
    ("energy_gemm_pj", "  GEMM", "pJ"),
    ("energy_elementwise_pj", "  element-wise", "pJ"),
    ("energy_parameter_movement_pj", "  parameter movement", "pJ"),
    ("energy_activation_movement_pj", "  activation movement", "pJ"),
    ("peak_memory_bytes", "peak memory", "B"),
    ("parameter_memory_bytes", "  parameters", "B"),
    ("activation_memory_bytes", "  activations / errors", "B"),
    ("optimizer_memory_bytes", "  optimizer state", "B"),
    ("float_islands", "float islands (nodes)", ""),
)


def _quantities(info: dict[str, Any]) -> dict[str, float]:
    p = info["predicted"]
    e = p["energy_pj"]
    return {
        "energy_total_pj": float(e["total"]),
        "energy_gemm_pj": float(e["gemm"]),
        "energy_elementwise_pj": float(e["elementwise"]),
        "energy_parameter_movement_pj": float(e["parameter_movement"]),
        "energy_activation_movement_pj": float(e["activation_movement"]),
        "peak_memory_bytes": float(p["peak_memory_bytes"]),
        "parameter_memory_bytes": float(p["parameter_memory_bytes"]),
        "activation_memory_bytes": float(p["activation_memory_bytes"]),
        "optimizer_memory_bytes": float(p["optimizer_memory_bytes"]),
        "float_islands": float(len(info["float_islands"])),
    }


def _label(info: dict[str, Any], name: str) -> dict[str, Any]:
    return {"file": name, "mode": info["mode"], "elementwise": info.get("elementwise"),
            "batch_size": info["batch_size"], "source": info.get("source"),
            "placement": info["predicted"].get("placement")}


def compare_estimates(a: dict[str, Any], b: dict[str, Any], a_name: str, b_name: str) -> dict[str, Any]:
    """``{"a": label, "b": label, "rows": {key: {"a", "b", "change"}}, "notes": [...]}``; ``change`` is
    ``b / a - 1`` (None when ``a`` is 0)."""
    qa, qb = _quantities(a), _quantities(b)
    rows = {k: {"a": qa[k], "b": qb[k], "change": (qb[k] / qa[k] - 1.0) if qa[k] else None} for k, _, _ in ROWS}
    notes = []
    if a.get("source") != b.get("source"):
        notes.append(f"the files come from different models ({a.get('source')} and {b.get('source')})")
    if a["batch_size"] != b["batch_size"]:
        notes.append(f"the batch sizes differ ({a['batch_size']} and {b['batch_size']})")
    pa, pb = a["predicted"].get("placement"), b["predicted"].get("placement")
    if pa != pb and pa and pb:
        moved = sorted(k for k in pa if pa.get(k) != pb.get(k))
        notes.append("memory placement differs (" + ", ".join(f"{k}: {pa[k]} vs {pb[k]}" for k in moved)
                     + "): a smaller working set that fits a nearer memory changes movement energy by its cost ratio")
    return {"a": _label(a, a_name), "b": _label(b, b_name), "rows": rows, "notes": notes}


def _fmt(v: float, unit: str) -> str:
    if unit == "pJ":
        for scale, name in ((1e6, "uJ"), (1e3, "nJ")):
            if abs(v) >= scale:
                return f"{v / scale:.2f} {name}"
        return f"{v:.1f} pJ"
    if unit == "B":
        return f"{v / 1024:.2f} KiB" if v >= 1024 else f"{v:.0f} B"
    return f"{v:.0f}"


def _change_text(a: float, b: float, change: float | None) -> str:
    """``+12.5%``; from zero there is no ratio: ``same`` (0 and 0) or ``from 0``."""
    if change is not None:
        return f"{100 * change:+.1f}%"
    return "same" if b == a else "from 0"


def format_comparison(cmp: dict[str, Any]) -> str:
    """Plain text: a header naming both files and their lowering, one line per quantity."""
    def head(x: dict[str, Any]) -> str:
        return f"{x['file']} ({x['mode']}, element-wise {x['elementwise'] or '-'}, batch {x['batch_size']})"

    lines = [f"A: {head(cmp['a'])}", f"B: {head(cmp['b'])}",
             f"{'quantity':<28} {'A':>14} {'B':>14} {'B vs A':>9}"]
    for key, label, unit in ROWS:
        r = cmp["rows"][key]
        ch = _change_text(r["a"], r["b"], r["change"])
        lines.append(f"{label:<28} {_fmt(r['a'], unit):>14} {_fmt(r['b'], unit):>14} {ch:>9}")
    lines += [f"note: {n}" for n in cmp["notes"]]
    return "\n".join(lines)

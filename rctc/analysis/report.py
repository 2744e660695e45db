"""``estimate``: the static energy / memory report of a compiled model and its savings.

``estimate(graph, profile, baseline)`` returns (``rctc.compiler.estimate`` passes the baselines)

* ``predicted``: energy per training step (``energy_pj_per_step``, split in ``energy_pj``:
  gemm, elementwise, parameter_movement, activation_movement), the memory breakdown
  (``peak_memory_bytes``, ``parameter_memory_bytes`` now and ``..._at_max_bits``, gradient,
  optimizer, activation memory), ``counts`` (MACs, element-wise ops, bytes moved), the
  buffer plan, the placement of each data class and the ``per_layer`` table;
* ``savings``: ``vs_fp32`` and ``vs_qat``, fractions saved (1 - ours / baseline) of
  ``gemm_energy``, ``total_energy``, ``parameter_memory``, ``parameter_movement_energy`` and
  more, with the baseline's own figures. The baselines are the fp32 / qat training graphs of
  the same model, batch and options, compiled through the same pipelines from the forward
  snapshot stored at compile time (``rctc.compiler.baseline_graph``) and costed by the same code;
* ``fits``: whether the peak memory fits the profile's device budget;
* ``text``: the human report ``rctc inspect`` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rctc.analysis.islands import float_islands, island_layers
from rctc.analysis.model import CostModel
from rctc.analysis.profiles import Profile, load_profile
from rctc.ir import Graph

SAVED_ENERGY = {"gemm_energy": "gemm", "elementwise_energy": "elementwise",
                "parameter_movement_energy": "parameter_movement", "activation_movement_energy": "activation_movement",
                "total_energy": "total"}


def predict(graph: Graph, profile: Profile) -> dict[str, Any]:
    """The ``predicted`` section for one graph."""
    model = CostModel(graph, profile)
    total, layers = model.predict()
    plan = model.plan
    energy = total.energy(profile)
    per_layer = []
    for name, c in layers.items():
        e = c.energy(profile)
        per_layer.append({"layer": name, "macs": c.total_macs(), "bytes": c.total_bytes(), "energy_pj": e})
    return {
        "mode": graph.meta.get("mode"),
        "profile": profile.name,
        "batch_size": int(graph.value(graph.meta["model_inputs"][0]).shape[0]),
        "energy_pj_per_step": energy["total"],
        "energy_pj": energy,
        "peak_memory_bytes": plan["peak_bytes"],
        "parameter_memory_bytes": plan["parameters"]["bytes_now"],
        "parameter_memory_bytes_at_max_bits": plan["parameters"]["bytes_at_max_bits"],
        "gradient_memory_bytes": plan["gradient_bytes"],
        "optimizer_memory_bytes": plan["optimizer_bytes"],
        "activation_memory_bytes": plan["transient_peak_bytes"],
        "buffer_memory_bytes": plan["buffer_bytes"] + plan["input_bytes"],
        "memory_plan": plan,
        "placement": model.placement,
        "counts": total.to_dict(),
        "per_layer": per_layer,
    }


def _saved(ours: float, base: float) -> float | None:
    return None if not base else 1.0 - ours / base


def savings(ours: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: _saved(ours["energy_pj"][e], base["energy_pj"][e]) for k, e in SAVED_ENERGY.items()}
    out["parameter_memory"] = _saved(ours["parameter_memory_bytes"], base["parameter_memory_bytes"])
    out["parameter_memory_at_max_bits"] = _saved(ours["parameter_memory_bytes_at_max_bits"],
                                                 base["parameter_memory_bytes_at_max_bits"])
    out["peak_memory"] = _saved(ours["peak_memory_bytes"], base["peak_memory_bytes"])
    out["baseline"] = {k: base[k] for k in ("mode", "energy_pj_per_step", "energy_pj", "parameter_memory_bytes",
                                            "peak_memory_bytes", "placement")}
    out["placement_differs"] = sorted(c for c, lvl in ours["placement"].items() if base["placement"].get(c) != lvl)
    return out


def _placement_note(mode: str, s: dict[str, Any], ours: dict[str, Any]) -> str | None:
    """One line when the baseline keeps a data class at another memory level than ours: then much of
    the total saving is that level's price per bit, not arithmetic (the GEMM saving shows the latter)."""
    moved = s.get("placement_differs") or []
    if not moved:
        return None
    where = ", ".join(f"{c} in {s['baseline']['placement'][c]} (ours in {ours['placement'][c]})" for c in moved)
    return (f"  note: the {mode.upper()} step keeps {where}, since its peak of "
            f"{fmt_bytes(s['baseline']['peak_memory_bytes'])} does not fit the faster level; most of the total "
            "energy saving above is that memory level")


def estimate(graph: Graph, profile: str | Profile | None = None,
             baseline: Callable[[Graph, str], Graph | None] | None = None) -> dict[str, Any]:
    """The full static report of ``graph`` under ``profile`` (name, path, Profile or None = default).

    ``baseline(graph, mode)`` builds the fp32 / qat graph of the same model (the compile driver's
    ``rctc.compiler.baseline_graph``; the analysis never runs passes itself); without it the
    savings are None.
    """
    prof = load_profile(profile)
    ours = predict(graph, prof)
    result: dict[str, Any] = {"predicted": ours, "savings": {}, "profile": prof.to_dict()}
    for mode in ("fp32", "qat"):
        if graph.meta.get("mode") == mode:
            base = ours
        else:
            bg = baseline(graph, mode) if baseline is not None else None
            base = predict(bg, prof) if bg is not None else None
        result["savings"][f"vs_{mode}"] = savings(ours, base) if base is not None else None
    result["fits"] = bool(ours["peak_memory_bytes"] <= prof.memory_budget_bytes)
    result["float_islands"] = float_islands(graph)
    result["float_island_layers"] = sorted(island_layers(graph))
    result["text"] = render(result, prof)
    return result


# ----------------------------------------------------------------------------- text
def fmt_energy(pj: float) -> str:
    for unit, scale in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.2f} {unit}"
    return f"{pj:.1f} pJ"


def fmt_bytes(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def render(result: dict[str, Any], profile: Profile) -> str:
    p = result["predicted"]
    lines = [f"\nenergy per training step ({p['mode']} mode, batch {p['batch_size']}, profile {profile.name}; "
             f"parameters in {p['placement']['parameters']}, activations in {p['placement']['activations']})"]
    head = f"{'layer':<34} {'MACs':>12} {'GEMM':>10} {'elem-wise':>10} {'param mov':>10} {'act mov':>10} {'total':>10}"
    lines.append(head)
    rows = p["per_layer"] + [{"layer": "total", "macs": sum(r["macs"] for r in p["per_layer"]),
                              "energy_pj": p["energy_pj"]}]
    islands = set(result.get("float_island_layers", []))
    for r in rows:
        e = r["energy_pj"]
        if not e["total"]:
            continue  # pure views (Flatten, Reshape): nothing to show
        if r["layer"] == "total":
            lines.append("-" * len(head))
        name = r["layer"][:32] + " *" if r["layer"] in islands else r["layer"][:34]
        lines.append(f"{name:<34} {int(r['macs']):>12,} {fmt_energy(e['gemm']):>10} "
                     f"{fmt_energy(e['elementwise']):>10} {fmt_energy(e['parameter_movement']):>10} "
                     f"{fmt_energy(e['activation_movement']):>10} {fmt_energy(e['total']):>10}")
    fl = result.get("float_islands", [])
    if p["mode"] == "rct":
        listed = ", ".join(f"{i['node']} ({i['op_type']})" for i in fl) if fl else "none"
        lines.append(f"float islands (* above; float32 work, counted as FP32): {listed}")
    plan = p["memory_plan"]
    lines.append("\nmemory (one training step)")
    mem = [("parameters now", p["parameter_memory_bytes"]),
           ("parameters at max bits", p["parameter_memory_bytes_at_max_bits"]),
           ("gradients", p["gradient_memory_bytes"]), ("optimizer state", p["optimizer_memory_bytes"]),
           ("peak activations / errors", p["activation_memory_bytes"]),
           ("buffers and inputs", p["buffer_memory_bytes"]), ("peak total", p["peak_memory_bytes"])]
    for name, n in mem:
        lines.append(f"  {name:<28} {fmt_bytes(n):>12}")
    budget = profile.memory_budget_bytes
    verdict = "fits" if result["fits"] else "does NOT fit"
    lines.append(f"  peak {fmt_bytes(plan['peak_bytes'])} {verdict} in the device budget of {fmt_bytes(budget)}")
    for mode in ("qat", "fp32"):
        s = result["savings"].get(f"vs_{mode}")
        if s is None:
            lines.append(f"savings vs {mode.upper()}: n/a (no forward snapshot in this .rct; recompile it)")
            continue
        lines.append(f"savings vs {mode.upper()} (same model and batch): GEMM energy {_pct(s['gemm_energy'])}, "
                     f"total energy {_pct(s['total_energy'])}, parameter memory {_pct(s['parameter_memory'])}, "
                     f"parameter movement energy {_pct(s['parameter_movement_energy'])}")
        note = _placement_note(mode, s, p)
        if note:
            lines.append(note)
    return "\n".join(lines)



__all__ = ["estimate", "fmt_bytes", "fmt_energy", "predict", "render", "savings"]

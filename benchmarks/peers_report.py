"""The markdown report of run_benchmarks.py: step times, peak RSS, kernels, int8 GEMM, targets.

Needs: the merged peer results (``{(model, peer): dict}``, see ``run_benchmarks.merge_rounds``),
the compile-time dict of compile_times.py, the JSON of native_gemm.py (or an error), the machine
description and the load averages. Leaves: one markdown string; standard library only.
"""

from __future__ import annotations

import time
from typing import Any

import _common

LABELS: dict[str, str] = {
    "rctc_native": "rctc rct (native)",
    "rctc_rct": "rctc rct (numpy)",
    "rctc_qat": "rctc qat (numpy)",
    "rctc_fp32": "rctc fp32 (numpy)",
    "torch_fp32": "PyTorch fp32",
    "torch_qat": "PyTorch QAT",
    "ort": "ORT training",
}
#: (numerator, denominator) step-time ratios shown beside the times
RATIOS: tuple[tuple[str, str], ...] = (
    ("rctc_native", "torch_fp32"), ("rctc_native", "torch_qat"), ("rctc_native", "ort"),
    ("rctc_native", "rctc_rct"), ("rctc_rct", "torch_fp32"),
)
BIG_CNNS = ("resnet8", "resnet20", "mobilenet")
SMALL = ("mlp", "lenet")
GEMM_TARGET = 0.5
BUSY_LOAD = 2.0  # 1-min load average above which the report says the times are badly inflated
Results = dict[tuple[str, str], dict[str, Any]]


def ms(res: dict[str, Any] | None) -> float | None:
    """The step time of a successful result, else None."""
    if not res or "error" in res or "unavailable" in res:
        return None
    return float(res["ms_per_step_median"])


def rss(res: dict[str, Any] | None) -> int | None:
    if not res or "error" in res or "unavailable" in res or not res.get("peak_rss_bytes"):
        return None
    return int(res["peak_rss_bytes"])


def cell_ms(res: dict[str, Any] | None) -> str:
    if res and "unavailable" in res:
        return f"n/a ({res['unavailable']})"
    if res and "error" in res:
        return "failed (see notes)"
    v = ms(res)
    return "—" if v is None else f"{v:.2f}"


def cell_mib(res: dict[str, Any] | None) -> str:
    v = rss(res)
    if v is None:
        return "n/a" if res and "unavailable" in res else "—"
    return f"{v / 2**20:.0f}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else "yes" if met else "NO"


def targets(models: list[str], results: Results, gemm: dict[str, Any] | None = None,
            comp: dict[str, Any] | None = None,
            builds: dict[str, Any] | None = None) -> list[tuple[str, str, str, bool | None]]:
    """Issue 16's targets as (target, native measured, numpy for reference, met by native); met is None
    when a number is missing (the native backend unavailable, a peer skipped)."""
    rows: list[tuple[str, str, str, bool | None]] = []

    def get(m: str, p: str) -> float | None:
        return ms(results.get((m, p)))

    def cmp(name: str, m: str, peer: str, factor: float) -> None:
        nat, num, ref = get(m, "rctc_native"), get(m, "rctc_rct"), get(m, peer)
        if ref is None:
            if (m, peer) in results:
                rows.append((name, f"{LABELS[peer]}: {cell_ms(results[(m, peer)])}", "", None))
            return
        bound = f"{factor:g} x {ref:.2f}" if factor != 1 else f"{ref:.2f}"

        def show(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.2f} vs {bound} ms ({v / ref:.2f}x)"

        rows.append((name, show(nat), show(num), None if nat is None else nat <= factor * ref))

    for m in models:
        if m in BIG_CNNS:
            cmp(f"{m}: rct <= 0.5x PyTorch fp32", m, "torch_fp32", 0.5)
        elif m in SMALL:
            cmp(f"{m}: rct <= 1.0x PyTorch fp32", m, "torch_fp32", 1.0)
        cmp(f"{m}: rct <= 0.3x PyTorch QAT", m, "torch_qat", 0.3)
        if get(m, "ort") is not None:
            cmp(f"{m}: rct <= ORT training", m, "ort", 1.0)
        nat, num, tf = rss(results.get((m, "rctc_native"))), rss(results.get((m, "rctc_rct"))), \
            rss(results.get((m, "torch_fp32")))
        if tf is not None:
            def show_rss(v: int | None, tf: int = tf) -> str:
                return "n/a" if v is None else f"{v / 2**20:.0f} vs {tf / 2**20:.0f} MiB"

            rows.append((f"{m}: peak RSS <= PyTorch fp32's", show_rss(nat), show_rss(num),
                         None if nat is None else nat <= tf))
    if gemm and "rows" in gemm:
        big = _common.better_half([f["better"] for f in gemm_fractions(gemm)])
        med = _common.median(big)
        rows.append((f"int8 GEMM >= {GEMM_TARGET:.0%} of the int8 peak on the big layers",
                     f"median of the better half {med:.0%} of {_peak_facts(gemm)['peak_gops']:.0f} GOPS", "",
                     med >= GEMM_TARGET))
        if gemm.get("load_s") is not None:
            rows.append(("cached start < 0.5 s (the kernel library's cached load_library() in a fresh "
                         "interpreter; not a whole model's step)", f"{gemm['load_s'] * 1e3:.0f} ms", "",
                         gemm["load_s"] < 0.5))
    for m, b in (builds or {}).items():
        for key, name, bound in (("first", "first build of the step (library cached)", 5.0),
                                 ("cached", "cached start", 0.5)):
            raw, step = b[key].get("native_setup_seconds"), ms(b[key])
            if raw is None or step is None:
                rows.append((f"{m}: {name} <= {bound:g} s", cell_ms(b[key]), "", None))
                continue
            sec = max(0.0, raw - step / 1e3)  # the setup less one step (the median of the steps after it)
            rows.append((f"{m}: {name} <= {bound:g} s", f"{sec:.2f} s ({raw:.2f} s with its first step)", "",
                         sec <= bound))
    for m, s in ((comp or {}).get("seconds") or {}).items():
        rows.append((f"compile {m} < 1 s (earlier issue)", f"{s:.3f} s", "", s < 1.0))
    return rows


def _peak_facts(gemm: dict[str, Any]) -> dict[str, Any]:
    """Clock, int8 MACs per cycle and core / machine peak GOPS of native_gemm.run()'s result (its
    ``peaks`` block; older results carried them at the top level)."""
    if "peaks" not in gemm:
        return {k: gemm[k] for k in ("ghz", "per_cycle", "why", "peak_gops", "core_peak_gops")}
    pk = gemm["peaks"]
    macs, why = pk["int8"]
    return {"ghz": pk["ghz"], "per_cycle": macs, "why": why, "core_peak_gops": gemm["core_peak_gops"],
            "peak_gops": gemm["cores"] * gemm["core_peak_gops"]}


def gemm_fractions(gemm: dict[str, Any]) -> list[dict[str, float]]:
    """Per GEMM row, as native_gemm.py reports it: the dispatched variant's share of one core's int8 peak
    at 1 thread, of the machine's at 2 threads, and the better of the two."""
    out = []
    pf = _peak_facts(gemm)
    for r in gemm["rows"]:
        f1, f2 = r[f"{gemm['isa']} 1t"] / pf["core_peak_gops"], r[f"{gemm['isa']} 2t"] / pf["peak_gops"]
        out.append({"1t": f1, "2t": f2, "better": max(f1, f2)})
    return out


def kernels_section(peers: list[str], results: Results) -> list[str]:
    """Per peer, the libraries threadpoolctl saw (library, internal_api, architecture, num_threads)."""
    lines = ["## Kernels each peer ran (threadpoolctl `threadpool_info()` after the timed steps)", "",
             "| peer | threadpoolctl: library (internal_api version, architecture, num_threads) | also |",
             "|---|---|---|"]
    for p in peers:
        seen: dict[str, None] = {}
        also: dict[str, None] = {}
        for (_, peer), r in results.items():
            if peer != p or ms(r) is None:
                continue
            seen[_common.describe_kernels(r.get("kernels") or [])] = None
            if r.get("torch_cpu_capability"):
                also[f"torch CPU capability {r['torch_cpu_capability']}"] = None
            if r.get("native_isa"):
                also[f"native C kernels: dispatched variant `{r['native_isa']}`, "
                     f"{r.get('native_threads')} threads (own pthreads pool)"] = None
            if r.get("kernels_note"):
                also[f"onnxruntime-training {r.get('onnxruntime')} run on CPU (device='cpu'; available "
                     f"providers {', '.join(r.get('ort_providers') or [])}); {r['kernels_note']}"] = None
        if seen:
            lines.append(f"| {LABELS.get(p, p)} | {' / '.join(seen)} | {'; '.join(also)} |")
        else:
            lines.append(f"| {LABELS.get(p, p)} | (did not run) | |")
    return lines


def gemm_section(gemm: dict[str, Any] | None) -> list[str]:
    """The int8 GEMM GOPS on the largest layers beside the machine's int8 peak (native_gemm.py's JSON)."""
    lines = ["## int8 GEMM throughput on the largest layers (benchmarks/native_gemm.py)", ""]
    if not gemm or "rows" not in gemm:
        lines.append(f"not measured: {(gemm or {}).get('error', 'skipped (--no-gemm)')}")
        return lines
    flags = set(gemm.get("cpu_flags") or [])
    avx512 = sorted(f for f in flags if f.startswith("avx512"))
    isa = gemm["isa"]
    pf = _peak_facts(gemm)
    lines += [
        f"- CPU: {gemm['cpu']}, {gemm['cores']} cores at {pf['ghz']:.3f} GHz; SIMD: "
        f"{'AVX2 yes' if 'avx2' in flags else 'no AVX2'}, "
        + (f"AVX-512 {', '.join(avx512)}" if avx512 else
           "**no AVX-512** (no avx512* flag in /proc/cpuinfo, so no AVX-512 VNNI either; the issue's "
           "premise of VNNI does not hold on this VM)") + f"; dispatched GEMM variant `{isa}`.",
        f"- int8 peak = cores x clock x int8 MACs/cycle x 2 ops = {gemm['cores']} x {pf['ghz']:.3f} x "
        f"{pf['per_cycle']:.1f} x 2 = **{pf['peak_gops']:.0f} GOPS** ({pf['core_peak_gops']:.0f} per core). "
        f"MACs/cycle: {pf['why']}.",
        f"- numpy float32 matmul for comparison: {gemm['blas']}.",
        "",
        f"| model | layer | direction | M x N x K | `{isa}` 1t GOPS | `{isa}` 2t GOPS | numpy f32 2t GOPS | "
        "1t / core peak | 2t / peak |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    fracs = gemm_fractions(gemm)
    for r, f in zip(gemm["rows"], fracs):
        lines.append(f"| {r['model']} | {r['layer']} | {r['direction']} | {r['shape']} | {r[f'{isa} 1t']:.1f} | "
                     f"{r[f'{isa} 2t']:.1f} | {r['numpy f32 2t']:.1f} | {f['1t']:.0%} | {f['2t']:.0%} |")
    fr = [f["better"] for f in fracs]
    big = _common.median(_common.better_half(fr))
    lines += ["", f"Share of the peak (better of 1t / 2t per row): best {max(fr):.0%}, median of the better half "
              f"{big:.0%} (target >= {GEMM_TARGET:.0%}). Full table with the portable variant and 1-thread "
              "numpy: `python benchmarks/native_gemm.py` (benchmarks/NATIVE_GEMM.md)."]
    return lines


def _load_range(results: Results) -> str:
    vals = [r["loadavg_1m_at_start"] for r in results.values() if r.get("loadavg_1m_at_start") is not None]
    return f"{min(vals):.2f}-{max(vals):.2f}" if vals else "?"


def render(models: list[str], peers: list[str], results: Results, comp: dict[str, Any],
           gemm: dict[str, Any] | None, machine: dict[str, Any], load: dict[str, str], argv: list[str],
           timing: dict[str, Any], batch: int, rounds: int = 1, skipped: dict[str, str] | None = None,
           builds: dict[str, Any] | None = None) -> str:
    """The whole RESULTS.md text."""
    skipped = skipped or {}
    lines = ["# rctc benchmark results", ""]
    lines.append(f"Command: `{' '.join(['python benchmarks/run_benchmarks.py', *argv])}`  ")
    lines.append(f"Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  ")
    lines.append(f"Batch {batch}; {_common.NUM_THREADS} threads for every peer (OMP/MKL/OPENBLAS_NUM_THREADS, "
                 "torch.set_num_threads, ORT intra_op_num_threads, the native kernels' nthreads); "
                 "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for every peer. Median step time after "
                 f"{timing['warmup']} warm-up steps, at least {timing['min_steps']} steps and "
                 f"{timing['min_seconds']} s (a slow peer stops warming up after {_common.WARMUP_BUDGET_S:g} s "
                 f"and timing after {_common.TIMED_BUDGET_S:g} s and {_common.BUDGET_MIN_STEPS} steps); each peer "
                 f"in its own process (peak RSS = its VmHWM). {rounds} "
                 "round(s) of the whole sweep, the peer order rotated each round; a cell is the median of "
                 "the peer's round medians.")
    busy = max([r["loadavg_1m_at_start"] for r in results.values() if r.get("loadavg_1m_at_start") is not None],
               default=0.0)
    how = ("Read ratios to +-30%." if busy <= BUSY_LOAD else
           f"With the 1-min load above {BUSY_LOAD:g} on 2 cores the times are inflated several- to tens-fold, "
           "unevenly (a 2-thread peer waits for its descheduled thread), so the ratios are far rougher than "
           "+-30% and a target judged here can flip on a quiet machine.")
    lines += ["", f"**The numbers are rough**: this 2-core VM is shared by up to 9 sessions. Load average "
              f"(1 / 5 / 15 min) at the start {load.get('start', '?')}, at the end {load.get('end', '?')}; "
              f"1-min load when each peer started: {_load_range(results)}. {how}", ""]
    lines += ["## Machine", ""] + [f"- {k}: {v}" for k, v in machine.items()] + [""]
    lines += ["## Step time (ms/step, median) and ratios", ""]
    shown = [p for p in peers if any((m, p) in results for m in models)]
    rat = [(a, b) for a, b in RATIOS if a in shown and b in shown]
    head = ["model", *[LABELS.get(p, p) for p in shown], *[f"{LABELS[a]} / {LABELS[b]}" for a, b in rat]]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in models:
        row = [m] + [cell_ms(results.get((m, p))) for p in shown]
        row += [ratio(ms(results.get((m, a))), ms(results.get((m, b)))) for a, b in rat]
        lines.append("| " + " | ".join(row) + " |")
    for p, why in skipped.items():
        lines.append(f"\n{LABELS.get(p, p)}: not run: {why}")
    lines += ["", "## Peak RSS (MiB, whole process: VmHWM of the process that trains)", ""]
    lines += ["| model | " + " | ".join(LABELS.get(p, p) for p in shown) + " |", "|" + "---|" * (len(shown) + 1)]
    for m in models:
        lines.append(f"| {m} | " + " | ".join(cell_mib(results.get((m, p))) for p in shown) + " |")
    notes = [(m, p, r["error"]) for (m, p), r in results.items() if "error" in r]
    notes += [(m, p, f"{len(r['failed_rounds'])} round(s) failed and are left out: {r['failed_rounds'][0]}")
              for (m, p), r in results.items() if r.get("failed_rounds")]
    notes += [(m, p, r["note"]) for (m, p), r in results.items() if p == "torch_qat" and m == "tiny_transformer"
              and r.get("note")]
    if notes:
        lines += ["", "Notes and errors:", ""] + [f"- {m} / {LABELS.get(p, p)}: {t}" for m, p, t in notes]
    spread = []
    for m in models:
        cells = [f"{LABELS.get(p, p)} {' / '.join(f'{v:.2f}' for v in meds)}" for p in shown
                 if len(meds := results.get((m, p), {}).get("round_medians", [])) > 1]
        if cells:
            spread.append(f"- {m}: " + "; ".join(cells))
    if spread:
        lines += ["", "Round medians (ms/step), in round order:", "", *spread]
    nat = [(m, r) for (m, p), r in results.items() if p == "rctc_native" and ms(r) is not None]
    if nat:
        lines += ["", "Native backend, per model: nodes of the training step run in C (the rest on the numpy "
                  "kernels) and the setup time (Trainer + first step: generate, build or load the cached C, in "
                  "the peer's process; the cache holds what earlier rounds built): " + ", ".join(
                      f"{m} {r['native_nodes_in_c'][0]}/{r['native_nodes_in_c'][1]} nodes, "
                      f"{r.get('native_setup_seconds', float('nan')):.2f} s" for m, r in nat
                      if r.get("native_nodes_in_c"))]
    lines += ["", *kernels_section(shown, results), "", *gemm_section(gemm), ""]
    lines += ["## Compile time (rctc compile --mode rct, best of repeats, after one warm-up compile)", ""]
    if "error" in comp:
        lines.append(f"compile timing failed: {comp['error']}")
    else:
        lines += [f"models/ networks at batch {comp.get('batch')}: " + ", ".join(
            f"{m} {s:.3f} s" for m, s in (comp.get("seconds") or {}).items())]
    lines += ["", "## Targets (issue 16), met by the native backend", "",
              "| target | rct native | rct numpy (for reference) | met |", "|---|---|---|---|"]
    lines += [f"| {n} | {a} | {b} | {_verdict(met)} |" for n, a, b, met in
              targets(models, results, gemm, comp, builds)]
    lines += ["", "First build / cached start: the native peer's setup (Trainer + its first training step, "
              "which generates the model's C and builds it or loads the cached build) in a fresh process, "
              "first with an empty cache holding only the kernel library's compiled objects, then again; "
              "the table shows that time less the median of the steps after it, and with the first step."
              if builds else "First build / cached start: not measured.",
              "", "Not measured by this benchmark: the LeNet-5 epoch on MNIST-sized data.", ""]
    prof = [(m, (results.get((m, "rctc_rct")) or {}).get("op_ms_per_step")) for m in models]
    if any(p for _, p in prof):
        lines += ["## rctc rct on numpy: wall time per op type (ms/step, top 10)", ""]
        for m, p in prof:
            if p:
                total = sum(p.values())
                lines.append(f"- **{m}** (sum {total:.2f} ms): " + ", ".join(
                    f"{k} {v:.2f} ({100 * v / total:.0f}%)" for k, v in list(p.items())[:10]))
        lines.append("")
    return "\n".join(lines)

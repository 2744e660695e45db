"""Side-by-side training-step benchmark of rctc against PyTorch and ONNX Runtime, in one run.

Times one training step (median of many after warm-up, 2 intra-op threads for every peer) of
rctc in rct / qat / fp32 modes, PyTorch fp32 eager, PyTorch eager QAT and ONNX Runtime training
on the models/ networks at batch 32, each peer in its own interpreter (so its peak RSS is its
own), plus the compile time of every network and of onnx's bundled light ResNet-50. Writes a
markdown report (atomically) and prints it::

    python benchmarks/run_benchmarks.py                      # everything -> benchmarks/RESULTS.md
    python benchmarks/run_benchmarks.py --quick --models mlp,lenet -o /tmp/r.md   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

PEERS: tuple[str, ...] = ("rctc_rct", "rctc_qat", "rctc_fp32", "torch_fp32", "torch_qat", "ort")
RATIO_PEERS: tuple[str, ...] = ("rctc_qat", "rctc_fp32", "torch_fp32", "torch_qat", "ort")
LOAD_WARN = 0.5


def merge_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One peer's result over several rounds: the median of the round medians (a slow phase of
    the shared machine that hits one round does not move it), the round medians themselves,
    the largest peak RSS, the errors of failed rounds (``failed_rounds``), and the other fields of
    the round nearest that median. All rounds failed: the first error."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    meds = [float(r["ms_per_step_median"]) for r in ok]
    mid = _common.median(meds)
    best = min(ok, key=lambda r: abs(float(r["ms_per_step_median"]) - mid))
    merged = dict(best)
    merged["ms_per_step_median"] = mid
    merged["round_medians"] = [round(v, 4) for v in meds]
    failed = [r["error"] for r in runs if "error" in r]
    if failed:
        merged["failed_rounds"] = failed
    rss = [r["peak_rss_bytes"] for r in ok if r.get("peak_rss_bytes")]
    if rss:
        merged["peak_rss_bytes"] = max(rss)
    return merged


def run_peers(models: list[str], peers: list[str], batch: int, timing: dict[str, Any], rounds: int = 1,
              log: Any = sys.stderr) -> dict[tuple[str, str], dict[str, Any]]:
    """Every (model, peer) pair in its own subprocess, ``rounds`` times (the peer order rotated
    each round), merged by :func:`merge_rounds`; never raises for a failing peer."""
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in range(rounds):
        for model in models:
            order = peers[r % len(peers):] + peers[:r % len(peers)]
            for peer in order:
                t0 = time.perf_counter()
                res = _common.run_in_subprocess(peer, model, batch=batch, **timing)
                runs.setdefault((model, peer), []).append(res)
                what = res.get("error") or f"{res.get('ms_per_step_median', float('nan')):.2f} ms/step"
                print(f"  round {r + 1}/{rounds}  {model:<17} {peer:<11} {what}  "
                      f"({time.perf_counter() - t0:.0f} s)", file=log, flush=True)
    return {(m, p): merge_rounds(runs[(m, p)]) for m in models for p in peers}


def compile_times(models: list[str], quick: bool) -> dict[str, Any]:
    """Run compile_times.py in a fresh interpreter (2 threads); ``{"error": ...}`` on failure."""
    cmd = [sys.executable, str(_common.HERE / "compile_times.py"), "--models", ",".join(models),
           "--repeat", "1" if quick else "3"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_common.thread_env(), timeout=1800,
                              check=False)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as exc:
        return {"error": str(exc)}


def _ms(res: dict[str, Any] | None) -> float | None:
    if not res or "error" in res:
        return None
    return float(res["ms_per_step_median"])


def _fmt_ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def _fmt_mib(res: dict[str, Any] | None) -> str:
    if not res or "error" in res:
        return "—"
    return f"{res['peak_rss_bytes'] / 2**20:.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def targets(models: list[str], results: dict[tuple[str, str], dict[str, Any]],
            comp: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, detail, met) rows; met None when the data is missing."""
    rows: list[tuple[str, str, bool | None]] = []

    def get(m: str, p: str) -> float | None:
        return _ms(results.get((m, p)))

    for m in models:
        rct, tf, tq, ort = get(m, "rctc_rct"), get(m, "torch_fp32"), get(m, "torch_qat"), get(m, "ort")
        if m in ("resnet8", "resnet20", "mobilenet"):
            rows.append((f"{m}: rct <= torch fp32", f"{_fmt_ms(rct)} vs {_fmt_ms(tf)} ms",
                         None if rct is None or tf is None else rct <= tf))
        elif m in ("mlp", "lenet"):
            rows.append((f"{m}: rct <= 2x torch fp32", f"{_fmt_ms(rct)} vs 2 x {_fmt_ms(tf)} ms",
                         None if rct is None or tf is None else rct <= 2 * tf))
        if ort is not None:
            rows.append((f"{m}: rct <= ORT training", f"{_fmt_ms(rct)} vs {_fmt_ms(ort)} ms",
                         None if rct is None else rct <= ort))
        rows.append((f"{m}: rct <= 0.6x torch QAT", f"{_fmt_ms(rct)} vs 0.6 x {_fmt_ms(tq)} ms",
                     None if rct is None or tq is None else rct <= 0.6 * tq))
        r_rss, t_rss = results.get((m, "rctc_rct")), results.get((m, "torch_fp32"))
        if r_rss and t_rss and "error" not in r_rss and "error" not in t_rss:
            rows.append((f"{m}: peak RSS <= torch fp32", f"{_fmt_mib(r_rss)} vs {_fmt_mib(t_rss)} MiB",
                         r_rss["peak_rss_bytes"] <= t_rss["peak_rss_bytes"]))
    for m, s in (comp.get("seconds") or {}).items():
        rows.append((f"compile {m} < 1 s", f"{s:.3f} s", s < 1.0))
    r50 = comp.get("light_resnet50") or {}
    if "seconds" in r50:
        rows.append((f"compile light ResNet-50 (batch {r50['batch']}) < 5 s", f"{r50['seconds']:.2f} s",
                     r50["seconds"] < 5.0))
    return rows


def render(models: list[str], peers: list[str], results: dict[tuple[str, str], dict[str, Any]],
           comp: dict[str, Any], machine: dict[str, Any], load_start: float | None, argv: list[str],
           timing: dict[str, Any], batch: int, rounds: int = 1) -> str:
    lines = ["# rctc benchmark results", ""]
    cmd = " ".join(["python benchmarks/run_benchmarks.py", *argv])
    lines.append(f"Command: `{cmd}`  ")
    lines.append(f"Date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}  ")
    lines.append(f"Batch {batch}; {_common.NUM_THREADS} intra-op threads per peer "
                 "(OMP/MKL/OPENBLAS_NUM_THREADS, torch.set_num_threads); median step time after "
                 f"{timing['warmup']} warm-up steps, at least {timing['min_steps']} steps and "
                 f"{timing['min_seconds']} s. Each peer runs in its own interpreter. {rounds} round(s) "
                 "of the whole sweep, the peer order rotated each round; a cell is the median of the "
                 "peer's round medians (all round medians are listed below the tables).")
    lines.append("")
    lines.append("## Machine")
    lines.append("")
    for k, v in machine.items():
        lines.append(f"- {k}: {v}")
    if load_start is not None:
        warn = f" — WARNING: above {LOAD_WARN}, other work on the machine inflates the times" \
            if load_start > LOAD_WARN else ""
        lines.append(f"- load average (1 min) at start: {load_start:.2f}{warn}")
    lines.append("")
    lines.append("## Step time (ms/step, median) and ratios rctc rct / peer")
    lines.append("")
    head = ["model", *peers, *[f"rct/{p}" for p in RATIO_PEERS if p in peers and "rctc_rct" in peers]]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for m in models:
        row = [m] + [_fmt_ms(_ms(results.get((m, p)))) for p in peers]
        if "rctc_rct" in peers:
            rct = _ms(results.get((m, "rctc_rct")))
            row += [_ratio(rct, _ms(results.get((m, p)))) for p in RATIO_PEERS if p in peers]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("## Peak RSS (MiB, whole process)")
    lines.append("")
    lines.append("| model | " + " | ".join(peers) + " |")
    lines.append("|" + "---|" * (len(peers) + 1))
    for m in models:
        lines.append(f"| {m} | " + " | ".join(_fmt_mib(results.get((m, p))) for p in peers) + " |")
    notes = [(m, p, r["error"]) for (m, p), r in results.items() if "error" in r]
    notes += [(m, p, f"{len(r['failed_rounds'])} round(s) failed and are left out: {r['failed_rounds'][0]}")
              for (m, p), r in results.items() if r.get("failed_rounds")]
    notes += [(m, p, r["note"]) for (m, p), r in results.items() if r.get("note") and p.startswith("torch_qat")
              and m == "tiny_transformer"]
    if notes:
        lines.append("")
        lines.append("Notes and errors:")
        lines.append("")
        for m, p, text in notes:
            lines.append(f"- {m} / {p}: {text}")
    spread = []
    for m in models:
        cells = [f"{p} {' / '.join(f'{v:.2f}' for v in meds)}" for p in peers
                 if len(meds := results.get((m, p), {}).get("round_medians", [])) > 1]
        if cells:
            spread.append(f"- {m}: " + "; ".join(cells))
    if spread:
        lines += ["", "Round medians (ms/step), in round order:", "", *spread]
    lines.append("")
    lines.append("## Compile time (rctc compile --mode rct, best of repeats, after one warm-up compile)")
    lines.append("")
    if "error" in comp:
        lines.append(f"compile timing failed: {comp['error']}")
    else:
        lines.append(f"models/ networks at batch {comp.get('batch')}:")
        lines.append("")
        lines.append("| network | seconds |")
        lines.append("|---|---|")
        for m, s in (comp.get("seconds") or {}).items():
            lines.append(f"| {m} | {s:.3f} |")
        r50 = comp.get("light_resnet50") or {}
        if "seconds" in r50:
            lines.append(f"| light ResNet-50 (onnx bundled, batch {r50['batch']}) | {r50['seconds']:.3f} |")
        elif r50:
            lines.append(f"| light ResNet-50 | {r50.get('error')} |")
    lines.append("")
    lines.append("## Targets")
    lines.append("")
    lines.append("| target | measured | met |")
    lines.append("|---|---|---|")
    for name, detail, met in targets(models, results, comp):
        lines.append(f"| {name} | {detail} | {'n/a' if met is None else 'yes' if met else 'NO'} |")
    lines.append("")
    lines.append("## rctc rct mode: wall time per op type (ms/step, top 10)")
    lines.append("")
    for m in models:
        prof = (results.get((m, "rctc_rct")) or {}).get("op_ms_per_step")
        if not prof:
            continue
        total = sum(prof.values())
        top = list(prof.items())[:10]
        lines.append(f"- **{m}** (sum {total:.2f} ms): " +
                     ", ".join(f"{k} {v:.2f} ({100 * v / total:.0f}%)" for k, v in top))
    lines.append("")
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description="rctc vs PyTorch vs ONNX Runtime training-step benchmark")
    ap.add_argument("--models", default=",".join(_common.MODELS), help="comma-separated models/ networks")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)}")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="few steps (smoke run; timings not meaningful)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="sweeps of every (model, peer) pair; a peer's time is the median of its round medians")
    ap.add_argument("-o", "--output", default=str(_common.HERE / "RESULTS.md"))
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    peers = [p for p in args.peers.split(",") if p]
    bad = [p for p in peers if p not in _common.PEER_SCRIPTS] + [m for m in models if m not in _common.MODELS]
    if bad:
        ap.error(f"unknown peer/model: {', '.join(bad)}")
    if args.rounds < 1:
        ap.error(f"--rounds must be >= 1, got {args.rounds}")
    rounds = 1 if args.quick else args.rounds
    timing = ({"warmup": 1, "min_steps": 3, "min_seconds": 0.0, "max_steps": 3} if args.quick else
              {"warmup": 5, "min_steps": 20, "min_seconds": 2.0, "max_steps": 2000})
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load_start is not None and load_start > LOAD_WARN:
        print(f"warning: 1-minute load average is {load_start:.2f} (> {LOAD_WARN}); timings will be inflated",
              file=sys.stderr)
    if "ort" in peers:
        import peers_ort

        why = peers_ort.ensure_venv()
        if why:
            print(f"ORT peer skipped: {why}", file=sys.stderr)
            peers.remove("ort")
    if not peers:
        ap.error("no peer left to run")
    machine = _common.machine_info()
    print(f"benchmarking {len(models)} models x {len(peers)} peers ...", file=sys.stderr)
    results = run_peers(models, peers, args.batch, timing, rounds)
    comp = compile_times(models, args.quick)
    text = render(models, peers, results, comp, machine, load_start, argv, timing, args.batch, rounds)
    write_atomic(Path(args.output), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Side-by-side training-step benchmark of rctc against PyTorch and ONNX Runtime, in one run.

Times one training step (median of many after warm-up, 2 threads for every peer, OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE unset) of rctc rct mode on the native C backend and on the numpy runtime, PyTorch
fp32 eager, PyTorch eager QAT and ONNX Runtime training (its own venv: peers_ort.py --setup) on the
models/ networks at batch 32, each peer in its own process (so its peak RSS is its own), records the
kernels each peer ran (threadpoolctl), the int8 GEMM's GOPS on the largest layers beside the
machine's int8 peak (native_gemm.py) and the compile time of every network. Writes a markdown
report (atomically; peers_report.py renders it) and prints it::

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
import peers_report  # noqa: E402

#: the default sweep (issue 16's five columns); rctc_qat and rctc_fp32 run when named in --peers
PEERS: tuple[str, ...] = ("rctc_native", "rctc_rct", "torch_fp32", "torch_qat", "ort")
LOAD_WARN = 0.5


def merge_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One peer's result over several rounds: the median of the round medians (a slow phase of
    the shared machine that hits one round does not move it), the round medians themselves,
    the largest peak RSS, the errors of failed rounds (``failed_rounds``), and the other fields of
    the round nearest that median. All rounds failed or unavailable: the first round's result."""
    ok = [r for r in runs if "error" not in r and "unavailable" not in r]
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
                what = res.get("error") or (f"n/a ({res['unavailable']})" if "unavailable" in res else
                                            f"{res.get('ms_per_step_median', float('nan')):.2f} ms/step")
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


def native_gemm(quick: bool, log: Any = sys.stderr) -> dict[str, Any]:
    """``native_gemm.run()`` (the int8 GEMMs of the largest layers, the machine's int8 peak) in a fresh
    interpreter without the OpenBLAS overrides, plus the CPU's flags; its dict, or ``{"error": ...}``.
    benchmarks/NATIVE_GEMM.md is left alone (``python benchmarks/native_gemm.py`` rewrites it)."""
    code = (f"import json, sys; sys.path.insert(0, {str(_common.HERE)!r}); import native_gemm; "
            f"r = native_gemm.run(32, {0.02 if quick else 0.3}); r['cpu_flags'] = sorted(native_gemm.cpu_flags()); "
            "print(json.dumps(r))")
    print("  int8 GEMM throughput (native_gemm.run) ...", file=log, flush=True)
    try:
        exit_code, out, err, _ = _common.run_measured([sys.executable, "-c", code], _common.thread_env(), 1800)
    except subprocess.TimeoutExpired:
        return {"error": "native_gemm.run timed out"}
    lines = out.strip().splitlines()
    if exit_code != 0 or not lines:
        return {"error": f"native_gemm.run exit {exit_code}: {(err.strip().splitlines() or ['no output'])[-1]}"}
    return json.loads(lines[-1])


def native_builds(models: list[str], batch: int, log: Any = sys.stderr) -> dict[str, Any]:
    """Per model, the native peer's setup time (Trainer + its first step: generate the C, build or load
    it) twice in fresh processes: first in an empty cache holding only the kernel library's compiled
    objects (the first build of the model's step), then again with that build cached (a cached start)."""
    import shutil

    from rctc.native.build import cache_dir

    quick = {"warmup": 0, "min_steps": 3, "min_seconds": 0.0, "max_steps": 3}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rctc_build_") as tmp:
        env = _common.thread_env() | {"XDG_CACHE_HOME": tmp}
        objs = cache_dir() / "obj"
        if objs.is_dir():
            shutil.copytree(objs, cache_dir(env) / "obj")
        for m in models:
            first = _common.run_in_subprocess("rctc_native", m, batch=batch, env=env, **quick)
            again = _common.run_in_subprocess("rctc_native", m, batch=batch, env=env, **quick)
            out[m] = {"first": first, "cached": again, "library_objects_cached": objs.is_dir()}
            print(f"  native build {m:<17} first {first.get('native_setup_seconds', float('nan')):.2f} s, "
                  f"cached {again.get('native_setup_seconds', float('nan')):.2f} s", file=log, flush=True)
    return out


def loadavg() -> str:
    """The 1 / 5 / 15-minute load averages as text ("?" where the OS has none)."""
    return " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"



def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description="rctc vs PyTorch vs ONNX Runtime training-step benchmark")
    ap.add_argument("--models", default=",".join(_common.MODELS), help="comma-separated models/ networks")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help=f"comma-separated subset of {','.join(_common.PEER_SCRIPTS)}")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="few steps (smoke run; timings not meaningful)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="sweeps of every (model, peer) pair; a peer's time is the median of its round medians")
    ap.add_argument("--ort-venv", default=None,
                    help="the ONNX Runtime training venv (default $RCTC_ORT_VENV, else benchmarks/.venv-ort)")
    ap.add_argument("--no-gemm", action="store_true", help="skip the int8 GEMM throughput (native_gemm.py)")
    ap.add_argument("--no-builds", action="store_true", help="skip the native first-build / cached-start times")
    ap.add_argument("--no-compile-times", action="store_true", help="skip compile_times.py")
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
    load = {"start": loadavg()}
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > LOAD_WARN:
        print(f"warning: load average {load['start']} (1-min > {LOAD_WARN}); timings will be inflated",
              file=sys.stderr)
    skipped: dict[str, str] = {}
    if "ort" in peers:
        import peers_ort

        if args.ort_venv:
            os.environ[peers_ort.VENV_ENV] = args.ort_venv  # the peers' environment (thread_env) carries it
        why = peers_ort.check_venv()
        if why:
            print(f"ORT peer skipped: {why}", file=sys.stderr)
            peers.remove("ort")
            skipped["ort"] = why
    if not peers:
        ap.error("no peer left to run")
    machine = _common.machine_info()
    print(f"benchmarking {len(models)} models x {len(peers)} peers ...", file=sys.stderr)
    results = run_peers(models, peers, args.batch, timing, rounds)
    builds = None if args.no_builds or "rctc_native" not in peers else native_builds(models, args.batch)
    gemm = None if args.no_gemm else native_gemm(args.quick)
    comp = {"error": "skipped (--no-compile-times)"} if args.no_compile_times else compile_times(models, args.quick)
    load["end"] = loadavg()
    text = peers_report.render(models, peers, results, comp, gemm, machine, load, argv, timing, args.batch,
                               rounds, skipped, builds)
    _common.write_atomic(Path(args.output), text)
    print(text)
    return 0


if __name__ == "__main__":
    _common.reexec_without_openblas_overrides()
    raise SystemExit(main())

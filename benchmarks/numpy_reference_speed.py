"""The numpy reference's rct step now against before the integer element-wise work (issue 15's 1.5x bound).

Issue 15 asks that the numpy runtime (the executable specification) be no more than 1.5x slower
than it was when the issue was filed, although its rct graph is now integer from end to end. The
baseline is the parent of the commit that added the requantise pass (``BASELINE``, float
element-wise lowering). This script builds that commit's tree into a temporary folder
(``git worktree`` + ``pip install --no-deps --target``, no network), then times the ``rctc_rct``
peer (``peers_rctc.py``: rct mode on the numpy runtime, batch 32, 2 threads) of each model from
both trees, alternating per model so both see the same load, each in its own process, OpenBLAS
overrides unset, and writes a table with the ratio and the verdict.

    python benchmarks/numpy_reference_speed.py -o benchmarks/NUMPY_REFERENCE_SPEED.md
"""

from __future__ import annotations

import _common  # noqa: I001 - re-exec before numpy loads

_common.reexec_without_openblas_overrides()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

BASELINE = "d265918^"  # the tree before "requantise pass and integer element-wise lowering"
BOUND = 1.5
#: a run's cap on timed steps when ``--seconds`` asks for more than ``--steps`` (the small models)
MAX_STEPS = 2000
REPO = _common.HERE.parent


def build_baseline(rev: str, folder: Path) -> tuple[Path, Path]:
    """(site folder holding the baseline's rctc, the baseline's benchmarks folder)."""
    site, tree = _common.install_revision(REPO, rev, folder)
    return site, tree / "benchmarks"


def run_peer(bench: Path, site: Path | None, model: str, steps: int, threads: int = _common.NUM_THREADS,
             seconds: float = 1.0) -> dict[str, Any]:
    """One ``rctc_rct`` peer run of ``bench``'s peers_rctc.py (with ``site`` first on the path) on
    ``threads`` BLAS / OpenMP threads, timing at least ``steps`` steps and at least ``seconds``
    seconds (at most :data:`MAX_STEPS` steps): its JSON."""
    env = _common.thread_env(threads)
    if site is not None:
        env["PYTHONPATH"] = str(site)
    cmd = [sys.executable, str(bench / "peers_rctc.py"), "--peer", "rctc_rct", "--model", model, "--batch", "32",
           "--warmup", "2", "--min-steps", str(steps), "--min-seconds", str(seconds), "--max-steps",
           str(max(steps, MAX_STEPS))]
    code, out, err, _ = _common.run_measured(cmd, env, timeout=1800)
    try:
        return json.loads([ln for ln in out.splitlines() if ln.strip()][-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"exit {code}: {(err.strip().splitlines() or ['no output'])[-1]}"}


def _pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One tree's runs of a model as one: every step time pooled, their median (the first error
    when a run failed)."""
    bad = [r for r in runs if "ms_per_step_median" not in r]
    if bad:
        return bad[0]
    ms = [t for r in runs for t in r.get("ms_list") or [r["ms_per_step_median"]]]
    return {"ms_per_step_median": statistics.median(ms), "ms_list": ms}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=list(_common.MODELS), default=list(_common.MODELS))
    ap.add_argument("--steps", type=int, default=10, help="timed steps of each run, at least")
    ap.add_argument("--seconds", type=float, default=1.0,
                    help=f"timed seconds of each run, at least (small models then time up to {MAX_STEPS} steps)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs of each tree per model, alternating; their step times are pooled")
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--threads", type=int, default=_common.NUM_THREADS,
                    help="BLAS / OpenMP threads of both trees (1: less sensitive to other load on the machine)")
    ap.add_argument("-o", "--output", type=Path, default=_common.HERE / "NUMPY_REFERENCE_SPEED.md")
    a = ap.parse_args(argv)
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rctc-baseline-") as tmp:
        try:
            site, base_bench = build_baseline(a.baseline, Path(tmp))
            for m in a.models:
                runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
                for _ in range(max(1, a.repeats)):
                    runs["old"].append(run_peer(base_bench, site, m, a.steps, a.threads, a.seconds))
                    runs["new"].append(run_peer(_common.HERE, None, m, a.steps, a.threads, a.seconds))
                old, new = _pooled(runs["old"]), _pooled(runs["new"])
                rows.append((m, old, new))
                print(m, old.get("ms_per_step_median"), new.get("ms_per_step_median"), file=sys.stderr, flush=True)
        finally:
            _common.remove_revision(REPO, Path(tmp))
    load1 = os.getloadavg()
    lines = ["# numpy reference: rct step now vs before integer element-wise", "",
             f"Command: `python benchmarks/numpy_reference_speed.py --steps {a.steps} --seconds {a.seconds:g}"
             f" --repeats {a.repeats}"
             f"{'' if a.threads == _common.NUM_THREADS else f' --threads {a.threads}'}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  ",
             f"Baseline: `{a.baseline}` (float element-wise rct lowering); now: this tree (integer end to end). "
             f"rct mode on the numpy runtime, batch 32, {a.threads} thread(s), OpenBLAS overrides unset, each run in "
             f"its own process, baseline and now alternating per model ({a.repeats} run(s) of each, at least "
             f"{a.steps} steps and {a.seconds:g} s a run, their step times pooled). Load (1/5/15 min) at the start "
             f"{load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}, at the end {load1[0]:.2f} / {load1[1]:.2f} / "
             f"{load1[2]:.2f}. Medians decide; the fastest step of each run is shown beside them (a step "
             "the machine's other load did not slow, closer to the work itself on a shared machine).", "",
             "| model | baseline ms/step | now ms/step | now / baseline | within 1.5x | baseline fastest | "
             "now fastest | fastest now / baseline |", "|---|---:|---:|---:|---|---:|---:|---:|"]
    worst = 0.0
    for m, old, new in rows:
        o, n = old.get("ms_per_step_median"), new.get("ms_per_step_median")
        if o is None or n is None:
            lines.append(f"| {m} | {old.get('error', o)} | {new.get('error', n)} | n/a | n/a | n/a | n/a | n/a |")
            continue
        r = n / o
        worst = max(worst, r)
        fo, fn = min(old.get("ms_list") or [o]), min(new.get("ms_list") or [n])
        lines.append(f"| {m} | {o:.2f} | {n:.2f} | {r:.2f} | {'yes' if r <= BOUND else 'NO'} | {fo:.2f} | {fn:.2f} "
                     f"| {fn / fo:.2f} |")
    lines += ["", f"Worst ratio {worst:.2f}: the {BOUND}x bound is {'met' if worst <= BOUND else 'NOT met'}."]
    _common.write_atomic(a.output, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

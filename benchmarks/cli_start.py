"""Wall time of rctc's commands in fresh processes, as a user types them (writes a markdown table).

For each model: ``rctc compile`` (ONNX -> .rct), ``rctc inspect``, ``rctc train --steps 1`` (the
native backend, its shared object already in the cache, and the numpy runtime), ``rctc eval`` and
``rctc predict``; plus ``rctc --help``, ``python -c "import rctc.cli"`` and ``python -c pass`` (the
interpreter's own start, the floor of every row). Every command runs once untimed first (the
bytecode and native build caches warm, as on a user's second run), then ``--repeats`` times; a cell
is the median wall time (the fastest in brackets).

The children run without ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` and without
``PYTHONDONTWRITEBYTECODE`` (this machine's environment sets them; users' machines do not, and
without the bytecode cache every start compiles rctc's sources again); the table records what
was unset. Inputs are random arrays of each model's input shape (``--samples`` of them), labels
in its class range.

    python benchmarks/cli_start.py --models mlp,lenet,resnet20 --repeats 5 -o benchmarks/CLI_START.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OPENBLAS_OVERRIDES, machine_info  # noqa: E402

#: variables this machine sets that users' machines do not (unset for every child)
UNSET = (*OPENBLAS_OVERRIDES, "PYTHONDONTWRITEBYTECODE")


def child_env() -> dict[str, str]:
    """This process's environment without :data:`UNSET`."""
    return {k: v for k, v in os.environ.items() if k not in UNSET}


def rctc_exe() -> list[str]:
    """The ``rctc`` console script next to this interpreter, else ``python -m rctc.cli``."""
    exe = Path(sys.executable).with_name("rctc")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "rctc.cli"]


#: untimed runs of each command before the timed ones (the tests set 0)
WARMUPS = 1


def wall_times(argv: list[str], repeats: int, cwd: Path) -> list[float]:
    """Seconds of ``repeats`` runs of ``argv`` after :data:`WARMUPS` untimed ones; a failing run raises
    with its stderr."""
    times = []
    for i in range(repeats + WARMUPS):
        t0 = time.perf_counter()
        res = subprocess.run(argv, cwd=cwd, env=child_env(), capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {res.returncode}: {res.stderr.strip()[-500:]}")
        if i >= WARMUPS:
            times.append(dt)
    return times


def cell(times: list[float]) -> str:
    return f"{1e3 * statistics.median(times):.0f} ({1e3 * min(times):.0f})"


def model_rows(name: str, repeats: int, samples: int, work: Path) -> dict[str, list[float]]:
    """The timed commands of one bundled model, in ``work``."""
    import numpy as np

    from rctc.models import build, input_spec, num_classes

    onnx_path = work / f"{name}.onnx"
    onnx_path.write_bytes(build(name).SerializeToString())
    _, shape, dtype = input_spec(name)
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        x = rng.integers(0, 2, (samples, *shape)).astype(dtype)
    else:
        x = rng.standard_normal((samples, *shape)).astype(dtype)
    data = work / f"{name}.npz"
    np.savez(data, x=x, y=rng.integers(0, num_classes(name), samples).astype(np.int64))
    rct, exe = work / f"{name}.rct", rctc_exe()
    rows = {"compile": wall_times([*exe, "compile", str(onnx_path), "-o", str(rct)], repeats, work),
            "inspect": wall_times([*exe, "inspect", str(rct)], repeats, work)}
    for backend in ("native", "numpy"):
        rows[f"train --steps 1 ({backend})"] = wall_times(
            [*exe, "train", str(rct), "--data", str(data), "--steps", "1", "--backend", backend,
             "-o", str(work / f"{name}.trained.rct")], repeats, work)
    rows["eval (native)"] = wall_times([*exe, "eval", str(rct), "--data", str(data)], repeats, work)
    rows["predict (native)"] = wall_times([*exe, "predict", str(rct), "--data", str(data), "-o",
                                           str(work / f"{name}.pred.npz")], repeats, work)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,lenet,resnet20")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--samples", type=int, default=64, help="inputs in each model's data file (>= 32)")
    ap.add_argument("-o", "--output", default=None, help="markdown file (default: print)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if args.samples < 32:
        ap.error("--samples must be at least 32 (rctc compile's default batch size, which the .rct binds)")
    models = [m for m in args.models.split(",") if m]
    work = Path(tempfile.mkdtemp(prefix="rctc-cli-start-"))
    try:
        py, n = sys.executable, args.repeats
        floor = {"python -c pass": wall_times([py, "-c", "pass"], n, work),
                 "python -c 'import rctc.cli'": wall_times([py, "-c", "import rctc.cli"], n, work),
                 "rctc --help": wall_times([*rctc_exe(), "--help"], n, work)}
        per_model = {m: model_rows(m, args.repeats, args.samples, work) for m in models}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    unset = [v for v in UNSET if v in os.environ]
    info = machine_info()
    lines = ["# rctc command start-up and short runs (wall ms, fresh process each)", "",
             f"Command: `python benchmarks/cli_start.py --models {','.join(models)} --repeats {args.repeats} "
             f"--samples {args.samples}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  ",
             f"Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores, python {info.get('python', '?')}; "
             f"load average at the end {' / '.join(f'{v:.2f}' for v in os.getloadavg())}  ",
             f"Unset for every child (set here, not on users' machines): {', '.join(unset) or 'none were set'}", "",
             "Median of the timed runs (fastest in brackets), after one untimed run of each command.", "",
             "| command | ms |", "|---|---:|"]
    lines += [f"| `{k}` | {cell(v)} |" for k, v in floor.items()]
    cmds = list(next(iter(per_model.values())).keys()) if per_model else []
    if per_model:
        lines += ["", "| command | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
        lines += [f"| `rctc {c}` | " + " | ".join(cell(per_model[m][c]) for m in models) + " |" for c in cmds]
    text = "\n".join(lines) + "\n"
    if args.output:
        out = Path(args.output)
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Shared helpers for the side-by-side training benchmarks.

Standard library only at import time, so the ONNX Runtime worker (which runs in
its own venv with an older numpy/onnx and no rctc) can import it too.

Peer protocol: every peer is a script in this folder that accepts
``--peer P --model M --batch B [--warmup W --min-steps S --min-seconds T
--max-steps X --seed N]`` and prints one JSON object as the last line of its
standard output: ``ms_per_step_median``, ``ms_list``, ``peak_rss_bytes`` and
optional ``note``, or an ``error`` string. :func:`run_in_subprocess` runs one
peer in a fresh interpreter so that its peak RSS is its own. A new peer (for
example the rctc runtime) plugs in by adding its name to :data:`PEER_SCRIPTS`.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: peer name -> script (in this folder) that implements it.
PEER_SCRIPTS: dict[str, str] = {
    "torch_fp32": "peers_torch.py",
    "torch_qat": "peers_torch.py",
    "ort": "peers_ort.py",
    "rctc_native": "peers_rctc.py",
    "rctc_rct": "peers_rctc.py",
    "rctc_qat": "peers_rctc.py",
    "rctc_fp32": "peers_rctc.py",
}

MODELS: tuple[str, ...] = ("mlp", "lenet", "resnet8", "resnet20", "mobilenet", "tiny_transformer")

NUM_THREADS = 2

#: set on this machine for old OpenBLAS builds; users' machines do not set them
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def reexec_without_openblas_overrides() -> None:
    """Re-run this script without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (call before numpy is imported)."""
    if any(v in os.environ for v in OPENBLAS_OVERRIDES):
        env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_OVERRIDES}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def best_seconds(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` (after one warm-up call unless ``warmup`` is off)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def sample_seconds(fn: Callable[[], object], min_seconds: float) -> list[float]:
    """Wall times of at least 5 calls of ``fn`` spanning ``min_seconds`` (after one warm-up call)."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_seconds(fn: Callable[[], object], min_seconds: float) -> float:
    """Median wall time of ``fn`` over at least 5 calls and ``min_seconds`` (after one warm-up call)."""
    return statistics.median(sample_seconds(fn, min_seconds))


def thread_env(threads: int = NUM_THREADS) -> dict[str, str]:
    """Environment for a child process pinned to ``threads`` intra-op threads (OMP/MKL/OpenBLAS),
    without the OpenBLAS overrides (:data:`OPENBLAS_OVERRIDES`) or ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_OVERRIDES and k != "PYTHONPATH"}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env


def kernel_info() -> list[dict[str, Any]]:
    """What threadpoolctl sees loaded in this process: one dict per library with ``library``
    (file name), ``internal_api``, ``architecture`` (the kernel it picked), ``num_threads``,
    ``version``; ``[]`` when threadpoolctl is not installed (call it after the timed steps,
    when every library the peer uses is loaded)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{"library": Path(str(i.get("filepath", "?"))).name, "internal_api": i.get("internal_api"),
             "architecture": i.get("architecture"), "num_threads": i.get("num_threads"),
             "version": i.get("version")} for i in sorted(threadpool_info(), key=lambda i: str(i.get("filepath")))]


def describe_kernels(libs: Sequence[dict[str, Any]]) -> str:
    """One line for a :func:`kernel_info` list, e.g. ``libscipy_openblas.so (openblas 0.3.31, Haswell, 2 thr)``."""
    if not libs:
        return "none seen by threadpoolctl"
    parts = []
    for i in libs:
        detail = ", ".join(str(x) for x in (f"{i.get('internal_api')} {i.get('version') or ''}".strip(),
                                            i.get("architecture")) if x)
        parts.append(f"{i.get('library')} ({detail}, {i.get('num_threads')} thr)")
    return "; ".join(parts)


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    if not values:
        raise ValueError("median of an empty sequence")
    return float(statistics.median(values))


def better_half(values: Sequence[float]) -> list[float]:
    """The larger half of ``values``, sorted (the int8 GEMM's "big layers": the median of this half)."""
    return sorted(values)[len(values) // 2:]


def peak_rss_bytes() -> int:
    """Peak resident set size of this process in bytes (VmHWM, else ru_maxrss)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def current_rss_bytes() -> int:
    """Current resident set size of this process in bytes (0 if unknown)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


#: a slow peer (seconds per step on the shared machine) stops warming up after this many seconds (at
#: least one warm-up step) and timing after TIMED_BUDGET_S (at least BUDGET_MIN_STEPS timed steps)
WARMUP_BUDGET_S = 10.0
TIMED_BUDGET_S = 30.0
BUDGET_MIN_STEPS = 5


def time_steps(
    step: Callable[[], object],
    warmup: int = 5,
    min_steps: int = 20,
    min_seconds: float = 2.0,
    max_steps: int = 2000,
) -> list[float]:
    """Run ``step`` ``warmup`` times, then time it until both ``min_steps`` steps
    and ``min_seconds`` seconds are reached (at most ``max_steps`` steps). A slow step
    ends both phases early: see :data:`WARMUP_BUDGET_S` and :data:`TIMED_BUDGET_S`.

    Returns the wall-clock milliseconds of each timed step.
    """
    start = time.perf_counter()
    for i in range(warmup):
        if i and time.perf_counter() - start > WARMUP_BUDGET_S:
            break
        step()
    ms: list[float] = []
    start = time.perf_counter()
    floor = min(min_steps, BUDGET_MIN_STEPS)
    while len(ms) < max_steps and (len(ms) < min_steps or time.perf_counter() - start < min_seconds):
        if len(ms) >= floor and time.perf_counter() - start > TIMED_BUDGET_S:
            break
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def make_batch(
    shape: Sequence[int],
    dtype: str,
    batch: int,
    num_classes: int,
    seed: int = 0,
    int_high: int = 64,
) -> tuple[Any, Any]:
    """Random inputs ``[batch, *shape]`` of ``dtype`` and int64 labels in range.

    Float inputs are standard normal; integer inputs (token ids) are uniform in
    ``[0, int_high)``. numpy is imported lazily (works with numpy 1 and 2).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    full = (batch, *[int(d) for d in shape])
    if np.issubdtype(np.dtype(dtype), np.integer):
        x = rng.integers(0, int_high, size=full).astype(dtype)
    else:
        x = rng.standard_normal(full).astype(dtype)
    y = rng.integers(0, num_classes, size=(batch,)).astype(np.int64)
    return x, y


def result_dict(ms: list[float], **extra: Any) -> dict[str, Any]:
    """The JSON result a peer prints: median, all step times, peak RSS, extras."""
    out: dict[str, Any] = {
        "ms_per_step_median": median(ms),
        "ms_list": [round(v, 4) for v in ms],
        "steps": len(ms),
        "peak_rss_bytes": peak_rss_bytes(),
    }
    out.update(extra)
    return out


def peer_parser(peers: Sequence[str] | None = None) -> Any:
    """ArgumentParser for the common peer command line (see module docstring)."""
    import argparse

    ap = argparse.ArgumentParser(description="run one benchmark peer and print JSON")
    ap.add_argument("--peer", required=True, choices=list(peers) if peers else None)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--min-steps", type=int, default=20)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--max-steps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def timing_kwargs(args: Any) -> dict[str, Any]:
    """The :func:`time_steps` keyword arguments from parsed peer arguments."""
    return {"warmup": args.warmup, "min_steps": args.min_steps, "min_seconds": args.min_seconds,
            "max_steps": args.max_steps}


def run_in_subprocess(
    peer: str,
    model: str,
    batch: int = 32,
    timeout: float = 1800.0,
    env: dict[str, str] | None = None,
    **options: int | float,
) -> dict[str, Any]:
    """Run one peer for one model in a fresh interpreter; return its JSON dict.

    ``options`` are passed as ``--warmup``, ``--min-steps``, ``--min-seconds``,
    ``--max-steps``, ``--seed``; ``env`` replaces :func:`thread_env`. Never raises for a failing peer: a crash, a
    time-out or unparsable output comes back as ``{"error": ...}``.
    """
    if peer not in PEER_SCRIPTS:
        return {"peer": peer, "model": model, "batch": batch, "error": f"unknown peer {peer!r}"}
    cmd = [sys.executable, str(HERE / PEER_SCRIPTS[peer]), "--peer", peer, "--model", model,
           "--batch", str(batch)]
    for key, value in options.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    base: dict[str, Any] = {"peer": peer, "model": model, "batch": batch}
    if hasattr(os, "getloadavg"):  # how busy the machine was when the peer started
        base["loadavg_1m_at_start"] = round(os.getloadavg()[0], 2)
    try:
        returncode, stdout, stderr, maxrss = run_measured(cmd, thread_env() if env is None else env, timeout)
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    try:
        data = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        return {**base, "error": f"exit {returncode}: {tail}"}
    return {**base, "child_maxrss_bytes": maxrss, **data}


def run_measured(cmd: Sequence[str], env: dict[str, str], timeout: float) -> tuple[int, str, str, int]:
    """Run ``cmd``; return (exit code, stdout, stderr, the child's peak RSS in bytes). Raises
    ``subprocess.TimeoutExpired`` (child killed).

    The peak is the child's VmHWM, read from /proc every poll (20 ms) while it runs: wait4's
    ru_maxrss cannot serve, since Linux counts the forked copy of this process into it (exec keeps
    the old image's high-water mark). Growth in the child's last poll interval can be missed; where
    /proc is absent, ru_maxrss is the (upper-bound) fallback.
    """
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + timeout
        hwm = 0
        while True:
            hwm = max(hwm, _vm_hwm_bytes(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9  # reaped here: stop Popen from waiting on the pid again
                raise subprocess.TimeoutExpired(list(cmd), timeout)
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        peak = hwm if Path("/proc/self/status").exists() else int(usage.ru_maxrss) * 1024
        return proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), peak


def _vm_hwm_bytes(pid: int) -> int:
    """VmHWM of a running process from /proc (0 when unreadable: exited, or no /proc)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _version(module: str) -> str:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", "?"))
    except Exception:  # noqa: BLE001 - any import failure just means "absent"
        return "absent"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas_info() -> str:
    try:
        import numpy as np

        cfg = np.show_config(mode="dicts")  # numpy >= 1.25
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def machine_info() -> dict[str, Any]:
    """Description of this machine and the library versions of this interpreter."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads_per_peer": NUM_THREADS,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "numpy_blas": _blas_info(),
        "torch": _version("torch"),
        "onnx": _version("onnx"),
        "onnxruntime (this interpreter; the ORT peer runs its own venv)": _version("onnxruntime"),
        "platform": platform.platform(),
        # other work on the machine distorts the timings: record how busy it was
        "loadavg_1m_5m_15m": " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def write_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Markdown table of ``rows`` restricted to ``columns`` (missing cells empty).

    Floats are shown with 3 significant decimals; keys ending in ``_bytes`` are
    shown in MiB.
    """

    def cell(key: str, value: Any) -> str:
        if value is None:
            return ""
        if key.endswith("_bytes") and isinstance(value, int | float):
            return f"{value / 2**20:.1f} MiB"
        if isinstance(value, float):
            return f"{value:.3f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(columns) + " |"
    sep = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(cell(c, r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body]) + "\n"


def install_revision(repo: Path, rev: str, folder: Path) -> tuple[Path, Path]:
    """rctc as of git revision ``rev`` of ``repo``, installed into ``folder`` without the network:
    ``(site folder holding its rctc, its work tree)``. A ``git worktree`` of the revision at
    ``folder/tree`` and ``pip install --no-deps --target folder/site``; remove the work tree with
    :func:`remove_revision` when done."""
    tree, site = folder / "tree", folder / "site"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", str(tree), rev],
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(tree)], check=True, capture_output=True)
    return site, tree


def remove_revision(repo: Path, folder: Path) -> None:
    """Remove the work tree :func:`install_revision` added under ``folder`` (its files go with the folder)."""
    subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(folder / "tree")],
                   check=False, capture_output=True)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in its folder: fsync, then rename (a failed
    run leaves the previous results file as it was)."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""One native kernel on two builds of the kernel library, call by call in one process: this tree's
against another git revision's.

A kernel change that keeps every bit is judged by its time; on a shared machine whose speed drifts
over minutes, two runs minutes apart do not compare. This script builds the library of ``--rev``
(``git worktree`` + ``pip install --no-deps --target``, no network; then that revision's own
``build_library`` in a subprocess), loads both shared objects into this process and alternates
the same call on the two, so both see the same machine. Every pair of results must be equal (the
change keeps the bits); a table of medians and fastest calls per case goes to ``-o``. The
kernels are called through this tree's :class:`rctc.native.intops.IntOps` wrapper, so their C
signatures must be the same in both revisions.

    python benchmarks/native_kernel_ab.py --rev HEAD~1 -o benchmarks/NATIVE_KERNEL_AB.md
"""

from __future__ import annotations

import _common  # noqa: I001 - re-exec before numpy loads

_common.reexec_without_openblas_overrides()

import argparse  # noqa: E402
import ctypes  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

REPO = _common.HERE.parent
#: (batch, channels, height, width) of the bundled ResNet-8's BatchNorms at batch 32
SHAPES = ((32, 16, 32, 32), (32, 32, 16, 16), (32, 64, 8, 8))


def library_of(site: Path, cwd: Path) -> Path:
    """The kernel library the rctc in ``site`` builds (or finds in the user's cache)."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", "from rctc.native.build import build_library; print(build_library())"],
                         env=env, cwd=cwd, check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def cases(shape: tuple[int, ...], threads: int) -> dict[str, Callable[[Any], Any]]:
    """name -> call on an IntOps of one BatchNorm shape: int8 input and error, as a step has them."""
    import numpy as np

    from rctc.rng import random_words

    rng = np.random.default_rng(0)
    q = np.clip(np.round(rng.standard_normal(shape) * 30), -127, 127).astype(np.int8)
    dq = np.clip(np.round(rng.standard_normal(shape) * 20), -127, 127).astype(np.int8)
    c = shape[1]
    gamma = (rng.integers(1000, 30000, c).astype(np.int16), -14)
    beta = (rng.integers(-3000, 3000, c).astype(np.int16), -12)
    rm, rv = (np.zeros(c, np.int16), -8), (np.full(c, 1000, np.int16), -6)
    rand = random_words(1, 2, 3, 0, q.size).reshape(shape)
    return {"batchnorm_train": lambda o: o.batchnorm_train(q, -5, gamma, beta, rm, rv, bits=8, threads=threads),
            "batchnorm_backward": lambda o: o.batchnorm_backward(q, -5, gamma, dq, -9, bits=8, rand=rand,
                                                                 threads=threads)}


def same(a: Any, b: Any) -> bool:
    """Whether two kernel results (nested tuples of arrays and ints) are equal, bit for bit."""
    import numpy as np

    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(np.array_equal(a, b)) if isinstance(a, np.ndarray) else a == b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="HEAD", help="the other revision (default: HEAD, this tree's last commit)")
    ap.add_argument("--calls", type=int, default=40, help="calls of each build per case, alternating")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("-o", "--output", type=Path, default=_common.HERE / "NATIVE_KERNEL_AB.md")
    a = ap.parse_args(argv)
    if a.calls < 1 or any(t < 1 for t in a.threads):
        ap.error("--calls and --threads must be at least 1")
    from rctc.native.build import build_library
    from rctc.native.intops import IntOps
    from rctc.native.kernels import Kernels

    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="rctc-ab-") as tmp:
        try:
            site, _ = _common.install_revision(REPO, a.rev, Path(tmp))
            old_path = library_of(site, Path(tmp))
        except subprocess.CalledProcessError as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
            print(f"native_kernel_ab: cannot build revision {a.rev!r}: {(err.strip().splitlines() or ['?'])[-1]}",
                  file=sys.stderr)
            return 2
        finally:
            _common.remove_revision(REPO, Path(tmp))
    ops = {"old": IntOps(ctypes.CDLL(str(old_path))), "new": IntOps(ctypes.CDLL(str(build_library())))}
    rows = []
    for threads in a.threads:
        for shape in SHAPES:
            for name, call in cases(shape, threads).items():
                ts: dict[str, list[float]] = {"old": [], "new": []}
                res: dict[str, Any] = {}
                for _ in range(a.calls + 2):  # the first two calls of each warm up
                    for k, o in ops.items():
                        t0 = time.perf_counter()
                        res[k] = call(o)
                        ts[k].append(time.perf_counter() - t0)
                if not same(res["old"], res["new"]):
                    print(f"native_kernel_ab: {name} {shape} differs between the builds", file=sys.stderr)
                    return 1
                old, new = ts["old"][2:], ts["new"][2:]
                rows.append({"kernel": name, "shape": "x".join(map(str, shape)), "threads": threads,
                             "old ms": statistics.median(old) * 1e3, "new ms": statistics.median(new) * 1e3,
                             "new / old": statistics.median(new) / statistics.median(old),
                             "fastest new / old": min(new) / min(old)})
                print(rows[-1], file=sys.stderr, flush=True)
    load1 = os.getloadavg()
    info = _common.machine_info()
    text = "\n".join([
        "# Native kernels: this tree against another revision, call by call", "",
        f"Command: `python benchmarks/native_kernel_ab.py --rev {a.rev} --calls {a.calls} --threads "
        f"{' '.join(map(str, a.threads))}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  ",
        f"CPU: {info.get('cpu', '?')}, dispatched variant `{Kernels().isa}`; load (1 min) {load0[0]:.2f} at the "
        f"start, {load1[0]:.2f} at the end. Both libraries loaded in one process, the same call alternating "
        f"between them ({a.calls} timed calls each after two warm-up calls); every pair of results equal. "
        "int8 input and error, 8-bit outputs, stochastic backward rounding (words given).", "",
        _common.write_table(rows, ["kernel", "shape", "threads", "old ms", "new ms", "new / old",
                                   "fastest new / old"])])
    _common.write_atomic(a.output, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Digests of the trained state of every bundled model in every mode (the refactor guard).

Needs: the bundled ONNX files (``rctc.models``) and the public API.
Leaves: ``compute()`` returns ``{"<model>/<mode>": {"<state value>": fingerprint}}`` after
``STEPS`` training steps at batch ``BATCH`` on fixed random data with a fixed seed, so a
change that alters numerics anywhere in import, passes or kernels changes a fingerprint.

An integer tensor's fingerprint is the sha256 of its dtype, shape and bytes (compared exactly:
integer arithmetic does not depend on the machine). A float tensor's is its dtype, shape, sum,
sum of squares and eight probe values (compared within ``FLOAT_RTOL``): fp32 / qat products run
on the BLAS, whose kernel (Haswell, SkylakeX, Zen: OpenBLAS picks by CPU unless
``OPENBLAS_CORETYPE`` says) changes the last bits of every float sum, so bytes cannot be the
reference for them; a change of numerics moves these figures by far more than that.

Re-recording is explicit: ``python tests/golden/state_digests.py`` rewrites
``state_digests.json``; do it only in a commit that says why the numbers changed (a new RNG,
a new integer kernel), never to make a failing test pass silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

import rctc
from rctc import models

MODES = ("rct", "qat", "fp32")
FLOAT_RTOL = 1e-4  # relative, of a sum / sum of squares; probes: of the tensor's magnitude (rms or largest probe)
PROBES = 8
STEPS = 2
BATCH = 2
SEED = 7
DIGESTS = Path(__file__).with_name("state_digests.json")


def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    inp, shape, dtype = models.input_spec(name)
    rng = np.random.default_rng(1234)
    n = BATCH * STEPS
    if np.issubdtype(dtype, np.integer):
        x = rng.integers(0, 8, size=(n, *shape)).astype(dtype)
    else:
        x = rng.standard_normal((n, *shape)).astype(dtype)
    y = rng.integers(0, models.num_classes(name), size=n).astype(np.int64)
    return x, y


def fingerprint(arr: np.ndarray) -> str | dict[str, object]:
    """sha256 of an integer tensor; dtype, shape, sum, sum of squares and probes of a float one."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype.kind == "f":
        flat = arr.astype(np.float64).ravel()
        idx = np.linspace(0, max(flat.size - 1, 0), num=min(PROBES, flat.size)).astype(np.int64)
        return {"dtype": arr.dtype.str, "shape": list(arr.shape), "sum": float(flat.sum()),
                "sumsq": float(np.dot(flat, flat)), "probes": [float(flat[i]) for i in idx]}
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def same(got: str | dict[str, object], want: str | dict[str, object]) -> bool:
    """Whether two fingerprints agree (exactly for integer tensors, within FLOAT_RTOL for float ones)."""
    if isinstance(got, str) or isinstance(want, str):
        return got == want
    if (got["dtype"], got["shape"]) != (want["dtype"], want["shape"]):
        return False
    n = max(1, int(np.prod(want["shape"])))  # type: ignore[arg-type]
    norm = float(np.sqrt(want["sumsq"]))  # type: ignore[arg-type]
    # a probe's scale: the tensor's own magnitude (its root mean square or a larger probe), not its
    # L2 norm, which grows with the element count
    scale = max([abs(float(v)) for v in want["probes"]] + [norm / np.sqrt(n), 1e-12])  # type: ignore[arg-type]
    ok_sum = abs(got["sum"] - want["sum"]) <= FLOAT_RTOL * (abs(want["sum"]) + norm)  # type: ignore[operator]
    ok_sq = abs(got["sumsq"] - want["sumsq"]) <= FLOAT_RTOL * want["sumsq"] + 1e-30  # type: ignore[operator]
    ok_pr = all(abs(a - b) <= FLOAT_RTOL * scale for a, b in zip(got["probes"], want["probes"]))  # type: ignore[arg-type]
    return bool(ok_sum and ok_sq and ok_pr)


def digest_of(name: str, mode: str) -> dict[str, str | dict[str, object]]:
    """The fingerprint of every state tensor after STEPS steps."""
    m = rctc.compile(str(models.path(name)), mode=mode, batch_size=BATCH, seed=SEED)
    x, y = _data(name)
    m.train(x, y, steps=STEPS, lr=0.01, seed=SEED, shuffle=False)
    return {v.name: fingerprint(v.data) for v in sorted(m.graph.state_values(), key=lambda v: v.name)}


def compute() -> dict[str, dict[str, str | dict[str, object]]]:
    return {f"{name}/{mode}": digest_of(name, mode) for name in models.READY for mode in MODES}


def main() -> None:
    data = json.dumps(compute(), indent=1, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=DIGESTS.parent, prefix=".state_digests.")
    with os.fdopen(fd, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, DIGESTS)
    print(f"wrote {DIGESTS}", file=sys.stderr)


if __name__ == "__main__":
    main()

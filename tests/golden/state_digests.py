"""Digests of the trained state of every bundled model in every mode (the refactor guard).

Needs: the bundled ONNX files (``rctc.models``) and the public API.
Leaves: ``compute()`` returns ``{"<model>/<mode>": {"<state value>": sha256 hex}}`` after
``STEPS`` training steps at batch ``BATCH`` on fixed random data with a fixed seed, so a
change that alters numerics anywhere in import, passes or kernels changes a digest.

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


def digest_of(name: str, mode: str) -> dict[str, str]:
    """sha256 (dtype, shape and bytes) of every state tensor after STEPS steps."""
    m = rctc.compile(str(models.path(name)), mode=mode, batch_size=BATCH, seed=SEED)
    x, y = _data(name)
    m.train(x, y, steps=STEPS, lr=0.01, seed=SEED, shuffle=False)
    out: dict[str, str] = {}
    for v in sorted(m.graph.state_values(), key=lambda v: v.name):
        arr = np.ascontiguousarray(v.data)
        h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
        out[v.name] = h.hexdigest()
    return out


def compute() -> dict[str, dict[str, str]]:
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

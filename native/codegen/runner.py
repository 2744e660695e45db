"""Build a generated step with the kernel library and run it from Python through ctypes.

Needs: a :class:`~rctc.native.codegen.generator.CProgram` and a C compiler (rctc.native.build).
Leaves: the generated file written once under the build cache (temp file, fsync, rename), the
shared object cached by build.py's key; ``NativeStep.run`` copies the state and the host-fed
inputs in, runs one step, and returns the requested outputs and the new state as numpy arrays
(copies: the arena is reused by the next step); ``NativeStep.update_stats`` reads the step's
bitwidth-controller statistics block as the numpy kernels record them (``ctx.stats[STATS_KEY]``).
"""

from __future__ import annotations

import ctypes
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from rctc.bitwidth_rule import UpdateStat
from rctc.errors import RctcError
from rctc.native.build import cache_dir, load_library
from rctc.native.codegen.generator import STATS_WORDS, CProgram, Slot


def _write_source(prog: CProgram, env: dict[str, str] | None) -> Path:
    folder = cache_dir(env) / "generated"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rctc_model_{prog.key}.c"
    if path.is_file() and path.read_text() == prog.source:
        return path
    fd, tmp = tempfile.mkstemp(prefix=".gen-", suffix=".c", dir=folder)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(prog.source)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def exact_pair(x: float) -> tuple[int, int]:
    """``x == m * 2^k`` exactly (``m`` odd, or 0): how a float learning rate enters the C step."""
    if not math.isfinite(x):
        raise RctcError(f"native step: learning rate {x} is not finite")
    if x == 0.0:
        return 0, 0
    fm, fe = math.frexp(x)
    m, k = int(fm * 2**53), fe - 53
    while m % 2 == 0:
        m //= 2
        k += 1
    return m, k


class NativeStep:
    """One generated step, built and loaded; ``state`` holds the current stored values."""

    def __init__(self, prog: CProgram, state: Mapping[str, np.ndarray], env: dict[str, str] | None = None) -> None:
        self.prog = prog
        self.lib = load_library([_write_source(prog, env)], env)
        for name in ("rctc_model_arena", "rctc_model_state", "rctc_model_stats"):
            getattr(self.lib, name).restype = ctypes.c_void_p
        self.lib.rctc_model_step.restype = ctypes.c_int
        self.lib.rctc_model_step.argtypes = [ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int64, ctypes.c_int]
        self._base = {"arena": int(self.lib.rctc_model_arena()), "state": int(self.lib.rctc_model_state())}
        self._sizes = {"arena": prog.arena_bytes, "state": prog.state_bytes}
        self.load_state(state)

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Write every stored value the step reads into the state block."""
        for name in self.prog.state:
            self._view(name)[...] = np.asarray(state[name]).astype(self.prog.slots[name].dtype, copy=False)

    def _view(self, name: str) -> np.ndarray:
        s: Slot = self.prog.slots[name]
        buf = (ctypes.c_ubyte * s.nbytes).from_address(self._base[s.region] + s.offset)
        return np.frombuffer(buf, dtype=s.dtype).reshape(s.shape)

    def run(self, feeds: Mapping[str, np.ndarray], *, seed: int = 0, step: int = 0,
            lr: float = 0.0) -> dict[str, np.ndarray]:
        """One step at learning rate ``lr`` (read as float32, as the numpy runtime does); returns
        every requested output and every state value (copies)."""
        missing = [n for n in self.prog.inputs if n not in feeds]
        if missing:
            raise RctcError(f"native step: missing input(s) {', '.join(missing)}")
        for name in self.prog.inputs:
            arr = np.asarray(feeds[name])
            s = self.prog.slots[name]
            if arr.shape != s.shape:
                raise RctcError(f"native step: input {name!r} has shape {arr.shape}, expected {s.shape}")
            self._view(name)[...] = arr.astype(s.dtype, copy=False)
        lr_m, lr_k = exact_pair(float(np.float32(lr)))
        rc = self.lib.rctc_model_step(seed, step, lr_m, lr_k)
        if rc != 0:
            raise RctcError(f"native step failed with kernel code {rc} (an accumulator overflowed its range)")
        return {n: self._view(n).copy() for n in (*self.prog.outputs, *self.prog.state)}

    def update_stats(self) -> dict[str, UpdateStat]:
        """The last step's controller statistics per parameter: ``UpdateStat(g, S, n)``."""
        words = STATS_WORDS * len(self.prog.stats)
        if not words:
            return {}
        block = np.ctypeslib.as_array((ctypes.c_uint64 * words).from_address(int(self.lib.rctc_model_stats())))
        out = {}
        for i, (param, n) in enumerate(self.prog.stats):
            _, s, g = (int(x) for x in block[STATS_WORDS * i:STATS_WORDS * (i + 1)])
            out[param] = UpdateStat(g, s, n)
        return out

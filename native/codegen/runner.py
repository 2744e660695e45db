"""Build generated steps with the kernel library and run them from Python through ctypes.

Needs: :class:`~rctc.native.codegen.generator.CProgram` s (distinct prefixes when several share
one file) and a C compiler (rctc.native.build).
Leaves: the generated file written once under the build cache (temp file, fsync, rename), the
shared object cached by build.py's key; ``NativeStep.run`` copies the state and the host-fed
inputs in, runs one step, and returns the requested outputs and the new state as numpy arrays
(copies: the arena is reused by the next step). ``NativeStep.view`` gives the live numpy view of
a slot for callers that move data themselves (the native backend); ``NativeStep.update_stats``
reads the step's bitwidth-controller statistics block as the numpy kernels record them
(``ctx.stats[STATS_KEY]``). Programs loaded with ``profile=True`` (a separate shared object: the
file starts with the generator's ``PROFILE_PROLOGUE``) also time each node:
``NativeStep.node_ns`` gives the last step's nanoseconds per node.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from rctc.bitwidth_rule import UpdateStat
from rctc.errors import RctcError
from rctc.native.build import cache_dir, load_library
from rctc.native.codegen.generator import PROFILE_PROLOGUE, STATS_WORDS, CProgram, Slot

#: RCTC_IQ_* status codes of rctc_intops.h -> what went wrong
_FAILURES = {-1: "an accumulator overflowed its range",
             -2: "an argument outside the algorithm's domain, e.g. an index out of range"}


def _write_source(text: str, env: dict[str, str] | None) -> Path:
    folder = cache_dir(env) / "generated"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rctc_model_{hashlib.sha256(text.encode()).hexdigest()[:16]}.c"
    if path.is_file() and path.read_text() == text:
        return path
    fd, tmp = tempfile.mkstemp(prefix=".gen-", suffix=".c", dir=folder)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_programs(progs: Sequence[CProgram], env: dict[str, str] | None = None, *,
                  profile: bool = False) -> ctypes.CDLL:
    """One shared object holding every program of ``progs`` (built once, cached) and the library;
    ``profile`` compiles the per-node timers in (``<prefix>_prof``, see the generator)."""
    prefixes = [p.prefix for p in progs]
    if len(set(prefixes)) != len(prefixes):
        raise RctcError(f"native step: programs of one file need distinct prefixes, got {prefixes}")
    text = "\n".join([*([PROFILE_PROLOGUE] if profile else []), *(p.source for p in progs)])
    return load_library([_write_source(text, env)], env)


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
    """One generated step, built and loaded (or taken from ``lib``, a file holding it);
    ``load_state`` writes the stored values into its state block."""

    def __init__(self, prog: CProgram, state: Mapping[str, np.ndarray], env: dict[str, str] | None = None,
                 lib: ctypes.CDLL | None = None) -> None:
        self.prog = prog
        self.lib = lib if lib is not None else load_programs([prog], env)
        p = prog.prefix
        arena, blocks, stats = (getattr(self.lib, f"{p}_{what}") for what in ("arena", "state", "stats"))
        arena.restype = blocks.restype = stats.restype = ctypes.c_void_p
        self._step = getattr(self.lib, f"{p}_step")
        self._step.restype = ctypes.c_int
        self._step.argtypes = [ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int64, ctypes.c_int]
        self._threads = getattr(self.lib, f"{p}_set_threads")
        self._threads.argtypes = [ctypes.c_int]
        self._lr: tuple[float, int, int] = (math.nan, 0, 0)  # the last rate and its exact pair
        self._base = {"arena": int(arena()), "state": int(blocks())}
        self._views = {name: self._make_view(s) for name, s in prog.slots.items()}
        words = STATS_WORDS * len(prog.stats)
        self._stats = np.ctypeslib.as_array((ctypes.c_uint64 * max(words, 1)).from_address(int(stats())))[:words]
        self._prof: np.ndarray | None = None
        if hasattr(self.lib, f"{p}_prof"):
            prof = getattr(self.lib, f"{p}_prof")
            prof.restype = ctypes.c_void_p
            count = len(prog.nodes) + 1
            self._prof = np.ctypeslib.as_array((ctypes.c_uint64 * count).from_address(int(prof())))
        self.load_state(state)

    def set_threads(self, n: int) -> None:
        """Threads the step's kernels may use (results never depend on it)."""
        self._threads(int(n))

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Write every stored value the step reads (present in ``state``) into the state block."""
        for name in self.prog.state:
            if name in state:
                self._views[name][...] = np.asarray(state[name]).astype(self.prog.slots[name].dtype, copy=False)

    def _make_view(self, s: Slot) -> np.ndarray:
        buf = (ctypes.c_ubyte * max(s.nbytes, 1)).from_address(self._base[s.region] + s.offset)
        return np.frombuffer(buf, dtype=s.dtype, count=math.prod(s.shape)).reshape(s.shape)

    def view(self, name: str) -> np.ndarray:
        """The live view of ``name``'s slot (overwritten by the next step)."""
        return self._views[name]

    def call(self, seed: int, step: int, lr: float) -> None:
        """Run one step on what the slots hold now (``lr`` read as float32, as numpy does)."""
        if lr != self._lr[0]:  # the rate's exact pair is kept while the rate stays (NaN: never kept)
            self._lr = (lr, *exact_pair(float(np.float32(lr))))
        rc = self._step(seed, step, self._lr[1], self._lr[2])
        if rc != 0:
            why = _FAILURES.get(rc, "an unknown kernel status")
            raise RctcError(f"native step failed with kernel code {rc} ({why}); the numpy backend reports which node")

    def run(self, feeds: Mapping[str, np.ndarray], *, seed: int = 0, step: int = 0,
            lr: float = 0.0) -> dict[str, np.ndarray]:
        """One step at learning rate ``lr``; returns every requested output and every state
        value (copies)."""
        missing = [n for n in self.prog.inputs if n not in feeds]
        if missing:
            raise RctcError(f"native step: missing input(s) {', '.join(missing)}")
        for name in self.prog.inputs:
            arr = np.asarray(feeds[name])
            s = self.prog.slots[name]
            if arr.shape != s.shape:
                raise RctcError(f"native step: input {name!r} has shape {arr.shape}, expected {s.shape}")
            self._views[name][...] = arr.astype(s.dtype, copy=False)
        self.call(seed, step, lr)
        return {n: self._views[n].copy() for n in (*self.prog.outputs, *self.prog.state)}

    def node_ns(self) -> np.ndarray | None:
        """Nanoseconds of each node of the last step, then of its state write-back (a copy);
        None unless the program was loaded with ``profile=True``."""
        return None if self._prof is None else self._prof.copy()

    def stat_words(self) -> list[tuple[int, int, int]]:
        """The last step's ``(A, S, g)`` of each entry of ``prog.stats``, in its order."""
        w = self._stats.tolist()  # Python ints
        return [(w[i], w[i + 1], w[i + 2]) for i in range(0, len(w), STATS_WORDS)]

    def update_stats(self) -> dict[str, UpdateStat]:
        """The last step's controller statistics per parameter: ``UpdateStat(g, S, n)``."""
        return {param: UpdateStat(g, s, n) for (param, n), (_, s, g) in zip(self.prog.stats, self.stat_words())}

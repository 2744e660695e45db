"""Training checkpoints: write every N steps, resume bit-identically, stop cleanly on Ctrl-C.

A checkpoint is an ``.npz`` (no pickle) next to the trained model's output, ``OUT.ckpt``
(the one before it is kept as ``OUT.ckpt.prev``). It holds:

* every state value of the graph (parameters, bitwidth slots, optimizer state, BatchNorm and
  activation running statistics) as arrays ``state_<i>``;
* ``order``: the current epoch's sample order (absent at an epoch boundary);
* ``meta``: UTF-8 JSON with the run position (step, epoch, position in the epoch, steps done,
  start step), the run's seed and the shuffling generator's state (``bit_generator.state`` of
  ``Trainer.data_rng``), the bitwidth controller's observation window (per parameter the
  integer sums ``[count, sum_g, sum_s, sum_n]`` of rctc/bitwidth_rule.py), the graph's public
  meta (bit changes, step, ...), the model's fingerprint and the run's arguments;
* ``sha256``: a digest over all of the above, checked on load.

Writing is atomic and never damages the previous checkpoint: the new one goes to
``OUT.ckpt.new`` (temporary file, fsync, rename), then ``OUT.ckpt`` becomes ``OUT.ckpt.prev``
and ``OUT.ckpt.new`` becomes ``OUT.ckpt``. A crash between the two renames leaves a complete
``.new`` (or ``.prev``), which ``find_checkpoint`` picks up.

The random state of the training step is just ``(seed, step)``: its stream is counter-based
(docs/rng.md). Version 1 checkpoints (which stored a numpy generator for the step's noise) are
refused with one line: their run cannot continue on the same noise, so it must start again.
Version 2 checkpoints (the float controller window of mean Gavg and saturated fraction, from which
the integer sums cannot be recovered) are refused the same way.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from rctc.bitwidth_rule import Window
from rctc.errors import CorruptFileError, RctcError
from rctc.jsonutil import json_default
from rctc.npz import read_npz
from rctc.rct_format import atomic_write_bytes
from rctc.runtime.bitwidth import BitwidthController
from rctc.runtime.trainer import RunState, Trainer

CKPT_FORMAT = "rctc-checkpoint"
CKPT_VERSION = 3
#: versions whose runs cannot continue here, and why
OLD_VERSIONS = {1: "the old random generator", 2: "the float bitwidth controller"}


def checkpoint_path(output: str | os.PathLike[str]) -> Path:
    p = Path(output)
    return p.with_name(p.name + ".ckpt")


def _sibling(p: Path, suffix: str) -> Path:
    return p.with_name(p.name + suffix)


def model_fingerprint(trainer: Trainer) -> str:
    """SHA-256 over the graph's structure and its state values' names, shapes and dtypes."""
    g = trainer.graph
    nodes = [[n.name, n.op_type, [v.name if v else "" for v in n.inputs], [o.name for o in n.outputs]]
             for n in g.nodes]
    state = [[v.name, v.kind, list(v.shape or ()), str(v.dtype)] for v in g.state_values()]
    blob = json.dumps({"nodes": nodes, "state": state, "inputs": [v.name for v in g.inputs]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def data_digest(x: np.ndarray, y: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in (x, y):
        if a is not None:
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()



def payload_digest(meta: bytes, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the metadata bytes and every array (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256(meta)
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _controllers(trainer: Trainer) -> list[BitwidthController]:
    return [h for h in trainer.hooks if isinstance(h, BitwidthController)]


def encode_checkpoint(trainer: Trainer, st: RunState, run_args: dict[str, Any]) -> bytes:
    """The checkpoint file's bytes for ``trainer`` at run position ``st``."""
    g = trainer.graph
    state = g.state_values()
    arrays = {f"state_{i}": np.asarray(v.data) for i, v in enumerate(state)}
    if st.order is not None:
        arrays["order"] = np.asarray(st.order, np.int64)
    meta = {
        "format": CKPT_FORMAT,
        "version": CKPT_VERSION,
        "model": model_fingerprint(trainer),
        "source": g.meta.get("source"),
        "state_names": [v.name for v in state],
        "step": trainer.step,
        "run": {"epoch": st.epoch, "pos": st.pos, "done": st.done, "start_step": st.start_step},
        "seed": trainer.seed,
        "data_rng": trainer.data_rng.bit_generator.state,
        "controller": [{k: w.as_list() for k, w in c.window.items()} for c in _controllers(trainer)],
        "graph_meta": {k: v for k, v in g.meta.items() if not k.startswith("_")},
        "args": run_args,
    }
    meta_bytes = json.dumps(meta, sort_keys=True, default=json_default).encode()
    digest = payload_digest(meta_bytes, arrays)
    arrays["meta"] = np.frombuffer(meta_bytes, np.uint8)
    arrays["sha256"] = np.frombuffer(digest.encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def write_checkpoint(path: Path, data: bytes) -> None:
    """Write atomically without ever damaging the existing checkpoint (see the module docstring)."""
    new, prev = _sibling(path, ".new"), _sibling(path, ".prev")
    atomic_write_bytes(new, data)
    try:
        if path.exists():
            os.replace(path, prev)
        os.replace(new, path)
    except OSError as exc:
        raise RctcError(f"{path}: cannot rotate checkpoints ({exc.strerror or exc}); the newest is {new}") from exc


def find_checkpoint(path: Path) -> Path:
    """The newest complete checkpoint for ``path``: itself, else its ``.new``, else its ``.prev``.

    Temporary files a killed run left behind (``.OUT.ckpt.new.*.tmp``) are removed.
    """
    for stale in path.parent.glob(f".{path.name}.new.*.tmp"):
        stale.unlink(missing_ok=True)
    for cand in (path, _sibling(path, ".new"), _sibling(path, ".prev")):
        if cand.exists():
            return cand
    raise RctcError(f"{path}: no checkpoint to resume from; run without --resume (and with --checkpoint-every N)")


META_KEYS: dict[str, type | tuple[type, ...]] = {
    "model": str, "state_names": list, "step": int, "run": dict, "data_rng": dict, "seed": int,
    "controller": list, "graph_meta": dict, "args": dict,
}
RUN_KEYS = ("epoch", "pos", "done", "start_step")


def _check_meta(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Every key ``load_checkpoint`` reads is there with its type (a re-signed hand edit, another version)."""
    def damaged(why: str) -> RctcError:
        return RctcError(f"{path}: checkpoint damaged or from another version of rctc ({why}); delete it to start "
                         "over")

    for key, typ in META_KEYS.items():
        if not isinstance(meta.get(key), typ) or isinstance(meta.get(key), bool):
            raise damaged(f"{key!r} missing or not a {typ.__name__}")
    run = meta["run"]
    if not all(type(run.get(k)) is int and run[k] >= 0 for k in RUN_KEYS):
        raise damaged("run position incomplete")
    names = meta["state_names"]
    if not all(isinstance(n, str) for n in names) or any(f"state_{i}" not in arrays for i in range(len(names))):
        raise damaged("state arrays missing")
    for c in meta["controller"]:
        if not isinstance(c, dict) or not all(isinstance(w, list) and len(w) == 4 and
                                              all(type(x) is int and x >= 0 for x in w) for w in c.values()):
            raise damaged("controller window malformed")


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    hint = (f"delete it to start over, or rename {_sibling(path, '.prev').name} to {path.name} "
            "to resume one checkpoint earlier")
    try:
        _, arrays = read_npz(path)
        meta_bytes = arrays.pop("meta").tobytes()
        digest = arrays.pop("sha256").tobytes().decode()
        meta = json.loads(meta_bytes)
    except CorruptFileError as exc:
        raise RctcError(f"{exc}; {hint}") from exc
    except (ValueError, KeyError, UnicodeDecodeError, RecursionError) as exc:
        raise RctcError(f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}); {hint}") from exc
    if not isinstance(meta, dict) or meta.get("format") != CKPT_FORMAT:
        raise RctcError(f"{path}: not an rctc checkpoint; {hint}")
    old = OLD_VERSIONS.get(meta.get("version"))
    if old:
        raise RctcError(f"{path}: checkpoint written by an rctc with {old} (version {meta['version']}); "
                        "it cannot resume on this rctc: delete it and start the run again without --resume")
    if meta.get("version") != CKPT_VERSION:
        raise RctcError(f"{path}: checkpoint version {meta.get('version')}, this rctc reads {CKPT_VERSION}")
    if payload_digest(meta_bytes, arrays) != digest:
        raise RctcError(f"{path}: checkpoint integrity check failed (corrupt); {hint}")
    _check_meta(path, meta, arrays)
    return meta, arrays


def load_checkpoint(path: Path, trainer: Trainer, run_args: dict[str, Any]) -> RunState:
    """Restore ``trainer`` (graph state, meta, generators, controller) from ``path``; returns the run state."""
    meta, arrays = _read(path)
    if meta["model"] != model_fingerprint(trainer):
        raise RctcError(f"{path}: checkpoint belongs to a different model (written for {meta.get('source')!r}); "
                        "resume with the model it was written for, or delete it")
    diff = [k for k in sorted(set(run_args) | set(meta["args"])) if run_args.get(k) != meta["args"].get(k)]
    if diff:
        was = ", ".join(f"{k}={meta['args'].get(k)!r} (now {run_args.get(k)!r})" for k in diff)
        raise RctcError(f"{path}: checkpoint was written with other training arguments: {was}; "
                        "resume with the same arguments and data")
    if meta["seed"] != trainer.seed:
        raise RctcError(f"{path}: checkpoint was written with --seed {meta['seed']} (now {trainer.seed}); "
                        "resume with the same seed")
    g = trainer.graph
    for i, name in enumerate(meta["state_names"]):
        v, a = g.value(name), arrays[f"state_{i}"]
        if a.shape != tuple(v.shape or ()) or a.dtype != v.dtype:
            raise RctcError(f"{path}: state {name!r} has shape {list(a.shape)} {a.dtype}, the model wants "
                            f"{list(v.shape or ())} {v.dtype}; the checkpoint belongs to a different model")
        v.data = a
    for k in [k for k in g.meta if not k.startswith("_")]:
        del g.meta[k]
    g.meta.update(meta["graph_meta"])
    trainer.step = int(meta["step"])
    g.meta["step"] = trainer.step
    try:
        trainer.data_rng.bit_generator.state = meta["data_rng"]
    except (TypeError, ValueError, KeyError) as exc:
        raise RctcError(f"{path}: checkpoint damaged or from another version of rctc (generator state: {exc}); "
                        "delete it to start over") from None
    for ctrl, window in zip(_controllers(trainer), meta["controller"]):
        ctrl.window = {k: Window(*w) for k, w in window.items()}
        ctrl.changes = g.meta.setdefault("bit_changes", [])
    run = meta["run"]
    order = arrays.get("order")
    return RunState(epoch=int(run["epoch"]), pos=int(run["pos"]), done=int(run["done"]),
                    start_step=int(run["start_step"]), order=None if order is None else order.astype(np.int64))


class Checkpointer:
    """``after_step`` callback: writes a checkpoint every ``every`` steps (0: only on demand)."""

    def __init__(self, path: Path, every: int, trainer: Trainer, run_args: dict[str, Any]) -> None:
        if every < 0:
            raise RctcError(f"--checkpoint-every must be >= 0, got {every}")
        self.path, self.every, self.trainer, self.run_args = path, every, trainer, run_args
        self.last: RunState | None = None
        self.written_step = -1

    def __call__(self, st: RunState) -> None:
        self.last = st
        if self.every and st.done % self.every == 0:
            self.write(st)

    def write(self, st: RunState | None = None) -> None:
        st = st or self.last
        if st is None or self.trainer.step == self.written_step:
            return
        write_checkpoint(self.path, encode_checkpoint(self.trainer, st, self.run_args))
        self.written_step = self.trainer.step


class StopOnInterrupt:
    """While active, the first Ctrl-C (SIGINT) only sets a flag (the run stops after the step);
    a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> StopOnInterrupt:
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
            self._old = None
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __call__(self) -> bool:
        return self.requested

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)

"""``rctc train model.rct --data train.npz``: run the training graph, write the trained .rct atomically.

Needs: a compiled .rct and data. Leaves: the trained model at ``-o`` (default: in place), a
checkpoint ``OUT.ckpt`` when asked for or interrupted, the step log at ``--log``; nothing the user
had is replaced by a failed run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from rctc.cli import values
from rctc.cli.common import (
    IN_FILE,
    OUT_FILE,
    backend_option,
    data_options,
    emit_json,
    fail_cleanly,
    progress,
    show_progress,
    use_backend,
)
from rctc.cli.outputs import writing
from rctc.errors import DataError, RctcError


@dataclass
class TrainArgs:
    """The command line of one ``rctc train``, as click parsed it."""

    model: Path
    data: str
    x_key: str
    y_key: str
    target: str | None
    epochs: int | None
    steps: int | None
    lr: float | None
    lr_schedule: str
    warmup_steps: int
    seed: int | None
    no_shuffle: bool
    keep_last: bool
    val_data: str | None
    val_split: float | None
    output: Path | None
    log_path: Path | None
    profile_ops: bool
    energy_profile: str | None
    checkpoint_every: int
    resume: bool
    backend: str | None
    quiet: bool
    as_json: bool

    @property
    def out_path(self) -> Path:
        return self.output or self.model

    def run_args(self, x: np.ndarray, y: np.ndarray | None) -> dict[str, Any]:
        """What a checkpoint records to refuse resuming with other arguments or data."""
        from rctc.checkpoint import data_digest

        return {"epochs": self.epochs, "steps": self.steps, "lr": self.lr, "lr_schedule": self.lr_schedule,
                "warmup_steps": self.warmup_steps, "seed": self.seed, "shuffle": not self.no_shuffle,
                "keep_last": self.keep_last, "data": data_digest(x, y)}


def _split(x: np.ndarray, y: np.ndarray, frac: float, seed: int) -> tuple:
    if not 0 < frac < 1:
        raise DataError(f"--val-split must be between 0 and 1, got {frac}")
    order = np.random.default_rng([seed, 3]).permutation(len(x))
    n_val = max(1, int(round(len(x) * frac)))
    v, t = order[:n_val], order[n_val:]
    return x[t], y[t], x[v], y[v]


class LazyLog:
    """The ``--log`` file, opened at the first step: a run that fails before training leaves no log."""

    def __init__(self, path: Path, graph: Any) -> None:
        self.path, self.graph, self.logger = path, graph, None

    def write(self, rec: Any) -> None:
        if self.logger is None:
            from rctc.runtime.logging import StepLogger

            self.logger = StepLogger(self.path, self.graph)
        self.logger.write(rec)

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()


def _check_args(a: TrainArgs) -> None:
    """Option combinations, before any work."""
    if a.epochs is not None and a.steps is not None:
        raise RctcError("give --epochs or --steps, not both")
    if a.val_split is not None and a.val_data is not None:
        raise RctcError("give --val or --val-split, not both")


def _load_data(a: TrainArgs, seed: int) -> tuple[Any, np.ndarray, np.ndarray | None, tuple | None]:
    """The training data set, its x and y (less a validation split), and the validation triple."""
    from rctc.data import load_data

    ds = load_data(a.data, a.x_key, a.y_key, a.target)
    x, y = ds.x, ds.y
    if a.val_split is not None:
        if y is None:
            raise DataError(f"{ds.source}: no labels (array 'y' missing; use --y-key or --target)")
        x, y, xv, yv = _split(x, y, a.val_split, seed)
        return ds, x, y, (xv, yv, f"{ds.source} (validation split)")
    if a.val_data is not None:
        vds = load_data(a.val_data, a.x_key, a.y_key, a.target)
        return ds, x, y, (vds.x, vds.y, vds.source)
    return ds, x, y, None


def _run(a: TrainArgs, m: Any, t: Any, ds: Any, x: np.ndarray, y: np.ndarray | None) -> tuple[dict, Any, int]:
    """Train (resuming from the checkpoint when asked); returns the summary, the checkpointer, the run length."""
    from rctc import checkpoint as ckpt
    from rctc.runtime.trainer import run_length

    total = run_length(len(x), m.batch_size, a.epochs, a.steps, a.keep_last)
    run_args = a.run_args(x, y)
    checkpointer = ckpt.Checkpointer(ckpt.checkpoint_path(a.out_path), a.checkpoint_every, t, run_args)
    state = ckpt.load_checkpoint(ckpt.find_checkpoint(checkpointer.path), t, run_args) if a.resume else None
    logger = LazyLog(a.log_path, m.graph) if a.log_path else None

    def describe(r: Any) -> str:
        return f"epoch {r.epoch + 1} loss {r.loss:.4f}" + (f" acc {r.accuracy:.3f}" if r.accuracy is not None else "")

    try:
        with progress(show_progress(a.quiet or a.as_json), total, "training", describe,
                      state.done if state is not None else 0) as advance, ckpt.StopOnInterrupt() as interrupted:

            def on_step(rec: Any) -> None:
                if logger is not None:
                    logger.write(rec)
                if advance is not None:
                    advance(rec)

            summary = m.train(x, y, epochs=a.epochs, steps=a.steps, lr=a.lr, seed=a.seed, shuffle=not a.no_shuffle,
                              keep_last=a.keep_last, lr_schedule=a.lr_schedule, warmup_steps=a.warmup_steps,
                              on_step=on_step, source=ds.source, state=state, after_step=checkpointer,
                              should_stop=interrupted)
    finally:
        if logger is not None:
            logger.close()
    return summary, checkpointer, total


def _print_summary(a: TrainArgs, summary: dict[str, Any], checkpoint: Path, total: int) -> None:
    if summary["final_loss"] is None:  # resumed from a checkpoint that already holds the whole run
        click.echo(f"nothing to train: {checkpoint} already holds all {total} steps of this run; "
                   f"saved {a.out_path}; to train further, run without --resume (training continues from the saved "
                   "model)")
        return
    msg = f"trained {summary['steps']} steps in {summary['seconds']:.2f} s ({summary['ms_per_step']:.2f} ms/step); " \
          f"final loss {summary['final_loss']:.4f}"
    if "val_accuracy" in summary:
        msg += f"; validation accuracy {summary['val_accuracy']:.4f}"
    click.echo(msg)
    if "measured" in summary:
        from rctc.analysis.report import fmt_energy

        meas = summary["measured"]
        click.echo(f"measured energy ({meas['profile']}): {fmt_energy(meas['energy_pj_per_step'])} per step, "
                   f"{fmt_energy(meas['energy_pj_total'])} in total")
    if a.profile_ops:
        total_ms = sum(summary["op_times_ms"].values()) or 1.0
        click.echo(f"{'op':<28} {'ms':>10} {'%':>6}")
        for k, v in summary["op_times_ms"].items():
            click.echo(f"{k:<28} {v:10.1f} {100 * v / total_ms:6.1f}")
    click.echo(f"saved {a.out_path}")


def _train_options(fn: Any) -> Any:
    """The options of ``rctc train`` after ``--data`` and the data keys (in the order ``--help`` lists them)."""
    opts = [
        click.option("--epochs", type=values.COUNT, default=None, help="Epochs (default 1 unless --steps)."),
        click.option("--steps", type=values.COUNT, default=None, help="Number of steps (instead of --epochs)."),
        click.option("--lr", type=values.POSITIVE_FLOAT, default=None,
                     help="Learning rate (default: the compiled one)."),
        click.option("--lr-schedule", type=click.Choice(["constant", "step", "cosine"]), default="constant",
                     show_default=True),
        click.option("--warmup-steps", type=values.NON_NEGATIVE_INT, default=0, show_default=True),
        click.option("--seed", type=values.SEED, default=None,
                     help="Seed for shuffling, dropout and stochastic rounding."),
        click.option("--no-shuffle", is_flag=True),
        click.option("--keep-last", is_flag=True, help="Pad the last partial batch with masked samples."),
        click.option("--val", "val_data", default=None, help="Validation data (same formats as --data)."),
        click.option("--val-split", type=values.FRACTION, default=None,
                     help="Hold out this fraction of --data for validation."),
        click.option("-o", "--output", type=OUT_FILE, help="Trained .rct (default: in place)."),
        click.option("--log", "log_path", type=OUT_FILE, help="Write one JSON line per step."),
        click.option("--profile-ops", is_flag=True, help="Print the time spent per op type."),
        click.option("--profile", "energy_profile", default=None,
                     help="Energy profile (name or TOML path) for the measured energy counters."),
        click.option("--checkpoint-every", type=values.NON_NEGATIVE_INT, default=0, show_default=True,
                     help="Write a checkpoint (OUT.ckpt) every N steps; 0: only when interrupted."),
        click.option("--resume", is_flag=True, help="Continue from the newest checkpoint of OUT (same arguments)."),
        backend_option,
        click.option("--quiet", is_flag=True, help="No progress bar."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@click.command("train")
@click.argument("model", type=IN_FILE)
@click.option("--data", required=True, help=".npz (x, y), .csv (--target), image folder, or digits.")
@data_options
@_train_options
@fail_cleanly
def command(**kwargs: Any) -> None:
    """Train a compiled MODEL (.rct) on DATA; writes the trained .rct atomically.

    Ctrl-C stops after the current step, writes a checkpoint and the model, exits 130.
    """
    from rctc.checkpoint import checkpoint_path

    a = TrainArgs(**kwargs)
    _check_args(a)
    with writing([a.out_path, a.log_path, checkpoint_path(a.out_path)],
                 [a.model, a.data, a.val_data, a.energy_profile], in_place=a.model):
        _train(a)


def _train(a: TrainArgs) -> None:
    """Load, train, save and report (the outputs are checked and locked)."""
    from rctc.analysis.counter import attach_counter
    from rctc.analysis.profiles import load_profile
    from rctc.api import load

    prof = load_profile(a.energy_profile)
    m = load(a.model)
    use_backend(m, a.backend)
    ds, x, y, val = _load_data(a, m.options.seed if a.seed is None else a.seed)
    t = m.trainer(a.seed)
    attach_counter(t, prof)
    if a.profile_ops:
        t.executor.op_times = {}
        if hasattr(t.executor, "node_times"):  # the native backend also times each C node
            t.executor.node_times = {}
    summary, checkpointer, total = _run(a, m, t, ds, x, y)
    if summary["stopped"]:
        checkpointer.write()
        m.save(a.out_path)
        click.echo(f"interrupted after step {t.step}: saved {a.out_path} and checkpoint {checkpointer.path}; "
                   "continue with the same command and --resume", err=True)
        sys.exit(130)
    if val is not None:
        res = m.evaluate(val[0], val[1], source=val[2])
        summary["val_loss"] = res["loss"]
        if "accuracy" in res:
            summary["val_accuracy"] = res["accuracy"]
    m.save(a.out_path)
    summary.update(output=str(a.out_path), mode=m.mode, backend=m.backend)
    if a.profile_ops:
        summary["op_times_ms"] = {k: v * 1e3 for k, v in sorted(t.executor.op_times.items(), key=lambda kv: -kv[1])}
        if getattr(t.executor, "node_times", None):
            summary["node_times_ms"] = {k: v * 1e3 for k, v in
                                        sorted(t.executor.node_times.items(), key=lambda kv: -kv[1])}
    if a.as_json:
        emit_json(summary)
    else:
        _print_summary(a, summary, checkpointer.path, total)

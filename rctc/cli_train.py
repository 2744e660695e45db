"""CLI commands that run a compiled model: train, eval, inspect, export."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from rctc.cli import emit_json, fail_cleanly, main, progress, refuse_overwriting_inputs, show_progress
from rctc.errors import DataError, RctcError
from rctc.rct_format import check_writable


def _data_options(fn: Any) -> Any:
    fn = click.option("--target", default=None, help="CSV: the label column.")(fn)
    fn = click.option("--y-key", default="y", show_default=True, help="npz: the label array.")(fn)
    fn = click.option("--x-key", default="x", show_default=True, help="npz: the input array.")(fn)
    return fn


def _split(x: np.ndarray, y: np.ndarray, frac: float, seed: int) -> tuple:
    if not 0 < frac < 1:
        raise DataError(f"--val-split must be between 0 and 1, got {frac}")
    order = np.random.default_rng([seed, 3]).permutation(len(x))
    n_val = max(1, int(round(len(x) * frac)))
    v, t = order[:n_val], order[n_val:]
    return x[t], y[t], x[v], y[v]


@main.command("train")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", required=True, help=".npz (x, y), .csv (--target), image folder, or digits.")
@_data_options
@click.option("--epochs", type=int, default=None, help="Epochs (default 1 unless --steps).")
@click.option("--steps", type=int, default=None, help="Number of steps (instead of --epochs).")
@click.option("--lr", type=float, default=None, help="Learning rate (default: the compiled one).")
@click.option("--lr-schedule", type=click.Choice(["constant", "step", "cosine"]), default="constant", show_default=True)
@click.option("--warmup-steps", type=int, default=0, show_default=True)
@click.option("--seed", type=int, default=None, help="Seed for shuffling, dropout and stochastic rounding.")
@click.option("--no-shuffle", is_flag=True)
@click.option("--keep-last", is_flag=True, help="Pad the last partial batch with masked samples.")
@click.option("--val", "val_data", default=None, help="Validation data (same formats as --data).")
@click.option("--val-split", type=float, default=None, help="Hold out this fraction of --data for validation.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Trained .rct (default: in place).")
@click.option("--log", "log_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one JSON line per step.")
@click.option("--profile-ops", is_flag=True, help="Print the time spent per op type.")
@click.option("--profile", "energy_profile", default=None,
              help="Energy profile (name or TOML path) for the measured energy counters.")
@click.option("--checkpoint-every", type=int, default=0, show_default=True,
              help="Write a checkpoint (OUT.ckpt) every N steps; 0: only when interrupted.")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint of OUT (same arguments).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
@fail_cleanly
def train_cmd(model: Path, data: str, x_key: str, y_key: str, target: str | None, epochs: int | None,
              steps: int | None, lr: float | None, lr_schedule: str, warmup_steps: int, seed: int | None,
              no_shuffle: bool, keep_last: bool, val_data: str | None, val_split: float | None,
              output: Path | None, log_path: Path | None, profile_ops: bool, energy_profile: str | None,
              checkpoint_every: int, resume: bool, quiet: bool, as_json: bool) -> None:
    """Train a compiled MODEL (.rct) on DATA; writes the trained .rct atomically.

    Ctrl-C stops after the current step, writes a checkpoint and the model, exits 130.
    """
    from rctc import checkpoint as ckpt
    from rctc.analysis.counter import attach_counter
    from rctc.analysis.profiles import load_profile
    from rctc.api import load
    from rctc.data import load_data
    from rctc.runtime.logging import StepLogger
    from rctc.runtime.trainer import run_length

    if epochs is not None and steps is not None:
        raise RctcError("give --epochs or --steps, not both")
    if warmup_steps < 0:
        raise RctcError(f"--warmup-steps must be >= 0, got {warmup_steps}")
    refuse_overwriting_inputs(output or model, data, val_data, log_path)
    if log_path is not None:
        refuse_overwriting_inputs(log_path, model, data, val_data)
    check_writable(output or model)
    prof = load_profile(energy_profile)
    m = load(model)
    ds = load_data(data, x_key, y_key, target)
    x, y = ds.x, ds.y
    val = None
    if val_split is not None:
        if val_data is not None:
            raise RctcError("give --val or --val-split, not both")
        if y is None:
            raise DataError(f"{ds.source}: no labels (array 'y' missing; use --y-key or --target)")
        x, y, xv, yv = _split(x, y, val_split, m.options.seed if seed is None else seed)
        val = (xv, yv, f"{ds.source} (validation split)")
    elif val_data is not None:
        vds = load_data(val_data, x_key, y_key, target)
        val = (vds.x, vds.y, vds.source)
    out_path = output or model
    t = m.trainer(seed)
    attach_counter(t, prof)
    if profile_ops:
        t.executor.op_times = {}
    total = run_length(len(x), m.batch_size, epochs, steps, keep_last)
    run_args = {"epochs": epochs, "steps": steps, "lr": lr, "lr_schedule": lr_schedule, "warmup_steps": warmup_steps,
                "seed": seed, "shuffle": not no_shuffle, "keep_last": keep_last, "data": ckpt.data_digest(x, y)}
    checkpointer = ckpt.Checkpointer(ckpt.checkpoint_path(out_path), checkpoint_every, t, run_args)
    state = ckpt.load_checkpoint(ckpt.find_checkpoint(checkpointer.path), t, run_args) if resume else None
    logger = StepLogger(log_path, m.graph) if log_path else None

    def describe(r: Any) -> str:
        return f"epoch {r.epoch + 1} loss {r.loss:.4f}" + (f" acc {r.accuracy:.3f}" if r.accuracy is not None else "")

    try:
        with progress(show_progress(quiet or as_json), total, "training", describe,
                      state.done if state is not None else 0) as advance, ckpt.StopOnInterrupt() as interrupted:

            def on_step(rec: Any) -> None:
                if logger is not None:
                    logger.write(rec)
                if advance is not None:
                    advance(rec)

            summary = m.train(x, y, epochs=epochs, steps=steps, lr=lr, seed=seed, shuffle=not no_shuffle,
                              keep_last=keep_last, lr_schedule=lr_schedule, warmup_steps=warmup_steps,
                              on_step=on_step, source=ds.source, state=state, after_step=checkpointer,
                              should_stop=interrupted)
    finally:
        if logger is not None:
            logger.close()
    if summary["stopped"]:
        checkpointer.write()
        m.save(out_path)
        click.echo(f"interrupted after step {t.step}: saved {out_path} and checkpoint {checkpointer.path}; "
                   "continue with the same command and --resume", err=True)
        sys.exit(130)
    if val is not None:
        res = m.evaluate(val[0], val[1], source=val[2])
        summary["val_loss"] = res["loss"]
        if "accuracy" in res:
            summary["val_accuracy"] = res["accuracy"]
    m.save(out_path)
    summary["output"] = str(out_path)
    summary["mode"] = m.mode
    if profile_ops:
        summary["op_times_ms"] = {k: v * 1e3 for k, v in sorted(t.executor.op_times.items(), key=lambda kv: -kv[1])}
    if as_json:
        emit_json(summary)
        return
    if summary["final_loss"] is None:  # resumed from a checkpoint that already holds the whole run
        click.echo(f"nothing to train: {checkpointer.path} already holds all {total} steps of this run; "
                   f"saved {out_path}; to train further, run without --resume (training continues from the saved "
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
    if profile_ops:
        total_ms = sum(summary["op_times_ms"].values()) or 1.0
        click.echo(f"{'op':<28} {'ms':>10} {'%':>6}")
        for k, v in summary["op_times_ms"].items():
            click.echo(f"{k:<28} {v:10.1f} {100 * v / total_ms:6.1f}")
    click.echo(f"saved {out_path}")


@main.command("eval")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", required=True)
@_data_options
@click.option("--json", "as_json", is_flag=True)
@fail_cleanly
def eval_cmd(model: Path, data: str, x_key: str, y_key: str, target: str | None, as_json: bool) -> None:
    """Evaluate a compiled MODEL on DATA: loss and accuracy (classification) or MSE."""
    from rctc.api import load
    from rctc.data import load_data

    m = load(model)
    ds = load_data(data, x_key, y_key, target)
    res = m.evaluate(ds.x, ds.y, source=ds.source)
    if as_json:
        emit_json(res)
    else:
        click.echo("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()))


@main.command("export")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--format", "fmt", type=click.Choice(["float", "qdq"]), default="float", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@fail_cleanly
def export_cmd(model: Path, output: Path, fmt: str, as_json: bool) -> None:
    """Export the trained model as an inference ONNX file for onnxruntime."""
    from rctc.api import load

    refuse_overwriting_inputs(output, model)
    check_writable(output)
    m = load(model)
    m.export(output, fmt)
    if as_json:
        emit_json({"output": str(output), "format": fmt})
    else:
        click.echo(f"exported {model} -> {output} ({fmt})")


@main.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--profile", default=None, help="Energy profile name or TOML path.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw the per-layer energy / memory breakdown into this PNG (needs rctc[plot]).")
@click.option("--json", "as_json", is_flag=True)
@fail_cleanly
def inspect_cmd(model: Path, profile: str | None, plot_path: Path | None, as_json: bool) -> None:
    """Show the parameter slot table and the static energy / memory estimate."""
    from rctc.api import load
    from rctc.summary import graph_summary, parameter_table

    if plot_path is not None:
        refuse_overwriting_inputs(plot_path, model)
        check_writable(plot_path)
    m = load(model)
    info: dict[str, Any] = graph_summary(m.graph)
    info["parameters"] = parameter_table(m.graph)
    info.update(m.estimate(profile))
    if plot_path is not None:
        from rctc.plot_energy import plot_estimate

        plot_estimate(info, plot_path, title=f"{model.name}: {info['mode']} mode, batch {info['batch_size']}")
        info["plot"] = str(plot_path)
    if as_json:
        emit_json(info)
        return
    click.echo(f"{model}: {info['mode']} mode, batch {info['batch_size']}, step {info['step']}")
    click.echo(f"{'parameter':<34} {'shape':<16} {'dtype':<8} {'train':<5} "
               f"{'bits':>4} {'min':>4} {'max':>4} {'exp':>5}")
    for r in info["parameters"]:
        dash = "-"
        click.echo(f"{r['name']:<34} {str(r['shape']):<16} {r['dtype']:<8} {'yes' if r['trainable'] else 'no':<5} "
                   f"{r['bits']:>4} {r['min_bits'] or dash:>4} {r['max_bits'] or dash:>4} "
                   f"{dash if r['exponent'] is None else r['exponent']:>5}")
    click.echo(info["text"])
    if plot_path is not None:
        click.echo(f"wrote {plot_path}")

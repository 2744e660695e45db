"""The ``rctc`` command line (click): a thin layer over the Python API.

Every user-caused error is printed as one line ``rctc: error: ...`` and exits with code 2.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from rctc.errors import RctcError
from rctc.jsonutil import json_default
from rctc.options import ELEMENTWISE, LOSSES, MODES, OPTIMIZERS, ROUNDINGS, CompileOptions


class RctcGroup(click.Group):
    """A click group whose usage errors (bad option, missing argument, a folder where a file is
    expected) are one ``rctc: error:`` line with exit code 2, like every other user error."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see: rctc {exc.ctx.info_name if exc.ctx and exc.ctx.parent else ''} --help)".replace("  ", " ")
            msg = " ".join(exc.format_message().split())
            click.echo(f"rctc: error: {msg}{hint}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("rctc: aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            click.echo(f"rctc: error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


def refuse_overwriting_inputs(output: Path, *inputs: Any) -> None:
    """An output may not replace one of the command's own inputs."""
    out = output.resolve()
    for p in inputs:
        if p is not None and Path(str(p)).exists() and Path(str(p)).resolve() == out:
            raise RctcError(f"{output}: is also an input of this command; choose another output file")


def fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn RctcError (and a few OS errors) into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with np.errstate(all="ignore"):  # NaN / overflow are detected and reported by rctc itself
                return fn(*args, **kwargs)
        except RctcError as exc:
            click.echo(f"rctc: error: {exc}", err=True)
            sys.exit(2)
        except MemoryError:
            click.echo("rctc: error: out of memory; use a smaller --batch-size", err=True)
            sys.exit(2)
        except OSError as exc:  # an unwritable / invalid output path and the like
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"rctc: error: {where}{exc.strerror or exc}; check the path and its permissions", err=True)
            sys.exit(2)

    return wrapper


@contextlib.contextmanager
def progress(show: bool, length: int, label: str, describe: Callable[[Any], str], done: int = 0
             ) -> Iterator[Callable[[Any], None] | None]:
    """A click progress bar on stderr when ``show``; yields ``advance(item)`` (or None when hidden)."""
    if not show:
        yield None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True,
                           item_show_func=lambda item: item and describe(item)) as bar:
        if done:
            bar.update(done)
        yield lambda item: bar.update(1, item)


def show_progress(quiet: bool) -> bool:
    """Progress bars only on a terminal, and never with --quiet / --json."""
    return not quiet and sys.stderr.isatty()


def emit_json(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, default=json_default))



@click.group(cls=RctcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rctc")
def main() -> None:
    """rctc: compile ONNX models into Resource Constrained Training graphs, estimate and train them."""


@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Output .rct (default: MODEL.rct).")
@click.option("--mode", type=click.Choice(MODES), default="rct", show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True, help="Binds the dynamic batch dimension.")
@click.option("--loss", type=click.Choice(LOSSES), default="cross-entropy", show_default=True)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="sgd", show_default=True)
@click.option("--lr", type=float, default=0.05, show_default=True, help="Default learning rate (train --lr overrides).")
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--trainable", multiple=True, help="Glob over parameter names to train (repeatable).")
@click.option("--freeze", multiple=True, help="Glob over parameter names to freeze (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--bits", type=int, default=8, show_default=True, help="RCT: starting weight bitwidth.")
@click.option("--min-bits", type=int, default=4, show_default=True)
@click.option("--max-bits", type=int, default=16, show_default=True)
@click.option("--act-bits", type=int, default=8, show_default=True)
@click.option("--grad-bits", type=int, default=8, show_default=True)
@click.option("--rounding", type=click.Choice(ROUNDINGS), default="stochastic", show_default=True)
@click.option("--elementwise", type=click.Choice(ELEMENTWISE), default=CompileOptions.elementwise, show_default=True,
              help="RCT: element-wise ops on integers, or in float32 as version 1 did.")
@click.option("--adjust-every", type=int, default=CompileOptions.adjust_every, show_default=True,
              help="Bitwidth controller period in steps (0 disables).")
@click.option("--gavg-low", type=float, default=CompileOptions.gavg_low, show_default=True)
@click.option("--gavg-high", type=float, default=CompileOptions.gavg_high, show_default=True)
@click.option("--print-between-passes", is_flag=True, help="Print the IR after every pass.")
@click.option("--time-passes", is_flag=True, help="Print the time each pass took.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@fail_cleanly
def compile_cmd(model: Path, output: Path | None, print_between_passes: bool, time_passes: bool, as_json: bool,
                **opts: Any) -> None:
    """Lower an ONNX MODEL to a training graph (.rct)."""
    from rctc.compiler import compile_graph
    from rctc.rct_format import check_writable, save_rct
    from rctc.summary import graph_summary

    if model.suffix == ".rct" and model.exists():
        raise RctcError(f"{model}: is already a compiled .rct; give the ONNX model to compile")
    out = output or model.with_suffix(".rct")
    refuse_overwriting_inputs(out, model)
    check_writable(out)
    opts["trainable"] = list(opts["trainable"])
    opts["freeze"] = list(opts["freeze"])
    options = CompileOptions(**opts)
    echo = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    from rctc.passes.registry import PIPELINES

    with progress(show_progress(as_json or print_between_passes), len(PIPELINES[options.mode]), "compiling",
                  str) as advance:
        g, pm = compile_graph(model, options, print_between=print_between_passes, echo=echo, on_pass=advance)
    save_rct(g, out)
    summary = graph_summary(g)
    summary["output"] = str(out)
    summary["passes"] = [{"name": r.name, "ms": r.seconds * 1e3} for r in pm.runs]
    if as_json:
        emit_json(summary)
        return
    click.echo(f"compiled {model} -> {out}  ({summary['mode']} mode, batch {summary['batch_size']})")
    if summary["batch_size"] != options.batch_size:
        src = click.get_current_context().get_parameter_source("batch_size")
        if src is click.core.ParameterSource.COMMANDLINE:
            click.echo(f"  note: {model} fixes the batch dimension at {summary['batch_size']}; --batch-size "
                       f"{options.batch_size} only binds a dynamic one (re-export with a dynamic batch axis)")
    click.echo(f"  nodes: {summary['nodes']['forward']} forward, {summary['nodes']['backward']} backward, "
               f"{summary['nodes']['update']} update; parameters: {summary['parameters']} "
               f"({summary['trainable_parameters']} trainable, {summary['parameter_elements']} values)")
    if summary["mode"] == "rct":
        isl = summary["float_islands"]
        click.echo(f"  float islands ({summary['elementwise']} element-wise): " + (", ".join(
            f"{i['node']} ({i['op_type']})" for i in isl) if isl else "none"))
    if time_passes:
        click.echo(pm.timing_report())


@main.command("predict")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", required=True, help=".npz with array x (or digits, a .csv, an image folder).")
@click.option("--x-key", default="x", show_default=True)
@click.option("--target", default=None, help="CSV: the label column to drop from the inputs.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Output .npz.")
@click.option("--json", "as_json", is_flag=True)
@fail_cleanly
def predict_cmd(model: Path, data: str, x_key: str, target: str | None, output: Path, as_json: bool) -> None:
    """Run the trained forward graph on DATA and write the model's outputs to an .npz."""
    import io

    from rctc.api import load
    from rctc.data import load_data
    from rctc.rct_format import atomic_write_bytes, check_writable

    refuse_overwriting_inputs(output, model, data)
    check_writable(output)
    m = load(model)
    ds = load_data(data, x_key=x_key, target=target)
    outs = m.predict(ds.x, source=ds.source)
    buf = io.BytesIO()
    np.savez(buf, **outs)
    atomic_write_bytes(output, buf.getvalue())
    info = {"output": str(output), "samples": len(ds), "arrays": {k: list(v.shape) for k, v in outs.items()}}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"wrote {output}: " + ", ".join(f"{k} {v}" for k, v in info["arrays"].items()))


from rctc import cli_demo, cli_report, cli_train  # noqa: E402,F401  - registers train, eval, inspect, export, demo, report

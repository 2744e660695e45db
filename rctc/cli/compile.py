"""``rctc compile model.onnx -o model.rct``: lower an ONNX model to a training graph."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import click

from rctc.cli import values
from rctc.cli.common import (
    IN_FILE,
    OUT_FILE,
    emit_json,
    fail_cleanly,
    json_option,
    progress,
    show_progress,
)
from rctc.cli.outputs import writing
from rctc.errors import RctcError
from rctc.options import ELEMENTWISE, LOSSES, MODES, OPTIMIZERS, ROUNDINGS, CompileOptions, refuse_no_effect


def _compile_options(fn: Any) -> Any:
    """The options that become the .rct's CompileOptions (in the order ``--help`` lists them)."""
    opts = [
        click.option("--mode", type=click.Choice(MODES), default="rct", show_default=True),
        click.option("--batch-size", type=values.BATCH_SIZE, default=32, show_default=True,
                     help="Binds the dynamic batch dimension."),
        click.option("--loss", type=click.Choice(LOSSES), default="cross-entropy", show_default=True),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="sgd", show_default=True),
        click.option("--lr", type=values.POSITIVE_FLOAT, default=0.05, show_default=True,
                     help="Default learning rate (train --lr overrides)."),
        click.option("--momentum", type=values.MOMENTUM, default=None,
                     help="SGD momentum, as torch.optim.SGD (default 0; 0.9 with --optimizer momentum)."),
        click.option("--weight-decay", type=values.NON_NEGATIVE_FLOAT, default=None,
                     help="Decoupled for adamw (default: PyTorch's, 0 for sgd, 0.01 for adamw)."),
        click.option("--betas", type=values.MOMENTUM, nargs=2, default=None,
                     help="AdamW moment decays (default 0.9 0.999)."),
        click.option("--eps", type=values.POSITIVE_FLOAT, default=None, help="AdamW epsilon (default 1e-8)."),
        click.option("--trainable", multiple=True, help="Glob over parameter names to train (repeatable)."),
        click.option("--freeze", multiple=True, help="Glob over parameter names to freeze (repeatable)."),
        click.option("--seed", type=values.SEED, default=0, show_default=True),
        click.option("--bits", type=values.BITS, default=8, show_default=True, help="RCT: starting weight bitwidth."),
        click.option("--min-bits", type=values.BITS, default=4, show_default=True),
        click.option("--max-bits", type=values.BITS, default=16, show_default=True),
        click.option("--act-bits", type=values.BITS, default=8, show_default=True),
        click.option("--grad-bits", type=values.BITS, default=8, show_default=True),
        click.option("--rounding", type=click.Choice(ROUNDINGS), default="stochastic", show_default=True),
        click.option("--elementwise", type=click.Choice(ELEMENTWISE), default=CompileOptions.elementwise,
                     show_default=True, help="RCT: element-wise ops on integers, or in float32 as version 1 did."),
        click.option("--adjust-every", type=values.NON_NEGATIVE_INT, default=CompileOptions.adjust_every,
                     show_default=True, help="Bitwidth controller period in steps (0 disables)."),
        click.option("--gavg-low", type=values.NON_NEGATIVE_FLOAT, default=CompileOptions.gavg_low,
                     show_default=True),
        click.option("--gavg-high", type=values.NON_NEGATIVE_FLOAT, default=CompileOptions.gavg_high,
                     show_default=True),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _print_result(model: Path, out: Path, summary: dict[str, Any], options: CompileOptions) -> None:
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
        islands = _islands_line(summary["float_islands"])
        click.echo(f"  float islands ({summary['elementwise']} element-wise): {islands}")


def _islands_line(islands: list[dict[str, str]], listed: int = 8) -> str:
    """The float islands by name when there are few, else counted per op type (inspect --json lists all)."""
    if not islands:
        return "none"
    if len(islands) <= listed:
        return ", ".join(f"{i['node']} ({i['op_type']})" for i in islands)
    counts = Counter(i["op_type"] for i in islands)
    per_op = ", ".join(f"{op} x{n}" for op, n in counts.most_common())
    return f"{len(islands)} nodes: {per_op} (rctc inspect --json lists each)"


@click.command("compile")
@click.argument("model", type=IN_FILE)
@click.option("-o", "--output", type=OUT_FILE, help="Output .rct (default: MODEL.rct).")
@_compile_options
@click.option("--print-between-passes", is_flag=True, help="Print the IR after every pass.")
@click.option("--time-passes", is_flag=True, help="Print the time each pass took.")
@json_option
@fail_cleanly
def command(model: Path, output: Path | None, print_between_passes: bool, time_passes: bool, as_json: bool,
            **opts: Any) -> None:
    """Lower an ONNX MODEL to a training graph (.rct)."""
    from rctc.compiler import compile_graph
    from rctc.passes.registry import PIPELINES
    from rctc.rct_format import save_rct
    from rctc.summary import graph_summary

    if model.suffix == ".rct" and model.exists():
        raise RctcError(f"{model}: is already a compiled .rct; give the ONNX model to compile")
    out = output or model.with_suffix(".rct")
    options = CompileOptions(**{**opts, "trainable": list(opts["trainable"]), "freeze": list(opts["freeze"])})
    ctx = click.get_current_context()
    given = {n for n in opts if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE}
    refuse_no_effect(options, given)
    echo = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    with writing([out], [model]):
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
    _print_result(model, out, summary, options)
    if time_passes:
        click.echo(pm.timing_report())

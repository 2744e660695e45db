"""``rctc inspect model.rct``: the parameter slot table and the static energy / memory estimate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rctc.cli.common import IN_FILE, OUT_FILE, emit_json, fail_cleanly, json_option
from rctc.cli.outputs import writing


def _print_parameters(rows: list[dict[str, Any]]) -> None:
    click.echo(f"{'parameter':<34} {'shape':<16} {'dtype':<8} {'train':<5} "
               f"{'bits':>4} {'min':>4} {'max':>4} {'exp':>5}")
    dash = "-"
    for r in rows:
        click.echo(f"{r['name']:<34} {str(r['shape']):<16} {r['dtype']:<8} {'yes' if r['trainable'] else 'no':<5} "
                   f"{r['bits']:>4} {r['min_bits'] or dash:>4} {r['max_bits'] or dash:>4} "
                   f"{dash if r['exponent'] is None else r['exponent']:>5}")


@click.command("inspect")
@click.argument("model", type=IN_FILE)
@click.option("--profile", default=None, help="Energy profile name or TOML path.")
@click.option("--plot", "plot_path", type=OUT_FILE, default=None,
              help="Also draw the per-layer energy / memory breakdown into this PNG (needs rctc[plot]).")
@click.option("--compare", "other", type=IN_FILE, default=None,
              help="A second compiled model (e.g. the same model compiled with --elementwise float): "
                   "both estimates side by side.")
@json_option
@fail_cleanly
def command(model: Path, profile: str | None, plot_path: Path | None, other: Path | None, as_json: bool) -> None:
    """Show the parameter slot table and the static energy / memory estimate."""
    from rctc.api import load
    from rctc.summary import graph_summary, parameter_table

    with writing([plot_path], [model, profile, other]):
        m = load(model)
        info: dict[str, Any] = graph_summary(m.graph)
        info["parameters"] = parameter_table(m.graph)
        info.update(m.estimate(profile))
        if other is not None:
            from rctc.analysis.compare import compare_estimates

            o = load(other)
            other_info: dict[str, Any] = graph_summary(o.graph)
            other_info.update(o.estimate(profile))
            info["compare"] = compare_estimates(info, other_info, str(model), str(other))
        if plot_path is not None:
            from rctc.plot_energy import plot_estimate

            plot_estimate(info, plot_path, title=f"{model.name}: {info['mode']} mode, batch {info['batch_size']}")
            info["plot"] = str(plot_path)
    if as_json:
        emit_json(info)
        return
    click.echo(f"{model}: {info['mode']} mode, batch {info['batch_size']}, step {info['step']}")
    _print_parameters(info["parameters"])
    click.echo(info["text"])
    if other is not None:
        from rctc.analysis.compare import format_comparison

        click.echo("")
        click.echo(format_comparison(info["compare"]))
    if plot_path is not None:
        click.echo(f"wrote {plot_path}")

"""``rctc report run.jsonl -o report.png``: training curves, per-layer bitwidths and measured energy."""

from __future__ import annotations

from pathlib import Path

import click

from rctc.cli import values
from rctc.cli.common import IN_FILE, OUT_FILE, emit_json, fail_cleanly
from rctc.cli.outputs import writing


@click.command("report")
@click.argument("log", type=IN_FILE)
@click.option("-o", "--output", type=OUT_FILE, required=True,
              help="The PNG to write.")
@click.option("--title", default=None, help="Figure title (default: steps and final loss).")
@click.option("--smooth", type=values.COUNT, default=None, help="Moving-average window in steps (default: automatic).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
@fail_cleanly
def command(log: Path, output: Path, title: str | None, smooth: int | None, as_json: bool) -> None:
    """Plot a `rctc train --log` file: loss, accuracy, per-layer bits and measured energy per step."""
    from rctc.plots import plot_report, read_log

    with writing([output], [log]):
        info = plot_report(read_log(log), output, title, smooth)
    info["output"] = str(output)
    if as_json:
        emit_json(info)
    else:
        click.echo(f"wrote {output}: {', '.join(info['panels'])} over {info['steps']} steps")

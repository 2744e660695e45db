"""``rctc export model.rct -o model.onnx``: the trained model as an inference ONNX file."""

from __future__ import annotations

from pathlib import Path

import click

from rctc.cli.common import IN_FILE, OUT_FILE, emit_json, fail_cleanly, json_option
from rctc.cli.outputs import writing


@click.command("export")
@click.argument("model", type=IN_FILE)
@click.option("-o", "--output", type=OUT_FILE, required=True)
@click.option("--format", "fmt", type=click.Choice(["float", "qdq"]), default="float", show_default=True)
@json_option
@fail_cleanly
def command(model: Path, output: Path, fmt: str, as_json: bool) -> None:
    """Export the trained model as an inference ONNX file for onnxruntime."""
    from rctc.api import load

    with writing([output], [model]):
        load(model).export(output, fmt)
    if as_json:
        emit_json({"output": str(output), "format": fmt})
    else:
        click.echo(f"exported {model} -> {output} ({fmt})")

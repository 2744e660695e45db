"""``rctc predict model.rct --data x.npz -o out.npz``: the trained forward graph on new data."""

from __future__ import annotations

import io
from pathlib import Path

import click
import numpy as np

from rctc.cli.common import IN_FILE, OUT_FILE, backend_option, emit_json, fail_cleanly, json_option, use_backend
from rctc.cli.outputs import writing


@click.command("predict")
@click.argument("model", type=IN_FILE)
@click.option("--data", required=True, help=".npz with array x (or digits, a .csv, an image folder).")
@click.option("--x-key", default="x", show_default=True)
@click.option("--target", default=None, help="CSV: the label column to drop from the inputs.")
@click.option("-o", "--output", type=OUT_FILE, required=True, help="Output .npz.")
@backend_option
@json_option
@fail_cleanly
def command(model: Path, data: str, x_key: str, target: str | None, output: Path, backend: str | None,
            as_json: bool) -> None:
    """Run the trained forward graph on DATA and write the model's outputs to an .npz."""
    from rctc.api import load
    from rctc.data import load_data
    from rctc.rct_format import atomic_write_bytes

    with writing([output], [model, data]):
        m = load(model)
        use_backend(m, backend)
        ds = load_data(data, x_key=x_key, y_key=None, target=target)
        outs = m.predict(ds.x, source=ds.source)
        buf = io.BytesIO()
        np.savez(buf, **outs)
        atomic_write_bytes(output, buf.getvalue())
    info = {"output": str(output), "samples": len(ds), "arrays": {k: list(v.shape) for k, v in outs.items()}}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"wrote {output}: " + ", ".join(f"{k} {v}" for k, v in info["arrays"].items()))

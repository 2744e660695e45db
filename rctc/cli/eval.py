"""``rctc eval model.rct --data test.npz``: loss and accuracy (or MSE) of a compiled model."""

from __future__ import annotations

from pathlib import Path

import click

from rctc.cli.common import IN_FILE, backend_option, data_options, emit_json, fail_cleanly, json_option, use_backend


@click.command("eval")
@click.argument("model", type=IN_FILE)
@click.option("--data", required=True)
@data_options
@backend_option
@json_option
@fail_cleanly
def command(model: Path, data: str, x_key: str, y_key: str, target: str | None, backend: str | None,
            as_json: bool) -> None:
    """Evaluate a compiled MODEL on DATA: loss and accuracy (classification) or MSE."""
    from rctc.api import load
    from rctc.data import load_data

    m = load(model)
    use_backend(m, backend)
    ds = load_data(data, x_key, y_key, target)
    res = m.evaluate(ds.x, ds.y, source=ds.source)
    if as_json:
        emit_json(res)
    else:
        click.echo("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()))

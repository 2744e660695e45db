"""``rctc digest model.rct``: the CRC-32 of the trained state, as every backend and the device print it."""

from __future__ import annotations

from pathlib import Path

import click

from rctc.cli.common import IN_FILE, emit_json, fail_cleanly, json_option


@click.command("digest")
@click.argument("model", type=IN_FILE)
@json_option
@fail_cleanly
def command(model: Path, as_json: bool) -> None:
    """Print the digest of MODEL's training state (CRC-32 over its tensors; see docs/digest.md)."""
    from rctc.api import load
    from rctc.digest import graph_state_records

    m = load(model)
    digest = m.digest()
    if as_json:
        emit_json({"digest": digest, "tensors": len(graph_state_records(m.graph))})
    else:
        click.echo(f"digest {digest}")

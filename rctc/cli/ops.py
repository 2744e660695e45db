"""``rctc ops``: the operator table (which modes each op type runs in), generated from the op definitions."""

from __future__ import annotations

import click

from rctc.cli.common import emit_json, fail_cleanly, json_option


@click.command("ops")
@json_option
@fail_cleanly
def command(as_json: bool) -> None:
    """List every op type rctc knows: fp32 / qat / rct (integer or float island), gradients, C kernel."""
    from rctc.ops.table import format_table, operator_table

    if as_json:
        emit_json({"ops": operator_table()})
    else:
        click.echo(format_table())

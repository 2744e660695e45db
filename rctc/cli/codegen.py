"""``rctc codegen model.rct -o DIR --target cortex-m4|host``: a C project that trains the model on a device.

Needs: rctc.native.device.codegen (the logic). Leaves: the project in DIR; with the toolchain, the
built image's figures (and with ``--run`` the digest and instructions) on stdout.
"""

from __future__ import annotations

from pathlib import Path

import click

from rctc.cli import values
from rctc.cli.common import IN_FILE, emit_json, fail_cleanly, json_option


@click.command("codegen")
@click.argument("model", type=IN_FILE)
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Project folder (created; files rctc does not write are left alone).")
@click.option("--target", default="cortex-m4", show_default=True, help="cortex-m4 or host.")
@click.option("--board", default=None, help="cortex-m4 board: mps2-an386 (QEMU, default) or stm32f746 (a budget).")
@click.option("--data", default=None, help="Training data (.npz, .csv, image folder, digits): the first "
              "--steps x batch samples, in file order, are quantised on the host and stored in flash.")
@click.option("--x-key", default="x", show_default=True, help="npz: the input array.")
@click.option("--y-key", default="y", show_default=True, help="npz: the label array.")
@click.option("--label-column", default=None, help="CSV: the label column (`rctc train --target`).")
@click.option("--steps", type=values.COUNT, default=1, show_default=True, help="Training steps the device runs.")
@click.option("--seed", type=values.SEED, default=None, help="Seed of the stochastic rounding (default: compiled).")
@click.option("--lr", type=values.POSITIVE_FLOAT, default=None, help="Learning rate (default: the compiled one).")
@click.option("--run", "do_run", is_flag=True, help="Run it: under QEMU (cortex-m4) or directly (host).")
@click.option("--band-bytes", type=values.BAND_BYTES, default=None,
              help="Smallest scratch band of a banded conv (default 16384; a fused update's gradient block "
              "takes twice it): smaller needs less RAM and more instructions (docs/device.md, Scratch).")
@json_option
@fail_cleanly
def command(model: Path, out_dir: Path, target: str, board: str | None, data: str | None, x_key: str, y_key: str,
            label_column: str | None, steps: int, seed: int | None, lr: float | None, do_run: bool,
            band_bytes: int | None, as_json: bool) -> None:
    """Write a C project into DIR that trains MODEL on a microcontroller (or the host), integer only.

    With the toolchain (arm-none-eabi-gcc, newlib, qemu-system-arm; cc for host) it is built and
    sized; --run trains on the emulated core and prints the state digest, which equals `rctc digest`
    of the model `rctc train MODEL --data DATA --steps N --seed S --no-shuffle` writes.
    """
    from rctc.native.device.codegen import codegen, describe

    res = codegen(model, out_dir, target=target, board=board, data=data, x_key=x_key, y_key=y_key,
                  target_column=label_column, steps=steps, seed=seed, lr=lr, do_run=do_run, band_bytes=band_bytes)
    if as_json:
        emit_json(res.summary())
    else:
        for line in describe(res):
            click.echo(line)

"""The boards and targets a device project can be written for.

Each board here has a linker script ``boards/<name>.ld`` and a makefile fragment
``boards/<name>.mk`` beside this file; the numbers below restate the linker script's MEMORY
regions so rctc can name the budget in a message (a test checks the two agree).
"""

from __future__ import annotations

from dataclasses import dataclass

from rctc.errors import RctcError

TARGETS = ("cortex-m4", "host")


@dataclass(frozen=True)
class Board:
    """A memory map: where the image and the RAM are, how big, and what emulates it."""

    name: str
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    qemu_machine: str | None  # the -M name, or None when it is a budget only
    description: str


BOARDS: dict[str, Board] = {
    b.name: b
    for b in (
        Board(
            "mps2-an386",
            0x00000000,
            4 * 1024 * 1024,
            0x20000000,
            4 * 1024 * 1024,
            "mps2-an386",
            "Arm MPS2 AN386 (Cortex-M4) as QEMU models it: 4 MB SSRAM1 at 0x0, 4 MB SSRAM2&3 at 0x20000000",
        ),
        Board(
            "stm32f746",
            0x08000000,
            1024 * 1024,
            0x20000000,
            320 * 1024,
            None,
            "STM32F746-class budget: 1 MB flash, 320 KB SRAM (linked and sized, not run)",
        ),
    )
}


def board_named(name: str) -> Board:
    """The board called ``name``; an RctcError naming the known ones otherwise."""
    try:
        return BOARDS[name]
    except KeyError:
        raise RctcError(f"unknown board {name!r}: use one of {', '.join(sorted(BOARDS))}") from None

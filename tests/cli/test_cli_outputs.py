"""Outputs that are also inputs (paths, symlinks, hard links) are refused by every writing command;
two commands writing one file at once: the second is refused."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np


def _links(work: Path) -> None:
    """Hard links and symlinks to the inputs, under other names."""
    (work / "run.jsonl").write_text('{"step": 0, "loss": 1.0}\n{"step": 1, "loss": 0.5}\n')
    os.link(work / "run.jsonl", work / "hard.jsonl")
    os.link(work / "mlp.rct", work / "hard.rct")
    os.link(work / "data.npz", work / "hard.npz")
    os.link(work / "mlp.onnx", work / "hard.onnx")
    os.symlink(work / "mlp.rct", work / "sym.rct")
    (work / "sub").mkdir()


def test_every_writing_command_refuses_its_inputs(work: Path, refused: Callable) -> None:
    _links(work)
    w = work
    cases = [
        ["report", w / "run.jsonl", "-o", w / "run.jsonl"],
        ["report", w / "run.jsonl", "-o", w / "hard.jsonl"],
        ["report", w / "run.jsonl", "-o", w / "sub" / ".." / "run.jsonl"],
        ["predict", w / "mlp.rct", "--data", w / "data.npz", "-o", w / "hard.npz"],
        ["predict", w / "mlp.rct", "--data", w / "data.npz", "-o", w / "sym.rct"],
        ["predict", w / "mlp.rct", "--data", w / "data.npz", "-o", w / "hard.rct"],
        ["export", w / "mlp.rct", "-o", w / "hard.rct"],
        ["export", w / "sym.rct", "-o", w / "mlp.rct"],
        ["compile", w / "mlp.onnx", "-o", w / "hard.onnx"],
        ["inspect", w / "mlp.rct", "--plot", w / "hard.rct"],
        ["train", w / "mlp.rct", "--data", w / "data.npz", "-o", w / "hard.npz"],
        ["train", w / "mlp.rct", "--data", w / "data.npz", "--log", w / "hard.rct"],
        ["train", w / "mlp.rct", "--data", w / "data.npz", "--log", w / "data.npz"],
        ["train", w / "mlp.rct", "--data", w / "data.npz", "--val", w / "hard.npz", "-o", w / "data.npz"],
    ]
    for args in cases:
        refused(work, args, "is also an input of this command")


def test_two_outputs_of_one_command_must_differ(work: Path, refused: Callable) -> None:
    refused(work, ["train", work / "mlp.rct", "--data", work / "data.npz", "-o", work / "t.rct",
                   "--log", work / "t.rct"], "is also another output of this command")


def test_in_place_training_is_still_allowed(work: Path, run: Callable, contract: Callable) -> None:
    before = (work / "mlp.rct").read_bytes()
    r = run(["train", work / "mlp.rct", "--data", work / "data.npz", "--steps", "1"])
    contract(r, allowed=(0,))
    assert (work / "mlp.rct").read_bytes() != before
    assert not list(work.glob(".*.lock")), "the lock file is removed afterwards"


def test_a_second_writer_of_the_same_output_is_refused(work: Path, refused: Callable) -> None:
    """While another process holds the output's lock (here: this one, through its own open file), a
    training, a compile and a predict onto that output are refused and nothing changes."""
    out = work / "t.rct"
    out.write_bytes((work / "mlp.rct").read_bytes())
    lock = work / ".t.rct.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for args in (["train", work / "mlp.rct", "--data", work / "data.npz", "-o", out, "--steps", "1"],
                     ["train", out, "--data", work / "data.npz", "--steps", "1"],
                     ["compile", work / "mlp.onnx", "-o", out],
                     ["predict", work / "mlp.rct", "--data", work / "data.npz", "-o", out]):
            refused(work, args, "another rctc command is writing this file right now")
    finally:
        os.close(fd)
    assert np.load(work / "data.npz")["x"].shape == (12, 64)

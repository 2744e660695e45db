"""rctc inspect --plot draws the estimate into a PNG, atomically, and needs matplotlib."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from rctc.cli import main
from rctc.models import path


def test_inspect_plot_writes_png(tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("matplotlib")
    rct, png = tmp_path / "m.rct", tmp_path / "energy.png"
    assert CliRunner().invoke(main, ["compile", str(path("lenet")), "-o", str(rct), "--batch-size", "8"]).exit_code == 0
    r = CliRunner().invoke(main, ["inspect", str(rct), "--plot", str(png), "--json"])
    assert r.exit_code == 0, r.output
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert not list(tmp_path.glob(".energy.png.*"))


def test_inspect_plot_into_missing_folder_is_one_line(tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("matplotlib")
    rct = tmp_path / "m.rct"
    CliRunner().invoke(main, ["compile", str(path("mlp")), "-o", str(rct), "--batch-size", "8"])
    r = CliRunner().invoke(main, ["inspect", str(rct), "--plot", str(tmp_path / "nope" / "e.png")])
    assert r.exit_code == 2 and r.stderr.startswith("rctc: error:") and "does not exist" in r.stderr

"""``rctc report run.jsonl -o report.png``: panels from a real training log, measured energy when
logged, clear one-line errors for a bad log or a missing matplotlib."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rctc.cli import main
from rctc.plots import read_log

MODELS = Path(__file__).resolve().parents[1] / "models"


def _log(tmp_path: Path, mode: str) -> Path:
    model, log = tmp_path / f"{mode}.rct", tmp_path / f"{mode}.jsonl"
    ctrl = ["--adjust-every", "3"] if mode == "rct" else []  # (fp32 has no controller: the option is refused)
    r = CliRunner().invoke(main, ["compile", str(MODELS / "mlp.onnx"), "-o", str(model), "--mode", mode, *ctrl])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["train", str(model), "--data", "digits", "--steps", "12", "--log", str(log)])
    assert r.exit_code == 0, r.output
    return log


def _report(log: Path, out: Path) -> dict:
    r = CliRunner().invoke(main, ["report", str(log), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return json.loads(r.stdout)


def test_report_from_rct_and_fp32_logs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.image as mpimg

    log = _log(tmp_path, "rct")
    rows = read_log(log)
    info = _report(log, tmp_path / "rct.png")
    assert info["panels"] == ["loss", "accuracy", "bits", "energy"] and info["steps"] == 12
    assert all(r["measured_energy_pj"] > 0 for r in rows)
    assert info["final_bits"] == rows[-1]["bits"] and info["final_loss"] == rows[-1]["loss"]
    assert mpimg.imread(tmp_path / "rct.png").shape[1] > 800
    info = _report(_log(tmp_path, "fp32"), tmp_path / "fp32.png")
    assert info["panels"] == ["loss", "accuracy", "energy"]


def test_measured_energy_panel_and_resumed_log(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rows = [json.loads(line) for line in _log(tmp_path, "rct").read_text().splitlines()]
    energy = np.linspace(1e6, 2e6, len(rows))
    for r, e in zip(rows, energy):
        r["measured_energy_pj"] = float(e)
    lines = [json.dumps(r) for r in rows]
    log = tmp_path / "energy.jsonl"
    log.write_text("\n".join(lines[:8] + lines[5:]) + "\n")  # resumed from step 5: steps 6..8 logged twice
    info = _report(log, tmp_path / "energy.png")
    assert info["panels"][-1] == "energy" and info["steps"] == len(rows)
    assert info["energy_pj_total"] == pytest.approx(float(energy.sum()))


def _error(args: list[str]) -> str:
    r = CliRunner().invoke(main, args)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("rctc: error: "), r.output
    return lines[0]


def test_bad_logs_and_missing_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.png"
    assert "no such log file" in _error(["report", str(tmp_path / "none.jsonl"), "-o", str(out)])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "loss": 2.0}\nnot json\n')
    assert "line 2 is not JSON" in _error(["report", str(bad), "-o", str(out)])
    bad.write_text('{"epoch": 1}\n')
    assert "no step/loss" in _error(["report", str(bad), "-o", str(out)])
    bad.write_text("\n")
    assert "no steps" in _error(["report", str(bad), "-o", str(out)])
    good = tmp_path / "good.jsonl"
    good.write_text('{"step": 1, "loss": 2.0, "lr": 0.1}\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert "pip install 'rctc[plot]'" in _error(["report", str(good), "-o", str(out)])
    assert not out.exists()

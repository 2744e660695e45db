"""The benchmark harness's merging of rounds (benchmarks/run_benchmarks.py; no timing here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from run_benchmarks import main, merge_rounds  # noqa: E402


def _run(ms: float, rss: int, note: str = "") -> dict:
    return {"ms_per_step_median": ms, "ms_list": [ms], "peak_rss_bytes": rss, "note": note}


def test_merge_takes_the_median_round_and_the_largest_rss() -> None:
    got = merge_rounds([_run(30.0, 5, "slow phase"), _run(10.0, 7, "a"), _run(12.0, 6, "b")])
    assert got["ms_per_step_median"] == 12.0
    assert got["round_medians"] == [30.0, 10.0, 12.0]
    assert got["peak_rss_bytes"] == 7
    assert got["note"] == "b"  # the other fields come from the round nearest the median


def test_merge_skips_failed_rounds_and_reports_an_all_failed_peer() -> None:
    got = merge_rounds([{"error": "boom"}, _run(8.0, 1), _run(10.0, 2)])
    assert got["ms_per_step_median"] == 9.0 and got["round_medians"] == [8.0, 10.0]
    assert got["failed_rounds"] == ["boom"]
    assert merge_rounds([{"error": "first"}, {"error": "second"}]) == {"error": "first"}


def test_no_peer_left_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--peers", "", "--models", "mlp", "-o", "/nonexistent/never-written.md"])
    assert exc.value.code == 2 and "no peer left" in capsys.readouterr().err

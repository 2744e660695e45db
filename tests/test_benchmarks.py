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


# ---- the peers' environment and process measurements (benchmarks/_common.py) --------------------
import subprocess  # noqa: E402

import _common  # noqa: E402
import peers_ort  # noqa: E402
import peers_report  # noqa: E402


def test_thread_env_unsets_the_openblas_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("OPENBLAS_L2_SIZE", "512")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = _common.thread_env(2)
    assert not {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "PYTHONPATH"} & set(env)
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"


def _child(code: str, timeout: float = 60.0) -> tuple[int, str, str, int]:
    return _common.run_measured([sys.executable, "-c", code], _common.thread_env(), timeout)


def test_run_measured_reports_the_childs_own_peak_rss() -> None:
    small = _child("print('hi')")
    big = _child("import time; b = bytearray(96 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.2); "
                 "print(len(b))")
    assert small[0] == 0 and small[1].strip() == "hi"
    # the 96 MiB the child touched, not this process's RSS (which Linux's ru_maxrss would include)
    assert 96 * 2**20 <= big[3] < 96 * 2**20 + max(200 * 2**20, _common.current_rss_bytes() // 2)
    assert small[3] < 96 * 2**20
    code, _, err, _ = _child("import sys; sys.exit('bad input')")
    assert code == 1 and "bad input" in err


def test_run_measured_kills_a_child_past_its_timeout() -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        _child("import time; time.sleep(30)", timeout=0.3)


def test_kernel_info_names_numpys_blas() -> None:
    import numpy as np

    np.ones((4, 4)) @ np.ones((4, 4))
    libs = _common.kernel_info()
    blas = [i for i in libs if i["internal_api"] in ("openblas", "mkl", "blis")]
    assert blas and all(set(i) == {"library", "internal_api", "architecture", "num_threads", "version"} for i in libs)
    text = _common.describe_kernels(blas)
    assert blas[0]["library"] in text and f"{blas[0]['num_threads']} thr" in text
    assert _common.describe_kernels([]) == "none seen by threadpoolctl"


# ---- the ORT venv (benchmarks/peers_ort.py) -------------------------------------------------------
def test_missing_ort_venv_names_the_setup_step(tmp_path: Path) -> None:
    why = peers_ort.check_venv(tmp_path / "no-venv")
    assert why is not None and "no ONNX Runtime training venv" in why
    assert f"python benchmarks/peers_ort.py --setup --venv {tmp_path / 'no-venv'}" in why


def test_run_skips_the_ort_column_with_the_setup_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import run_benchmarks

    seen: list[list[str]] = []
    monkeypatch.setattr(run_benchmarks, "run_peers", lambda models, peers, *a, **k: seen.append(list(peers)) or {})
    monkeypatch.setattr(run_benchmarks, "compile_times", lambda *a: {"error": "skipped"})
    monkeypatch.setattr(_common, "machine_info", lambda: {"cpu": "test"})  # no torch import here
    out = tmp_path / "r.md"
    assert main(["--quick", "--models", "mlp", "--peers", "torch_fp32,ort", "--no-gemm",
                 "--ort-venv", str(tmp_path / "none"), "-o", str(out)]) == 0
    assert seen == [["torch_fp32"]]
    assert "ORT peer skipped: no ONNX Runtime training venv" in capsys.readouterr().err
    assert "ORT training: not run: no ONNX Runtime training venv" in out.read_text()


# ---- the report and the targets (benchmarks/peers_report.py) -------------------------------------
def _res(**ms: float) -> dict:
    peers = {"nat": "rctc_native", "num": "rctc_rct", "tf": "torch_fp32", "tq": "torch_qat", "ort": "ort"}
    return {("resnet8", peers[k]): _run(v, int(v) * 2**20) for k, v in ms.items()}


def test_targets_compare_the_native_backend_with_each_peer() -> None:
    rows = {name: (nat, met) for name, nat, _, met in
            peers_report.targets(["resnet8"], _res(nat=40.0, num=100.0, tf=90.0, tq=120.0, ort=30.0))}
    assert rows["resnet8: rct <= 0.5x PyTorch fp32"] == ("40.00 vs 0.5 x 90.00 ms (0.44x)", True)
    assert rows["resnet8: rct <= 0.3x PyTorch QAT"][1] is False  # 40 > 0.3 * 120
    assert rows["resnet8: rct <= ORT training"][1] is False
    assert rows["resnet8: peak RSS <= PyTorch fp32's"] == ("40 vs 90 MiB", True)


def test_an_unavailable_native_backend_is_na_never_a_number() -> None:
    results = _res(num=100.0, tf=90.0, tq=120.0)
    results[("resnet8", "rctc_native")] = {"unavailable": "no C compiler (CC=/nonexistent)"}
    rows = peers_report.targets(["resnet8"], results)
    assert all(met is None and nat == "n/a" for _, nat, _, met in rows)
    text = peers_report.render(["resnet8"], ["rctc_native", "rctc_rct", "torch_fp32", "torch_qat"], results,
                               {"error": "skipped"}, None, {"cpu": "x"}, {"start": "1 / 2 / 3", "end": "4 / 5 / 6"},
                               [], {"warmup": 1, "min_steps": 3, "min_seconds": 0}, 32)
    table = next(ln for ln in text.splitlines() if ln.startswith("| resnet8 | n/a"))
    assert "n/a (no C compiler (CC=/nonexistent))" in table and "| 100.00 | 90.00 | 120.00 |" in table
    assert "1 / 2 / 3" in text and "rough" in text


def test_gemm_section_states_the_peak_and_the_missing_avx512() -> None:
    row = {"model": "m", "layer": "conv", "direction": "forward", "shape": "16x512x72",
           "avx2 1t": 156.5, "avx2 2t": 156.5, "numpy f32 2t": 50.0}
    gemm = {"rows": [row], "isa": "avx2", "cores": 2, "ghz": 2.445, "per_cycle": 64, "why": "AVX2",
            "peak_gops": 626.0, "core_peak_gops": 313.0, "blas": "openblas", "cpu": "AMD EPYC",
            "cpu_flags": ["avx", "avx2", "fma"], "load_s": 0.02}
    text = "\n".join(peers_report.gemm_section(gemm))
    assert "**no AVX-512**" in text and "2 x 2.445 x 64.0 x 2 = **626 GOPS**" in text
    assert "| 50% | 25% |" in text  # 156.5 of one core's 313, of the machine's 626
    met = {n: m for n, _, _, m in peers_report.targets([], {}, gemm)}
    assert met["int8 GEMM >= 50% of the int8 peak on the big layers"] is True
    assert "AVX-512 avx512_vnni" in "\n".join(peers_report.gemm_section({**gemm, "cpu_flags": ["avx2", "avx512_vnni"]}))


def test_gemm_section_reads_native_gemms_peaks_block() -> None:
    """native_gemm.run() reports the clock and the int8 rate in ``peaks`` (the VNNI peak when measured)."""
    row = {"model": "m", "layer": "conv", "direction": "forward", "shape": "16x32768x144",
           "avx512vnni 1t": 460.0, "avx512vnni 2t": 460.0, "numpy f32 2t": 100.0}
    gemm = {"rows": [row], "isa": "avx512vnni", "cores": 2, "core_peak_gops": 920.0, "blas": "openblas",
            "cpu": "Xeon", "cpu_flags": ["avx2", "avx512_vnni"], "load_s": 0.01,
            "peaks": {"ghz": 4.0, "int8": (115.0, "vpdpbusd zmm at 1.80 per cycle, measured")}}
    text = "\n".join(peers_report.gemm_section(gemm))
    assert "2 x 4.000 x 115.0 x 2 = **1840 GOPS** (920 per core)" in text and "vpdpbusd zmm" in text
    assert "| 50% | 25% |" in text  # 460 of one core's 920, of the machine's 1840
    met = {n: m for n, _, _, m in peers_report.targets([], {}, gemm)}
    assert met["int8 GEMM >= 50% of the int8 peak on the big layers"] is True


def test_native_peer_without_a_compiler_reports_unavailable(tmp_path: Path) -> None:
    import json

    env = _common.thread_env() | {"CC": str(tmp_path / "no-cc"), "XDG_CACHE_HOME": str(tmp_path)}
    cmd = [sys.executable, str(_common.HERE / "peers_rctc.py"), "--peer", "rctc_native", "--model", "mlp",
           "--batch", "4", "--warmup", "0", "--min-steps", "1", "--min-seconds", "0", "--max-steps", "1"]
    code, out, err, _ = _common.run_measured(cmd, env, 300)
    res = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and res.get("unavailable") and "ms_per_step_median" not in res, (res, err)


def test_native_peer_with_a_compiler_times_and_reports_its_kernels(tmp_path: Path) -> None:
    """With the system compiler the native peer times steps and says what ran (variant, nodes in C)."""
    import json

    env = _common.thread_env() | {"XDG_CACHE_HOME": str(tmp_path)}
    cmd = [sys.executable, str(_common.HERE / "peers_rctc.py"), "--peer", "rctc_native", "--model", "mlp",
           "--batch", "4", "--warmup", "0", "--min-steps", "2", "--min-seconds", "0", "--max-steps", "2"]
    code, out, err, _ = _common.run_measured(cmd, env, 300)
    res = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and "unavailable" not in res, (res, err)
    assert res["ms_per_step_median"] > 0
    c_nodes, total = res["native_nodes_in_c"]
    assert 0 < c_nodes <= total and res["native_isa"], res


def test_time_steps_budget_ends_a_slow_peer_early(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(_common.time, "perf_counter", lambda: clock[0])
    calls: list[int] = []

    def slow_step() -> None:  # 4 s a step on a fake clock
        calls.append(1)
        clock[0] += 4.0

    ms = _common.time_steps(slow_step, warmup=5, min_steps=20, min_seconds=2.0)
    # warm-up: steps at t=0, 4, 8 (past 10 s after the third); timed: stops after 32 s with >= 5 steps
    assert len(calls) == 3 + len(ms) and len(ms) == 8 and ms == [4000.0] * 8
    clock[0], calls[:] = 0.0, []
    fast = _common.time_steps(lambda: clock.__setitem__(0, clock[0] + 0.01), warmup=2, min_steps=20, min_seconds=0.5)
    assert len(fast) == 50  # neither budget binds: 0.5 s of 10 ms steps


def test_build_targets_take_the_setup_less_one_step() -> None:
    builds = {"resnet8": {"first": {**_run(400.0, 1), "native_setup_seconds": 6.0},
                          "cached": {**_run(400.0, 1), "native_setup_seconds": 0.8}},
              "mlp": {"first": {"unavailable": "no C compiler"}, "cached": {"unavailable": "no C compiler"}}}
    rows = {n: (shown, met) for n, shown, _, met in peers_report.targets([], {}, builds=builds)}
    assert rows["resnet8: first build of the step (library cached) <= 5 s"] == (
        "5.60 s (6.00 s with its first step)", False)
    assert rows["resnet8: cached start <= 0.5 s"] == ("0.40 s (0.80 s with its first step)", True)
    assert rows["mlp: cached start <= 0.5 s"] == ("n/a (no C compiler)", None)


def test_cli_start_children_run_without_this_machines_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    import cli_start

    for v in cli_start.UNSET:
        monkeypatch.setenv(v, "1")
    monkeypatch.setenv("RCTC_KEEP_ME", "yes")
    env = cli_start.child_env()
    assert not set(cli_start.UNSET) & set(env) and env["RCTC_KEEP_ME"] == "yes"


def test_cli_start_names_a_failing_command(tmp_path: Path) -> None:
    import cli_start

    with pytest.raises(RuntimeError, match="exited 3: boom"):
        cli_start.wall_times([sys.executable, "-c", "import sys; sys.exit('boom') if 0 else (print('boom', "
                              "file=sys.stderr), sys.exit(3))"], 1, tmp_path)


def test_cli_start_times_every_command_of_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cli_start

    monkeypatch.setattr(cli_start, "WARMUPS", 0)
    out = tmp_path / "start.md"
    assert cli_start.main(["--models", "mlp", "--repeats", "1", "--samples", "32", "-o", str(out)]) == 0
    text = out.read_text()
    for row in ("`python -c pass`", "`rctc --help`", "`rctc compile`", "`rctc inspect`",
                "`rctc train --steps 1 (native)`", "`rctc train --steps 1 (numpy)`", "`rctc eval (native)`",
                "`rctc predict (native)`"):
        assert row in text
    assert not list(tmp_path.glob("*.tmp"))


def test_numpy_reference_speed_refuses_an_unknown_model(tmp_path: Path) -> None:
    """An unknown --models name is one usage line and exit 2 before anything is built or written
    (it once became an error row in the results table and exit 0)."""
    out = tmp_path / "speed.md"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "numpy_reference_speed.py"
    res = subprocess.run([sys.executable, str(script), "--models", "transformer", "-o", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "invalid choice: 'transformer'" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists()


def test_native_kernel_ab_refuses_bad_options_and_an_unknown_revision(tmp_path: Path) -> None:
    """--calls 0 is a usage error, and a revision git does not know is one line naming it; either way
    exit 2, no traceback, no results file and no work tree left behind."""
    out = tmp_path / "ab.md"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "native_kernel_ab.py"
    res = subprocess.run([sys.executable, str(script), "--calls", "0", "-o", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--calls and --threads must be at least 1" in res.stderr
    res = subprocess.run([sys.executable, str(script), "--rev", "no-such-revision-here", "-o", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "cannot build revision 'no-such-revision-here'" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists()
    trees = subprocess.run(["git", "-C", str(script.parents[1]), "worktree", "list"], capture_output=True, text=True)
    assert "rctc-ab-" not in trees.stdout

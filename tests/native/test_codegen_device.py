"""``rctc codegen``: a model's training loop as a device project, checked against the host.

The reference is the numpy runtime through the CLI: ``rctc train MODEL --data D --steps N --seed S
--no-shuffle`` then ``rctc digest``; the device project, built with arm-none-eabi-gcc and run
under QEMU (Cortex-M4, mps2-an386) or built with the host's cc (``--target host``), must print
the same digest. Also: the arena the image links equals the memory plan's, the soft-float image
links no float helper (and the check catches one that does), a model too big for the stm32f746
budget is refused in one line naming the overflow and the largest tensors, the project is
written (exit 0) without a toolchain, and bad input is one line with exit code 2. Tests that
need the cross toolchain skip, saying what is missing, when it is absent (.ci/run installs it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

import rctc
from rctc.analysis.arena import device_layout, device_nodes, host_state
from rctc.cli import main
from rctc.digest import graph_state_records, state_digest
from rctc.native.device import toolchain_problem
from rctc.native.device.project import Project

_ARM = toolchain_problem("cortex-m4", "mps2-an386", run=True)
_HOST = toolchain_problem("host", run=True)
needs_arm = pytest.mark.skipif(_ARM is not None, reason=f"cortex-m4 toolchain: {_ARM}")
needs_host = pytest.mark.skipif(_HOST is not None, reason=f"host toolchain: {_HOST}")


def cli(args: Sequence[object]) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def one_line_error(r: Result) -> str:
    """The single ``rctc: error:`` line of a refused command (exit 2, no traceback, no stdout)."""
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr)
    assert r.stdout == "" and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rctc: error: "), r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compiled models (rct, batch 1) and data: LeNet on the digits, ResNet-8 on CIFAR-shaped noise."""
    d = tmp_path_factory.mktemp("codegen-device")
    for name in ("lenet", "resnet8", "mlp"):
        rctc.compile(f"models/{name}.onnx", mode="rct", batch_size=1, seed=5).save(d / f"{name}.rct")
    # the bitwidth controller decides every 2 steps: the device's C twin changes bits within a short run
    rctc.compile("models/lenet.onnx", mode="rct", batch_size=1, seed=5, adjust_every=2).save(d / "lenet_a2.rct")
    rng = np.random.default_rng(3)
    np.savez(d / "cifar.npz", x=rng.standard_normal((4, 3, 32, 32)).astype(np.float32), y=rng.integers(0, 10, 4))
    np.savez(d / "mlp.npz", x=rng.standard_normal((6, 64)).astype(np.float32), y=rng.integers(0, 10, 6))
    return d


def host_digest(work: Path, model: str, data: Path | str, steps: int, seed: int, tag: str,
                bit_changes: bool = False) -> str:
    """The digest of the model ``rctc train --no-shuffle`` makes (the numpy reference); with
    ``bit_changes`` the run must have changed some parameter's bitwidth (the controller acted)."""
    out = work / f"{model}-{tag}-trained.rct"
    r = cli(["train", work / f"{model}.rct", "--data", data, "--steps", steps, "--seed", seed, "--no-shuffle",
             "--backend", "numpy", "--json", "-o", out])
    assert r.exit_code == 0, r.output
    assert (json.loads(r.stdout)["bit_changes"] > 0) == bit_changes, r.stdout
    d = cli(["digest", out])
    assert d.exit_code == 0, d.output
    return d.stdout.split()[1]


def codegen_json(work: Path, model: str, out: Path, *args: object) -> dict:
    r = cli(["codegen", work / f"{model}.rct", "-o", out, *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _check_image(res: dict, plan: int) -> None:
    assert res["arena_bytes"] == res["plan_peak_bytes"] == plan, res  # linked arena == the compile-time plan
    assert res["arena_matches_plan"] is True
    assert res["float_helpers"] == []


@needs_arm
@pytest.mark.parametrize("model,data,steps,changes",
                         [("lenet_a2", "digits", 5, True), ("resnet8", "cifar.npz", 2, False)])
def test_qemu_digest_equals_host(work: Path, model: str, data: str, steps: int, changes: bool) -> None:
    data_path = data if data == "digits" else work / data
    res = codegen_json(work, model, work / f"{model}-m4", "--data", data_path, "--steps", steps, "--seed", 11,
                       "--run")
    want = host_digest(work, model, data_path, steps, 11, "m4", bit_changes=changes)
    assert res["digest"] == want
    _check_image(res, rctc.load(work / f"{model}.rct").graph.meta["memory_plan"]["arena_bytes"])
    assert res["instructions_per_step"] > 10_000 and res["flash_bytes"] > 0 and res["ram_bytes"] >= res["arena_bytes"]
    assert res["instructions_counted_by"].startswith("qemu -icount")


@needs_arm
def test_portable_gemm_build_trains_to_the_same_digest(work: Path, tmp_path: Path) -> None:
    """The project built without the Arm DSP GEMMs (``make EXTRA_CFLAGS=-DRCTC_PORTABLE_GEMM``)
    trains to the DSP build's digest, in more instructions (the DSP variants are what it runs)."""
    import shutil

    from rctc.native.device import build, run

    out = tmp_path / "lenet-portable"
    dsp = codegen_json(work, "lenet", out, "--data", "digits", "--steps", 2, "--seed", 11, "--run")
    project = Project(out, "cortex-m4", "mps2-an386", _config_of(out), ())
    shutil.rmtree(project.build_dir)
    build(project, make_args=["EXTRA_CFLAGS=-DRCTC_PORTABLE_GEMM"])
    portable = run(project)
    assert portable.digest_hex == dsp["digest"]
    assert portable.instructions / 2 > 1.05 * dsp["instructions_per_step"], (portable.instructions, dsp)


@needs_host
def test_host_target_digest_equals_host_training(work: Path) -> None:
    res = codegen_json(work, "lenet_a2", work / "lenet-host", "--target", "host", "--data", "digits", "--steps", 6,
                       "--seed", 3, "--run")
    assert res["digest"] == host_digest(work, "lenet_a2", "digits", 6, 3, "host", bit_changes=True)
    assert res["instructions_per_step"] is None  # the host has no counter, and says so
    assert res["arena_bytes"] == res["plan_peak_bytes"]


@needs_arm
def test_stm32_fit_check_refuses_a_model_too_big_in_one_line(work: Path, tmp_path: Path) -> None:
    rctc.compile("models/resnet8.onnx", mode="rct", batch_size=4).save(tmp_path / "big.rct")
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3, 32, 32), np.float32), y=np.zeros(4, np.int64))
    line = one_line_error(cli(["codegen", tmp_path / "big.rct", "-o", tmp_path / "proj", "--board", "stm32f746",
                               "--data", tmp_path / "d.npz"]))
    m = re.search(r"does not fit board stm32f746: RAM overflowed by (\d+) bytes \((\d+) needed, 327680 on the board\)",
                  line)
    assert m and int(m.group(2)) == int(m.group(1)) + 327680, line
    assert "largest state tensors: " in line and "largest arena tensors: " in line
    users = re.search(r"largest scratch users: (\w+) \S+ (\d+) B", line)  # the node, not the block
    block = re.search(r"scratch (\d+) B\)$", line)
    assert users and block and users.group(2) == block.group(1), line  # the largest user sized the block


@needs_arm
def test_soft_float_check_catches_a_float_helper(work: Path) -> None:
    """The generated integer image links no float helper (test above); the same project with one
    float multiply in model.c links libgcc's soft-float helpers, and the check names them."""
    from rctc.native.device import build

    out = work / "lenet_a2-m4"
    if not (out / "src" / "model.c").exists():
        codegen_json(work, "lenet_a2", out, "--data", "digits", "--steps", 5, "--seed", 11)
    project = Project(out, "cortex-m4", "mps2-an386", _config_of(out), ())
    model_c = out / "src" / "model.c"
    text = model_c.read_text()
    probe = "void rctc_model_init(void)\n{\n    { volatile float f = (float)rctc_lr_k[0]; f = f * 0.5f; (void)f; }\n"
    try:
        model_c.write_text(text.replace("void rctc_model_init(void)\n{\n", probe, 1))
        helpers = build(project).float_helpers
        assert "__aeabi_fmul" in helpers and "__aeabi_i2f" in helpers, helpers
    finally:
        model_c.write_text(text)
    assert build(project).float_helpers == ()


def _config_of(out: Path):
    from rctc.native.device import ModelConfig

    text = (out / "src" / "rctc_model_config.h").read_text()
    num = {k: int(v) for k, v in re.findall(r"#define RCTC_MODEL_(\w+) (\d+)u", text)}
    return ModelConfig(re.search(r'RCTC_MODEL_NAME "([^"]+)"', text).group(1), num["ARENA_BYTES"],
                       num["STATE_BYTES"], num["STEPS"], num["FIRST_STEP"])


def test_without_toolchain_the_project_is_written_and_exit_0(work: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    r = cli(["codegen", work / "lenet.rct", "-o", tmp_path / "p", "--data", "digits", "--steps", 2])
    assert r.exit_code == 0, r.output
    assert "not built: make is not installed" in r.stdout and "make -C" in r.stdout
    for f in ("Makefile", "project.mk", "main.c", "src/model.c", "src/rctc_step.c", "src/rctc_data.c",
              "src/rctc/kernels/gemm.c", "src/rctc/include/rctc_digest.h"):
        assert (tmp_path / "p" / f).is_file(), f


def test_plan_arena_is_the_generated_layout(work: Path) -> None:
    from rctc.native.codegen.model import device_program

    for name in ("lenet", "resnet8"):
        g = rctc.load(work / f"{name}.rct").graph
        prog = device_program(g)
        assert prog.arena_bytes == g.meta["memory_plan"]["arena_bytes"] == device_layout(g).arena_bytes
        # no two tensors live at once share a byte (an independent check of the first-fit layout)
        _assert_no_overlap(g, prog)


def _assert_no_overlap(g, prog) -> None:
    from rctc.analysis.arena import step_arguments, tensors, views

    nodes = device_nodes(g)
    args = step_arguments(g)
    root = views(nodes)
    first: dict[str, int] = {}
    lastuse: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for v in tensors(n, args):
            r = root.get(v.name, v.name)
            first.setdefault(r, i if v.producer is not None and v.producer in nodes else -1)
            lastuse[r] = i
    arena = [(nm, s) for nm, s in prog.slots.items() if s.region == "arena" and nm not in root]
    for _nm, s in arena:
        assert s.offset + s.nbytes <= prog.arena_bytes
    for a, (na, sa) in enumerate(arena):
        for nb, sb in arena[a + 1:]:
            live_together = first[na] <= lastuse[nb] and first[nb] <= lastuse[na]
            if live_together:
                assert sa.offset + sa.nbytes <= sb.offset or sb.offset + sb.nbytes <= sa.offset, (na, nb)


def test_digest_leaves_out_the_input_quantisers_running_range(work: Path) -> None:
    g = rctc.load(work / "lenet.rct").graph
    host = host_state(g)
    assert host and all(g.value(n).kind == "buffer" for n in host)
    names = {r[0] for r in graph_state_records(g)}
    assert not names & host and {p.name for p in g.params()} <= names
    before = state_digest(graph_state_records(g))
    for n in host:
        g.value(n).data = np.asarray(g.value(n).data) + np.float32(1.5)
    assert state_digest(graph_state_records(g)) == before


@pytest.mark.parametrize("args,needle", [
    (["codegen", "{w}/missing.rct", "-o", "{t}/p", "--data", "digits"], "no such file"),
    (["codegen", "{w}/lenet.rct", "-o", "{t}/p", "--data", "digits", "--target", "riscv"], "unknown target 'riscv'"),
    (["codegen", "{w}/lenet.rct", "-o", "{t}/p", "--data", "digits", "--board", "uno"], "unknown board 'uno'"),
    (["codegen", "{w}/lenet.rct", "-o", "{t}/p", "--data", "digits", "--target", "host", "--board", "stm32f746"],
     "the host target has no board"),
    (["codegen", "{w}/lenet.rct", "-o", "{t}/p", "--data", "digits", "--steps", "0"], "--steps"),
    (["codegen", "{w}/lenet.rct", "-o", "{t}/p"], "give --data"),
    (["codegen", "{w}/lenet.rct", "-o", "{t}/p", "--data", "{t}/nothere.npz"], "nothere.npz"),
    (["codegen", "{w}/lenet.rct", "-o", "{t}/p", "--data", "{w}/cifar.npz"], "cifar.npz"),
    (["codegen", "{w}/lenet.rct", "--data", "digits"], "-o"),
])
def test_bad_input_is_one_line_exit_2(work: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    line = one_line_error(cli([a.format(w=work, t=tmp_path) for a in args]))
    assert needle in line, line
    assert not (tmp_path / "p").exists()  # nothing written for a refused command


def test_fp32_model_is_refused_in_one_line(tmp_path: Path) -> None:
    rctc.compile("models/mlp.onnx", mode="fp32", batch_size=1).save(tmp_path / "f.rct")
    line = one_line_error(cli(["codegen", tmp_path / "f.rct", "-o", tmp_path / "p", "--data", "digits"]))
    assert "rct-mode" in line

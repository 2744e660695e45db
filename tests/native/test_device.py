"""The device project machinery (rctc.native.device): write, build, size, check, run.

Real integer programs (tests/native/device_fixtures/) are built and run under QEMU (Cortex-M4,
mps2-an386) and with the host's cc, and their digests compared with the same training computed
in int64 numpy here. The instruction counter is checked on a loop of known instruction count;
the fit check on programs too big for the stm32f746 budget; the float-helper check on a program
that uses float and one that does not. Tests that need the toolchain skip, saying what is
missing, when it is absent (.ci/run installs it).
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from rctc.native import device
from rctc.native.device import (
    BOARDS,
    FLOAT_HELPER_PATTERN,
    CArray,
    DeviceRunError,
    DoesNotFit,
    ModelConfig,
    ToolchainMissing,
    build,
    codegen_summary,
    run,
    toolchain_problem,
    write_project,
)

FIXTURES = Path(__file__).parent / "device_fixtures"
IN, OUT, SAMPLES = 8, 4, 16
STATE_BYTES = OUT * IN * 2 + OUT * 4
ARENA_BYTES = 2 * OUT * 4
M32 = 0xFFFFFFFF

_ARM = toolchain_problem("cortex-m4", "mps2-an386", run=True)
_HOST = toolchain_problem("host", run=True)
needs_arm = pytest.mark.skipif(_ARM is not None, reason=f"cortex-m4 toolchain: {_ARM}")
needs_host = pytest.mark.skipif(_HOST is not None, reason=f"host toolchain: {_HOST}")


# ---- the numpy reference of tests/native/device_fixtures/linear_sgd.c (int64 throughout) ----


def _mix(seed: int, step: int, j: np.ndarray) -> np.ndarray:
    h = (np.uint64(seed) ^ np.uint64((step * 0x9E3779B1) & M32) ^ ((j.astype(np.uint64) * 0x85EBCA77) & M32)) & M32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & M32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & M32
    h ^= h >> np.uint64(16)
    return h.astype(np.int64)


def sgd_reference(data: dict[str, np.ndarray], first: int, n: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """W, b after steps first .. first+n-1, and how often each clip fired (so the test is not vacuous)."""
    w = data["sgd_w0"].astype(np.int64).reshape(OUT, IN)
    b = data["sgd_b0"].astype(np.int64)
    x_all = data["sgd_x"].astype(np.int64).reshape(SAMPLES, IN)
    y_all = data["sgd_y"].astype(np.int64).reshape(SAMPLES, OUT)
    seed = int(data["sgd_seed"][0])
    clips = {"err": 0, "w": 0}
    for step in range(first, first + n):
        x, y = x_all[step % SAMPLES], y_all[step % SAMPLES]
        acc = w @ x + b
        raw = (acc >> 4) - y  # numpy's >> on signed ints is floor, like the fixture's asr
        err = np.clip(raw, -127, 127)
        clips["err"] += int(np.count_nonzero(raw != err))
        r = _mix(seed, step, np.arange(OUT * IN)).reshape(OUT, IN)
        new_w = w - ((err[:, None] * x[None, :] + (r & 63)) >> 6)
        w = np.clip(new_w, -2048, 2047)
        clips["w"] += int(np.count_nonzero(new_w != w))
        rb = _mix(seed, step, OUT * IN + np.arange(OUT))
        b = b - ((err + (rb & 3)) >> 2)
        assert np.all(np.abs(b) < 2**31)
    return w, b, clips


def sgd_digest(w: np.ndarray, b: np.ndarray) -> int:
    return zlib.crc32(w.astype("<i2").tobytes() + b.astype("<i4").tobytes())


def sgd_data(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "sgd_w0": rng.integers(-2000, 2000, OUT * IN).astype(np.int16),
        "sgd_b0": rng.integers(-3000, 3000, OUT).astype(np.int32),
        "sgd_x": rng.integers(-128, 128, SAMPLES * IN).astype(np.int8),
        "sgd_y": rng.integers(-2000, 2000, SAMPLES * OUT).astype(np.int16),
        "sgd_seed": np.array([rng.integers(0, 2**32)], dtype=np.uint32),
    }


def sgd_project(
    out: Path, *, target: str = "cortex-m4", board: str = "mps2-an386", steps: int = 60, first: int = 0,
    defines: str = "", arena_bytes: int = ARENA_BYTES, extra: tuple[CArray, ...] = (),
) -> tuple[device.Project, dict[str, np.ndarray]]:  # fmt: skip
    data = sgd_data()
    src = defines + (FIXTURES / "linear_sgd.c").read_text()
    arrays = [CArray(k, v) for k, v in data.items()] + list(extra)
    cfg = ModelConfig("linear_sgd", arena_bytes, STATE_BYTES, steps, first)
    return write_project(out, {"linear_sgd.c": src}, arrays, cfg, target=target, board=board), data


# ---- building and running the integer program ----


@needs_arm
def test_cortex_m4_under_qemu_prints_the_digest_numpy_predicts(tmp_path: Path) -> None:
    project, data = sgd_project(tmp_path / "p", steps=60)
    image = build(project, make_args=["WERROR=-Werror -pedantic"])  # no warnings, even pedantic C99
    w, b, clips = sgd_reference(data, 0, 60)
    assert clips["err"] > 0 and clips["w"] > 0, "the data must exercise both clips"
    result = run(project)
    assert result.digest_init == sgd_digest(data["sgd_w0"], data["sgd_b0"])
    assert result.digest == sgd_digest(w, b)
    assert (result.first_step, result.steps) == (0, 60)
    # sizes from the linked image: the objects the model API names, and size's columns
    assert image.arena_bytes == ARENA_BYTES and image.state_bytes == STATE_BYTES
    assert image.flash_bytes == image.text_bytes + image.data_bytes
    assert image.ram_bytes == image.data_bytes + image.bss_bytes
    assert image.ram_bytes >= ARENA_BYTES + STATE_BYTES + 8192  # stack reservation is counted
    assert image.float_helpers == ()
    assert result.instructions is not None and result.instructions > 60 * OUT * IN * 5
    summary = codegen_summary(image, ARENA_BYTES, result)
    assert summary["digest"] == f"{sgd_digest(w, b):08x}" and summary["arena_matches_plan"] is True
    assert summary["instructions_per_step"] == result.instructions / 60
    assert codegen_summary(image, ARENA_BYTES + 8)["arena_matches_plan"] is False


@needs_host
def test_host_target_prints_the_same_digest_without_qemu(tmp_path: Path) -> None:
    project, data = sgd_project(tmp_path / "p", target="host", steps=45, first=7)
    build(project, make_args=["WERROR=-Werror -pedantic"])
    result = run(project)
    w, b, _ = sgd_reference(data, 7, 45)
    assert result.digest == sgd_digest(w, b)
    assert (result.first_step, result.steps) == (7, 45)
    assert result.instructions is None  # the host has no instruction counter and claims none


# ---- the instruction counter ----


def _loop_instructions(tmp: Path, steps: int, iterations: int) -> int:
    cfg = ModelConfig("loop", 8, 4, steps, extra_defines={"LOOP_ITERATIONS": iterations})
    src = (FIXTURES / "loop_count.c").read_text()
    project = write_project(tmp / f"loop{steps}x{iterations}", {"loop_count.c": src}, [], cfg)  # no data arrays
    build(project, make_args=["WERROR=-Werror -pedantic"])
    result = run(project)
    assert result.digest == steps * iterations  # the loop ran that often
    assert result.instructions is not None
    return result.instructions


@needs_arm
def test_instruction_counter_counts_a_loop_of_known_length(tmp_path: Path) -> None:
    k, many = 1000, 6000
    one, long = _loop_instructions(tmp_path, 1, k), _loop_instructions(tmp_path, many, k)
    # subs + bne per iteration: 2 instructions; the call and the counter reads add a constant
    assert 0 < one - 2 * k < 64
    # 12M instructions run past SysTick's 24-bit range (16.7M ticks = 10.5M instructions):
    # the wrap is counted, and only its handler's few instructions come on top
    assert 0 <= (long - one) - 2 * k * (many - 1) <= 32


# ---- the fit check against the stm32f746 budget ----


@needs_arm
def test_fit_check_refuses_a_program_too_big_for_stm32f746_ram(tmp_path: Path) -> None:
    project, _ = sgd_project(tmp_path / "f", board="stm32f746", arena_bytes=400_000, steps=3)
    with pytest.raises(DoesNotFit) as err:
        build(project)
    msg = str(err.value)
    assert "\n" not in msg
    m = re.search(r"RAM overflowed by (\d+) bytes \((\d+) needed, 327680 on the board\)", msg)
    assert m, msg
    assert "largest there: rctc_arena 400000 B" in msg
    # the same program on the 4 MB board links, and needs what the budget was short of
    big, data = sgd_project(tmp_path / "m", board="mps2-an386", arena_bytes=400_000, steps=3)
    image = build(big)
    assert abs(image.ram_bytes - int(m.group(2))) <= 16
    assert int(m.group(1)) == int(m.group(2)) - 327680
    assert run(big).digest == sgd_digest(*sgd_reference(data, 0, 3)[:2])


@needs_arm
def test_fit_check_refuses_a_program_too_big_for_stm32f746_flash(tmp_path: Path) -> None:
    table = CArray("big_table", np.zeros(135_000, np.int64))  # 1.08 MB of constants
    project, _ = sgd_project(tmp_path / "f", board="stm32f746", defines="#define SGD_BIG_TABLE 1\n", extra=(table,))
    with pytest.raises(DoesNotFit) as err:
        build(project)
    msg = str(err.value)
    assert "\n" not in msg and "RAM" not in msg
    assert re.search(r"FLASH overflowed by \d+ bytes \(\d+ needed, 1048576 on the board\)", msg), msg
    assert "largest there: big_table 1080000 B" in msg


# ---- the float-helper check ----


@needs_arm
def test_float_helper_check_flags_a_program_that_uses_float(tmp_path: Path) -> None:
    project, data = sgd_project(tmp_path / "p", defines="#define SGD_FLOAT_LR 1\n", steps=20)
    image = build(project)
    assert {"__aeabi_fmul", "__aeabi_i2f", "__aeabi_f2iz"} <= set(image.float_helpers)
    assert run(project).digest == sgd_digest(*sgd_reference(data, 0, 20)[:2])  # lr = 1.0: same integers


def test_float_helper_pattern_names_float_helpers_and_only_them() -> None:
    floats = ["__aeabi_fadd", "__aeabi_dmul", "__aeabi_i2f", "__aeabi_ui2d", "__aeabi_l2f", "__aeabi_ul2d",
              "__aeabi_f2iz", "__aeabi_d2ulz", "__aeabi_cfcmpeq", "__aeabi_cdrcmple", "__aeabi_h2f", "__aeabi_f2h",
              "__addsf3", "__muldf3", "__floatsisf", "__floatunsidf", "__fixsfsi", "__fixunsdfdi", "__extendsfdf2",
              "__truncdfsf2", "__eqsf2", "__unorddf2", "__powisf2", "__gnu_f2h_ieee"]  # fmt: skip
    integers = ["__aeabi_idiv", "__aeabi_uidiv", "__aeabi_idivmod", "__aeabi_ldivmod", "__aeabi_uldivmod",
                "__aeabi_lmul", "__aeabi_llsl", "__aeabi_llsr", "__aeabi_lasr", "__aeabi_lcmp", "__aeabi_ulcmp",
                "__aeabi_memcpy4", "__aeabi_memset", "__aeabi_memclr8", "__aeabi_uread4", "__divsi3", "__udivdi3",
                "__clzsi2", "main", "rctc_model_digest"]  # fmt: skip
    assert [n for n in floats if not FLOAT_HELPER_PATTERN.match(n)] == []
    assert [n for n in integers if FLOAT_HELPER_PATTERN.match(n)] == []
    nm = "00000100 T __aeabi_fmul\n00000200 T main\n         U __aeabi_dadd\n00000300 t __floatsisf\n"
    assert device.float_helpers(nm) == ("__aeabi_fmul", "__floatsisf")  # defined ones only


# ---- failures are one line ----


@needs_arm
def test_a_fault_on_the_device_is_one_line_with_its_status(tmp_path: Path) -> None:
    project, _ = sgd_project(tmp_path / "p", defines="#define SGD_FAULT 1\n", steps=2)
    build(project)
    with pytest.raises(DeviceRunError) as err:
        run(project, timeout=60)
    msg = str(err.value)
    assert "\n" not in msg and "exit status 70" in msg and "rctc fault" in msg


@needs_host
def test_a_run_that_does_not_finish_is_stopped_and_reported(tmp_path: Path) -> None:
    spin = "\n".join(
        [
            "#include <stdint.h>",
            '#include "rctc_model.h"',
            "uint8_t rctc_arena[8];",
            "volatile uint32_t rctc_state[1];",
            "void rctc_model_init(void) { rctc_state[0] = 0u; }",
            "void rctc_model_train_steps(uint32_t f, uint32_t n) { (void)f; (void)n; for (;;) { rctc_state[0]++; } }",
            "uint32_t rctc_model_digest(void) { return rctc_state[0]; }",
            "",
        ]
    )
    project = write_project(tmp_path / "spin", {"spin.c": spin}, [], ModelConfig("spin", 8, 4, 1), target="host")
    build(project)
    with pytest.raises(DeviceRunError, match=r"^spin did not finish within 2 s on host") as err:
        run(project, timeout=1.5)
    assert "\n" not in str(err.value)
    image = str(project.image.resolve())
    left = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if image.encode() in cmdline.read_bytes():
                left.append(cmdline.parent.name)
        except OSError:
            continue
    assert left == [], "the timed-out program must be killed"


def test_harness_output_without_a_digest_or_an_end_is_refused() -> None:
    good = "rctc model m arena_bytes 8 state_bytes 4\ndigest_init 0000002a\nsteps 3 5\ndigest deadbeef\nrctc done\n"
    parsed = device.parse_output(good)
    assert (parsed.digest, parsed.digest_init, parsed.first_step, parsed.steps) == (0xDEADBEEF, 42, 3, 5)
    assert parsed.instructions is None and parsed.instructions_per_step is None
    assert device.parse_output(good.replace("rctc done", "instructions 500\nrctc done")).instructions_per_step == 100
    for broken in (good.replace("digest deadbeef\n", ""), good.replace("rctc done\n", ""), "digest 12\nrctc done\n"):
        with pytest.raises(ValueError):
            device.parse_output(broken)


def test_without_the_toolchain_the_project_is_written_and_the_reason_says_how_to_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    project, _ = sgd_project(tmp_path / "p")
    for rel in ("Makefile", "project.mk", "main.c", "rctc_model.h", "startup_cortex_m.c", "boards/mps2-an386.ld",
                "boards/stm32f746.ld", "boards/sections.ld", "src/linear_sgd.c", "src/rctc_data.c",
                "src/rctc_model_config.h"):  # fmt: skip
        assert (project.directory / rel).is_file(), rel
    with pytest.raises(ToolchainMissing) as err:
        build(project)
    msg = str(err.value)
    assert "\n" not in msg and str(project.directory) in msg and "`make`" in msg
    assert "make is not installed" in msg
    assert toolchain_problem("cortex-m4") is not None


# ---- what is written ----


def test_board_table_matches_the_linker_scripts() -> None:
    boards_dir = Path(device.__file__).parent / "boards"
    sizes = {"K": 1024, "M": 1024 * 1024, "": 1}
    for name, board in BOARDS.items():
        text = (boards_dir / f"{name}.ld").read_text()
        regions = {
            m[0]: (int(m[1], 16), int(m[2]) * sizes[m[3]])
            for m in re.findall(r"(FLASH|RAM)\s*\(\w+\)\s*:\s*ORIGIN = (0x[0-9A-Fa-f]+), LENGTH = (\d+)([KM]?)", text)
        }
        assert regions == {
            "FLASH": (board.flash_origin, board.flash_bytes),
            "RAM": (board.ram_origin, board.ram_bytes),
        }, name
        assert (boards_dir / f"{name}.mk").is_file()


@needs_host
def test_c_arrays_keep_every_value_of_every_dtype(tmp_path: Path) -> None:
    """Extremes of each integer dtype and exact float32 values survive the C literals (host build)."""
    arrays = []
    for dt in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
        info = np.iinfo(dt)
        arrays.append(CArray(f"a_{np.dtype(dt).name}", np.array([info.min, info.max, 0, 1, info.min + 1], dtype=dt)))
    arrays.append(CArray("a_float32", np.array([0.1, -3.5e-38, 1e38, 0.0, 2.0**-149], dtype=np.float32)))
    names = [a.name for a in arrays]
    crc_h = "#include <stdint.h>\nvoid crc_add(uint32_t *crc, const void *p, uint32_t n);\n"
    crc_c = "\n".join(
        [
            '#include "crc_add.h"',
            "void crc_add(uint32_t *crc, const void *p, uint32_t n) {",
            "    const uint8_t *b = (const uint8_t *)p; uint32_t i; int k;",
            "    for (i = 0; i < n; i++) { *crc ^= b[i];",
            "        for (k = 0; k < 8; k++) *crc = (*crc >> 1) ^ (0xEDB88320u & (0u - (*crc & 1u))); } }",
            "",
        ]
    )
    model = "\n".join(
        [
            "#include <stdint.h>",
            '#include "crc_add.h"',  # from src/support/: the project adds -I for header folders
            '#include "rctc_data.h"',
            '#include "rctc_model.h"',
            "uint8_t rctc_arena[8];",
            "uint8_t rctc_state[4];",
            "static uint32_t crc = 0xFFFFFFFFu;",
            "void rctc_model_init(void) {",
            *[f"    crc_add(&crc, {n}, (uint32_t)sizeof {n});" for n in names],
            "}",
            "void rctc_model_train_steps(uint32_t first_step, uint32_t n) { (void)first_step; (void)n; }",
            "uint32_t rctc_model_digest(void) { return crc ^ 0xFFFFFFFFu; }",
            "",
        ]
    )
    sources = {"data_crc.c": model, "support/crc_add.h": crc_h, "support/crc_add.c": crc_c}
    project = write_project(tmp_path / "d", sources, arrays, ModelConfig("data", 8, 4, 0), target="host")
    build(project, make_args=["WERROR=-Werror -pedantic"])
    expected = zlib.crc32(b"".join(a.array.astype(a.array.dtype.newbyteorder("<")).tobytes() for a in arrays))
    assert run(project).digest == expected

"""The Arm DSP GEMMs (native/csrc/kernels/arm/gemm_dsp.c: SMLAD / SMLALD dot products) give the
portable kernels' bits.

A fixture program (device_fixtures/gemm_dispatch.c) runs the dispatched GEMMs, which on a
Cortex-M4 are the DSP variants, on operands at the dtype extremes for K from 0 to 577 (s32 sums
that wrap modulo 2^32 included; K = 577 spans three of the packed-column blocks), in the
dot-product layout, a row-major B layout (a column of B packed per block) and with a transposed
A (rows of A and blocks of four B columns packed; N = 5 leaves a partial block), fresh and
accumulating; its digest must equal the CRC-32 of the same products in
int64 numpy, under QEMU and on the host (portable / AVX2) alike.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from rctc.native.codegen.model import library_sources
from rctc.native.device import CArray, ModelConfig, build, run, toolchain_problem, write_project

FIXTURE = Path(__file__).parent / "device_fixtures" / "gemm_dispatch.c"
SHAPES = [(1, 1, 1), (2, 3, 3), (3, 2, 4), (4, 5, 5), (2, 2, 8), (3, 3, 63), (2, 4, 64), (1, 3, 577), (4, 5, 0),
          (2, 5, 577), (4, 3, 300)]
MAX_K, MAX_M, MAX_N = 577, 4, 5
_ARM = toolchain_problem("cortex-m4", "mps2-an386", run=True)
_HOST = toolchain_problem("host", run=True)


def _operands() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(17)
    a8 = rng.integers(-128, 128, MAX_M * MAX_K).astype(np.int8)
    a16 = rng.integers(-32768, 32768, MAX_M * MAX_K).astype(np.int16)
    b8 = rng.integers(-128, 128, MAX_N * MAX_K).astype(np.int8)
    a8[::3], a16[::3], b8[::2] = -128, -32768, -128  # the extremes, whose products are the largest
    a16[1::5] = 32767
    return {"ga8": a8, "ga16": a16, "gb8": b8}


def _expected(ops: dict[str, np.ndarray]) -> int:
    crc = 0
    for m, n, k in SHAPES:
        a8 = ops["ga8"][: m * k].astype(np.int64).reshape(m, k)
        a16 = ops["ga16"][: m * k].astype(np.int64).reshape(m, k)
        dot = ops["gb8"][: n * k].astype(np.int64).reshape(n, k).T  # B(k, n) = gb8[n K + k]
        rows = ops["gb8"][: k * n].astype(np.int64).reshape(k, n)  # B(k, n) = gb8[k N + n]
        preset = np.arange(m * n, dtype=np.int64).reshape(m, n) * 7 - 3
        a8t = ops["ga8"][: m * k].astype(np.int64).reshape(k, m).T  # A(m, k) = ga[k M + m]
        a16t = ops["ga16"][: m * k].astype(np.int64).reshape(k, m).T
        for c, wide in ((a8 @ dot, False), (a8 @ dot, True), (a16 @ dot, False), (a16 @ dot, True),
                        (preset + a8 @ rows, False), (preset + a16 @ rows, True), (preset + a16 @ dot, False),
                        (a8 @ rows, True), (a16 @ rows, False), (a16t @ rows, False), (a8t @ dot, True)):
            out = c.astype("<i8") if wide else (c & 0xFFFFFFFF).astype(np.uint32).view("<i4")
            crc = zlib.crc32(np.ascontiguousarray(out).tobytes(), crc)
    return crc


def _project(out: Path, target: str):
    ops = _operands()
    lib, host_x86 = library_sources()
    cfg = ModelConfig("gemm_dispatch", 8 * MAX_M * MAX_N, 8 * MAX_M * MAX_N, 1)
    sources = {"gemm_dispatch.c": FIXTURE.read_text(), **lib}
    return write_project(out, sources, [CArray(k, v) for k, v in ops.items()], cfg, target=target,
                         host_x86=host_x86), _expected(ops)


@pytest.mark.skipif(_ARM is not None, reason=f"cortex-m4 toolchain: {_ARM}")
def test_dsp_gemms_under_qemu_equal_int64_numpy(tmp_path: Path) -> None:
    project, want = _project(tmp_path / "m4", "cortex-m4")
    image = build(project, make_args=["WERROR=-Werror"])
    assert image.float_helpers == ()
    nm = (project.build_dir / "model.map").read_text()
    assert "rctc_gemm_s8s8s64_dsp" in nm and "rctc_gemm_s16s8s32_dsp" in nm  # the DSP variants are linked
    assert run(project).digest == want


@pytest.mark.skipif(_HOST is not None, reason=f"host toolchain: {_HOST}")
def test_host_gemms_equal_int64_numpy(tmp_path: Path) -> None:
    project, want = _project(tmp_path / "host", "host")
    build(project, make_args=["WERROR=-Werror"])
    assert run(project).digest == want

"""Device figures of `rctc codegen --target cortex-m4`: flash, RAM, arena, state, scratch and QEMU
instructions per training step, with the Arm DSP GEMMs (the default build) and without them
(`make EXTRA_CFLAGS=-DRCTC_PORTABLE_GEMM`), and the stm32f746 fit check's line.

    python benchmarks/device_instructions.py [--steps N] [--out DIR]

LeNet on `digits`, ResNet-8 on CIFAR-shaped random data (rct, batch 1, seed 5; codegen seed 11), and
ResNet-8 with 8-bit parameter storage (`rctc compile --max-bits 8`, which fits the stm32f746), also
with the smallest scratch bands (`rctc codegen --band-bytes 4096`).
Instructions are what QEMU's `-icount` counts on the emulated Cortex-M4 (not time); KB = 1000 B. Needs
arm-none-eabi-gcc, newlib and qemu-system-arm (docs/device.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: (row label, model, data, compile options, codegen options)
MODELS = (("lenet", "lenet", "digits", (), ()), ("resnet8", "resnet8", "cifar.npz", (), ()),
          ("resnet8 --max-bits 8", "resnet8", "cifar.npz", ("--max-bits", 8), ()),
          ("resnet8 --max-bits 8 --band-bytes 4096", "resnet8", "cifar.npz", ("--max-bits", 8),
           ("--band-bytes", 4096)))


def _rctc(*args: object) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    exe = str(Path(sys.executable).with_name("rctc"))
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT)


def _portable_instructions(project: Path, steps: int) -> float:
    subprocess.run(["make", "-s", "clean"], cwd=project, check=True, capture_output=True)
    out = subprocess.run(["make", "-s", "EXTRA_CFLAGS=-DRCTC_PORTABLE_GEMM", "run"], cwd=project, check=True,
                         capture_output=True, text=True).stdout
    return int(re.search(r"^instructions (\d+)", out, re.M).group(1)) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    work = a.out or Path(tempfile.mkdtemp(prefix="rctc-device-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    np.savez(work / "cifar.npz", x=rng.standard_normal((4, 3, 32, 32)).astype(np.float32), y=rng.integers(0, 10, 4))
    print("| model | flash | RAM | arena = plan | state | scratch | instr/step DSP | instr/step portable | stm32f746 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, (label, name, data, copts, gopts) in enumerate(MODELS):
        rct = work / f"{name}-{i}.rct"
        r = _rctc("compile", ROOT / "models" / f"{name}.onnx", "-o", rct, "--batch-size", 1, "--seed", 5, *copts)
        assert r.returncode == 0, r.stderr
        d = data if data == "digits" else work / data
        name = f"{name}-{i}"
        r = _rctc("codegen", rct, "-o", work / f"{name}-m4", "--data", d, "--steps", a.steps, "--seed", 11, "--run",
                  "--json", *gopts)
        assert r.returncode == 0, r.stderr
        res = json.loads(r.stdout)
        portable = _portable_instructions(work / f"{name}-m4", a.steps)
        fit = _rctc("codegen", rct, "-o", work / f"{name}-stm32", "--board", "stm32f746", "--data", d, "--steps",
                    a.steps, *gopts)
        m = re.search(r"RAM overflowed by (\d+) bytes", fit.stderr)
        verdict = "fits" if fit.returncode == 0 else (f"RAM over by {m.group(1)} B" if m else fit.stderr.strip())
        kb = lambda n: f"{n / 1000:.1f} KB"  # noqa: E731
        print(f"| {label} | {kb(res['flash_bytes'])} | {kb(res['ram_bytes'])} | {kb(res['arena_bytes'])} = "
              f"{kb(res['plan_peak_bytes'])} | {kb(res['state_bytes'])} | {kb(res['scratch_bytes'])} | "
              f"{res['instructions_per_step'] / 1e6:.2f} M | {portable / 1e6:.2f} M | {verdict} |")
        print(f"<!-- {label}: digest {res['digest']}, {a.steps} steps; stm32f746: {fit.stderr.strip()} -->")


if __name__ == "__main__":
    main()

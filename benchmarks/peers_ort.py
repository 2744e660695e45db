"""ONNX Runtime training peer: times on-device training of the rctc models.

The main interpreter (new onnx, rctc) builds the model with
``rctc.models.build``, saves it readable by onnx 1.16 (ir_version <= 9,
opset 17) in a temporary folder, and runs ``ort_worker.py`` inside a dedicated
venv (``$RCTC_ORT_VENV``, else ``benchmarks/.venv-ort``: onnxruntime-training
1.19.2, onnx 1.16.2, numpy < 2, threadpoolctl), made once by the setup step
below. Without the venv the peer prints ``{"unavailable": ...}`` naming that
step, and the benchmark leaves the column out with that message.

Usage (prints one JSON line)::

    python benchmarks/peers_ort.py --setup [--venv /work/ort-venv]   # once: make the venv
    python benchmarks/peers_ort.py --peer ort --model mlp --batch 32
    python benchmarks/peers_ort.py --peer ort --model custom --onnx some.onnx
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

DEFAULT_VENV = _common.HERE / ".venv-ort"
VENV_ENV = "RCTC_ORT_VENV"  # the venv's folder, when not DEFAULT_VENV
VENV_REQS = ("onnxruntime-training==1.19.2", "onnx==1.16.2", "numpy<2", "threadpoolctl")
WORKER = _common.HERE / "ort_worker.py"
TARGET_OPSET = 17
MAX_IR_VERSION = 9


def venv_dir() -> Path:
    """The ORT venv: ``$RCTC_ORT_VENV``, else ``benchmarks/.venv-ort``."""
    return Path(os.environ.get(VENV_ENV) or DEFAULT_VENV)


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def setup_command(venv: Path) -> str:
    """The documented setup step that makes the venv (what :func:`setup_venv` runs)."""
    return f"python benchmarks/peers_ort.py --setup --venv {venv}"


def _probe(venv: Path) -> str | None:
    """None if the venv imports onnxruntime-training; else the failure text."""
    code = ("import onnx, numpy, onnxruntime; from onnxruntime.capi import _pybind_state as s; "
            "assert hasattr(s, 'CheckpointState'), 'not a training build'; "
            "print(onnxruntime.__version__)")
    try:
        proc = subprocess.run([str(venv_python(venv)), "-c", code], capture_output=True, text=True, timeout=300,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["probe failed"])[-1]
    return None


def check_venv(venv: Path | None = None) -> str | None:
    """None when the ORT venv is usable; else one line saying why and the setup step to run."""
    venv = venv_dir() if venv is None else venv
    if not venv_python(venv).exists():
        return f"no ONNX Runtime training venv at {venv}; make it with: {setup_command(venv)}"
    why = _probe(venv)
    if why is not None:
        return f"ONNX Runtime training venv {venv} unusable ({why}); remake it with: {setup_command(venv)}"
    return None


def setup_venv(venv: Path, log: Any = sys.stderr) -> str | None:
    """Make the venv (``python -m venv`` + pip install of :data:`VENV_REQS`). None on success, else why not."""
    print(f"peers_ort: creating {venv} ({', '.join(VENV_REQS)}) ...", file=log)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *VENV_REQS]]
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"cannot create the ORT venv: {exc}"
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
            return f"cannot create the ORT venv ({cmd[-1]}): {tail}"
    return check_venv(venv)


def expose_layernorm_stats(model: Any) -> int:
    """Give every LayerNormalization its optional Mean / InvStdDev outputs.

    ORT 1.19's LayerNormalization gradient reads outputs 1 and 2 and fails
    (``i < node_->OutputDefs().size()``) on the single-output form. Adding the
    optional outputs does not change Y. Returns how many nodes were changed.
    """
    changed = 0
    for i, node in enumerate(model.graph.node):
        if node.op_type == "LayerNormalization" and len(node.output) == 1:
            base = node.name or f"{node.output[0]}_{i}"
            node.output.extend([f"{base}__ort_mean", f"{base}__ort_inv_std_dev"])
            changed += 1
    return changed


def save_for_ort(model: Any, path: Path) -> list[str]:
    """Save ``model`` (onnx.ModelProto, modified in place) so onnx 1.16 / ORT 1.19
    can read and train it. Returns notes on what was adapted."""
    import onnx
    from onnx import version_converter

    notes = []

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is not None and opset != TARGET_OPSET:
        try:
            model = version_converter.convert_version(model, TARGET_OPSET)
        except Exception:
            if opset > TARGET_OPSET:
                raise
        notes.append(f"opset {opset} -> {TARGET_OPSET}")
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    if expose_layernorm_stats(model):
        notes.append("LayerNormalization given its optional Mean/InvStdDev outputs (ORT grad needs them)")
    onnx.save(model, str(path))
    return notes


def describe_input(model: Any) -> tuple[list[int], str, int, int]:
    """(shape without batch, numpy dtype, num_classes, int_high) from the graph itself."""
    import onnx

    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    tt = inp.type.tensor_type
    shape = [d.dim_value for d in tt.shape.dim][1:]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
    classes = model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    int_high = 64
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    for node in model.graph.node:  # token ids index an embedding table: stay inside it
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == inp.name:
            int_high = shapes.get(node.input[0], [int_high])[0]
    return shape, dtype, int(classes), int(int_high)


def time_ort(name: str, batch: int = 32, warmup: int = 5, min_steps: int = 20,
             min_seconds: float = 2.0, max_steps: int = 2000, seed: int = 0,
             onnx_path: str | None = None) -> dict[str, Any]:
    """Time ONNX Runtime training of model ``name`` (or the file ``onnx_path``).

    The worker runs in the ORT venv, so the returned ``peak_rss_bytes`` is the
    worker's own. Never raises for an ORT failure: returns ``{"error": ...}``.
    """
    import onnx

    venv = venv_dir()
    if not venv_python(venv).exists():
        return {"unavailable": f"no ONNX Runtime training venv at {venv}; make it with: {setup_command(venv)}"}
    if onnx_path is not None:
        model = onnx.load(onnx_path)
    else:
        from rctc import models

        model = models.build(name, seed=seed)
    shape, dtype, classes, int_high = describe_input(model)
    timing = {"warmup": warmup, "min_steps": min_steps, "min_seconds": min_seconds, "max_steps": max_steps}
    with tempfile.TemporaryDirectory(prefix="rctc_ort_") as tmp:
        path = Path(tmp) / f"{name}.onnx"
        try:
            notes = save_for_ort(model, path)
        except Exception as exc:  # noqa: BLE001
            return {"error": f"cannot save {name} for onnx 1.16 / opset {TARGET_OPSET}: {exc}"}
        cmd = [str(venv_python(venv)), str(WORKER), "--peer", "ort", "--model", name, "--batch", str(batch),
               "--seed", str(seed), "--onnx", str(path), "--shape", ",".join(map(str, shape)),
               "--dtype", dtype, "--num-classes", str(classes), "--int-high", str(int_high)]
        for key, value in timing.items():
            cmd += ["--" + key.replace("_", "-"), str(value)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=_common.thread_env(),
                                  timeout=1800, check=False)
        except subprocess.TimeoutExpired:
            return {"error": "ORT worker timed out"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    try:
        res = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"ORT worker exit {proc.returncode}: {tail}"}
    if not isinstance(res, dict):
        return {"error": "ORT worker printed no JSON object"}
    if notes and "note" in res:
        res["note"] += "; " + "; ".join(notes)
    return res


def setup_main(argv: list[str]) -> int:
    """``--setup [--venv PATH]``: make the ORT venv; exit 2 with one line when that fails."""
    import argparse

    ap = argparse.ArgumentParser(description="make the ONNX Runtime training venv")
    ap.add_argument("--setup", action="store_true", required=True)
    ap.add_argument("--venv", type=Path, default=venv_dir())
    args = ap.parse_args(argv)
    why = setup_venv(args.venv)
    if why is not None:
        print(f"error: {why}", file=sys.stderr)
        return 2
    print(f"ONNX Runtime training venv ready: {args.venv} (run the benchmark with {VENV_ENV}={args.venv} "
          f"or --ort-venv {args.venv} unless it is {DEFAULT_VENV})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--setup" in argv:
        return setup_main(argv)
    ap = _common.peer_parser(peers=("ort",))
    ap.add_argument("--onnx", default=None, help="time this ONNX file instead of rctc.models.build")
    args = ap.parse_args(argv)
    try:
        res = time_ort(args.model, batch=args.batch, seed=args.seed, onnx_path=args.onnx,
                       **_common.timing_kwargs(args))
    except Exception as exc:  # noqa: BLE001 - the parent must always get JSON
        res = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

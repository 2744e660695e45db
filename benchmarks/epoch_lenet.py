"""A whole training epoch of LeNet-5 on real image data: rctc rct (native, numpy) beside PyTorch (issue 16).

Issue 16's last target: "A whole epoch of LeNet-5 on real image data (e.g. MNIST-sized) takes no
longer than PyTorch fp32's". No MNIST file ships offline here; the real image data is the bundled
8x8 handwritten digits (UCI, via scikit-learn's copy: ``--data digits``, train split, 1438
images), the bundled LeNet at batch 32 (45 steps an epoch, the last one padded). Each peer runs in
its own process with 2 threads, OpenBLAS overrides unset: it builds the model (rctc: compile and,
for native, the C step, which the cache then holds), trains one warm-up epoch, then ``--epochs``
timed epochs with a fresh shuffle each; the figure is the median epoch wall time, data shuffling
and batching included (what a user waits for). SGD at the demo's learning rate for every peer; the
test accuracy after the epochs is printed beside each time as a check that each peer really trains.

    python benchmarks/epoch_lenet.py -o benchmarks/EPOCH_LENET.md
"""

from __future__ import annotations

import _common  # noqa: I001 - re-exec before numpy loads

_common.reexec_without_openblas_overrides()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

PEERS = ("rctc_native", "rctc_numpy", "torch_fp32", "torch_qat")
BATCH = 32
LR = 0.2  # the digits recipe of `rctc demo` (rctc.cli.demo.DIGITS_RECIPE), for every peer


def _digits() -> tuple[Any, Any]:
    from rctc.data import load_data

    d = load_data("digits:train")
    return d.x, d.y


def _epoch_rctc(backend: str, epochs: int) -> dict[str, Any]:
    import rctc
    from rctc.models import path

    x, y = _digits()
    m = rctc.compile(str(path("lenet")), mode="rct", batch_size=BATCH, lr=LR, seed=0)
    note = m.use_backend(backend, threads=_common.NUM_THREADS)
    if m.backend != backend:
        return {"error": f"backend {backend} unavailable: {note}"}
    m.train(x, y, epochs=1, seed=0)  # warm-up epoch (builds or loads the C step)
    times = []
    for e in range(epochs):
        t0 = time.perf_counter()
        m.train(x, y, epochs=1, seed=1 + e)
        times.append(time.perf_counter() - t0)
    from rctc.data import load_data

    test = load_data("digits:test")
    acc = float(m.evaluate(test.x, test.y)["accuracy"])
    return {"epoch_seconds": times, "steps_per_epoch": -(-len(y) // BATCH), "test_accuracy": acc,
            "note": f"rctc rct, {backend} backend", "kernels": _common.kernel_info()}


def _epoch_torch(qat: bool, epochs: int) -> dict[str, Any]:
    import numpy as np
    import torch
    from peers_torch import build_twin, prepare_qat

    torch.set_num_threads(_common.NUM_THREADS)
    torch.manual_seed(0)
    x_np, y_np = _digits()
    x = torch.from_numpy(np.ascontiguousarray(x_np.reshape(-1, 1, 8, 8), dtype=np.float32))
    y = torch.from_numpy(y_np.astype(np.int64))
    model = build_twin("lenet")
    note = "plain PyTorch FP32"
    if qat:
        model, note = prepare_qat(model, "lenet")
    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def epoch(seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), BATCH):
            idx = order[i:i + BATCH]
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad()

    epoch(0)
    times = []
    for e in range(epochs):
        t0 = time.perf_counter()
        epoch(1 + e)
        times.append(time.perf_counter() - t0)
    from rctc.data import load_data

    test = load_data("digits:test")
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(test.x.reshape(-1, 1, 8, 8).astype(np.float32))).argmax(1).numpy()
    return {"epoch_seconds": times, "note": note, "torch": torch.__version__, "kernels": _common.kernel_info(),
            "test_accuracy": float((pred == test.y).mean())}


def run_child(peer: str, epochs: int) -> dict[str, Any]:
    if peer.startswith("rctc_"):
        return _epoch_rctc(peer.split("_", 1)[1], epochs)
    return _epoch_torch(peer == "torch_qat", epochs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", choices=PEERS, help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("-o", "--output", type=Path, default=_common.HERE / "EPOCH_LENET.md")
    a = ap.parse_args(argv)
    if a.peer:
        try:
            res = run_child(a.peer, a.epochs)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            res = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({**res, "peak_rss_bytes": _common.peak_rss_bytes()}))
        return 0
    load0 = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    for peer in PEERS:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--peer", peer, "--epochs", str(a.epochs)]
        code, out, err, _ = _common.run_measured(cmd, _common.thread_env(), timeout=1800)
        try:
            results[peer] = json.loads([ln for ln in out.splitlines() if ln.strip()][-1])
        except (IndexError, json.JSONDecodeError):
            results[peer] = {"error": f"exit {code}: {(err.strip().splitlines() or ['no output'])[-1]}"}
        print(peer, results[peer].get("epoch_seconds", results[peer].get("error")), file=sys.stderr, flush=True)
    load1 = os.getloadavg()
    med = {p: statistics.median(r["epoch_seconds"]) for p, r in results.items() if "epoch_seconds" in r}
    ref = med.get("torch_fp32")
    lines = ["# One epoch of LeNet-5 on the bundled digits (train split, 1438 images, batch 32)", "",
             f"Command: `python benchmarks/epoch_lenet.py --epochs {a.epochs}`  ",
             f"Date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  ",
             f"2 threads per peer, OpenBLAS overrides unset, each peer in its own process; median of {a.epochs} "
             f"timed epochs after one warm-up epoch. Load (1/5/15 min) at the start {load0[0]:.2f} / {load0[1]:.2f} / "
             f"{load0[2]:.2f}, at the end {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}.", "",
             "| peer | epoch ms (median) | / PyTorch fp32 | peak RSS MiB | note |", "|---|---:|---:|---:|---|"]
    for p in PEERS:
        r = results[p]
        if p not in med:
            lines.append(f"| {p} | n/a | n/a | n/a | {r.get('error')} |")
            continue
        ratio = f"{med[p] / ref:.2f}" if ref else "n/a"
        acc = f"; test accuracy {100 * r['test_accuracy']:.2f}%" if "test_accuracy" in r else ""
        lines.append(f"| {p} | {1000 * med[p]:.1f} | {ratio} | {r['peak_rss_bytes'] / 2**20:.0f} | {r['note']}{acc} |")
    if ref and "rctc_native" in med:
        ok = med["rctc_native"] <= ref
        lines += ["", f"Target (an epoch no longer than PyTorch fp32's): **{'met' if ok else 'not met'}** "
                      f"({1000 * med['rctc_native']:.1f} ms vs {1000 * ref:.1f} ms)."]
    text = "\n".join(lines) + "\n"
    _common.write_atomic(a.output, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

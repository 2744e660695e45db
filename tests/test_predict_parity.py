"""`rctc compile --mode fp32` + `rctc predict` match onnxruntime on the same input.

Covers every model builder (rctc.models.BUILDERS), the ready files models/*.onnx, and ONNX
files written by PyTorch's two exporters (TorchScript-based ``dynamo=False`` and ``dynamo=True``
saved with external data). Inputs have 13 samples, not a multiple of the compiled batch (8),
so the padded last batch is exercised. Parity: max element-wise relative error <= 1e-4
(``conftest.max_rel_err``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from rctc import models

N_SAMPLES = 13
TOL = 1e-4


def _vocab(model: onnx.ModelProto) -> int:
    """Rows of the first Gather's table (the embedding), so token ids stay in range."""
    inits = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Gather" and n.input[0] in inits:
            return int(inits[n.input[0]].dims[0])
    raise AssertionError("no embedding table found")


def _inputs(name: str, model: onnx.ModelProto, seed: int = 0) -> np.ndarray:
    _, shape, dtype = models.input_spec(name)
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, _vocab(model), size=(N_SAMPLES, *shape)).astype(dtype)
    return rng.standard_normal((N_SAMPLES, *shape)).astype(dtype)


def _ort(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))


def _predict(cli: Callable, rct: Path, x: np.ndarray, tmp: Path) -> dict[str, np.ndarray]:
    data, out = tmp / "x.npz", tmp / "y.npz"
    np.savez(data, x=x)
    res = cli(["predict", rct, "--data", data, "-o", out])
    assert res.exit_code == 0, res
    with np.load(out, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _assert_parity(got: dict[str, np.ndarray], ref: dict[str, np.ndarray], rel_err: Callable) -> None:
    assert set(got) == set(ref), f"outputs {sorted(got)} != ONNX outputs {sorted(ref)}"
    for k, r in ref.items():
        assert got[k].shape == r.shape and got[k].shape[0] == N_SAMPLES
        err = rel_err(got[k], r)
        assert err <= TOL, f"{k}: max relative error {err:.3g} > {TOL}"


@pytest.mark.parametrize("name", list(models.BUILDERS))
def test_builder_models_match_onnxruntime(name: str, compiled_models: dict, cli: Callable, rel_err: Callable,
                                          tmp_path: Path) -> None:
    onnx_path, rct = compiled_models[name]
    x = _inputs(name, onnx.load(str(onnx_path)))
    _assert_parity(_predict(cli, rct, x, tmp_path), _ort(onnx_path, x), rel_err)


@pytest.mark.parametrize("name", list(models.READY))
def test_ready_files_match_onnxruntime(name: str, cli: Callable, rel_err: Callable, tmp_path: Path) -> None:
    onnx_path = models.path(name)
    rct = tmp_path / f"{name}.rct"
    res = cli(["compile", onnx_path, "-o", rct, "--mode", "fp32", "--batch-size", "8"])
    assert res.exit_code == 0, res
    x = _inputs(name, onnx.load(str(onnx_path)), seed=1)
    _assert_parity(_predict(cli, rct, x, tmp_path), _ort(onnx_path, x), rel_err)


def test_predict_in_a_real_process(compiled_models: dict, rel_err: Callable, tmp_path: Path) -> None:
    """The installed entry point (not CliRunner): exit 0, nothing on stderr, same numbers."""
    onnx_path, rct = compiled_models["lenet"]
    x = _inputs("lenet", onnx.load(str(onnx_path)), seed=2)
    np.savez(tmp_path / "x.npz", x=x)
    proc = subprocess.run(
        [sys.executable, "-c", "from rctc.cli import main; main()", "predict", str(rct),
         "--data", str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npz"), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    with np.load(tmp_path / "y.npz", allow_pickle=False) as z:
        got = {k: z[k] for k in z.files}
    _assert_parity(got, _ort(onnx_path, x), rel_err)


# ----- PyTorch exporters ---------------------------------------------------------------


@pytest.fixture(scope="module")
def torch_net() -> tuple:
    """A small CNN with BatchNorm (2-D and 1-D), Dropout and Linear layers, in eval mode."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2)
            self.fc1 = nn.Linear(8 * 4 * 4, 16)
            self.bn1 = nn.BatchNorm1d(16)
            self.drop = nn.Dropout(0.3)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):  # noqa: ANN001, ANN202 - torch module
            x = torch.relu(self.bn(self.conv1(x)))
            x = torch.nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
            x = torch.relu(self.bn1(self.fc1(torch.flatten(x, 1))))
            return self.fc(self.drop(x))

    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():  # non-trivial running statistics, so BN is not an identity
        for bn in (net.bn, net.bn1):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    net.eval()
    return torch, net


def _torch_parity(torch_net: tuple, onnx_path: Path, cli: Callable, rel_err: Callable, tmp: Path) -> None:
    torch, net = torch_net
    rct = tmp / "torch.rct"
    res = cli(["compile", onnx_path, "-o", rct, "--mode", "fp32", "--batch-size", "8"])
    assert res.exit_code == 0, res
    x = np.random.default_rng(3).standard_normal((N_SAMPLES, 3, 16, 16)).astype(np.float32)
    ref = _ort(onnx_path, x)
    with torch.no_grad():  # the exported file is what torch computes (sanity of the reference)
        np.testing.assert_allclose(ref["y"], net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    _assert_parity(_predict(cli, rct, x, tmp), ref, rel_err)
    from rctc.rct_format import load_rct

    params = {v.name for v in load_rct(rct).params()}
    assert {"fc.weight", "fc.bias", "fc1.weight"} <= params, f"torch parameter names lost: {sorted(params)}"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter is deprecated
def test_torchscript_exporter(torch_net: tuple, cli: Callable, rel_err: Callable, tmp_path: Path) -> None:
    torch, net = torch_net
    path = tmp_path / "ts.onnx"
    torch.onnx.export(net, (torch.zeros(2, 3, 16, 16),), str(path), dynamo=False, input_names=["x"],
                      output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "BatchNormalization" in ops  # BN1d after Linear is not fused by this exporter
    _torch_parity(torch_net, path, cli, rel_err, tmp_path)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # raised inside torch.export
@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
def test_dynamo_exporter_external_data(optimize: bool, torch_net: tuple, cli: Callable, rel_err: Callable,
                                       tmp_path: Path) -> None:
    """``dynamo=True`` output saved as model.onnx + model.onnx.data. Unoptimised, the graph keeps
    BatchNormalization and a Shape/Squeeze/Concat-derived Reshape target for the importer to fold."""
    torch, net = torch_net
    folder = tmp_path / "export"
    folder.mkdir()
    path = folder / "model.onnx"
    try:
        program = torch.onnx.export(
            net, (torch.zeros(2, 3, 16, 16),), dynamo=True, input_names=["x"], output_names=["y"],
            dynamic_shapes={"x": {0: torch.export.Dim("N")}}, optimize=optimize, verbose=False,
        )
        program.save(str(path), external_data=True)
    except Exception as exc:  # noqa: BLE001 - the exporter's own environment problems
        pytest.skip(f"torch.onnx.export(dynamo=True) fails on this machine: {type(exc).__name__}: {exc}")
    assert sorted(os.listdir(folder)) == ["model.onnx", "model.onnx.data"]
    proto = onnx.load(str(path), load_external_data=False)
    assert any(onnx.external_data_helper.uses_external_data(t) for t in proto.graph.initializer)
    if not optimize:
        assert {"BatchNormalization", "Shape", "Concat"} <= {n.op_type for n in proto.graph.node}
    _torch_parity(torch_net, path, cli, rel_err, tmp_path)


def test_light_zoo_model_through_the_cli(cli: Callable, rel_err: Callable, tmp_path: Path) -> None:
    """A bundled old-IR zoo model (ConstantOfShape weights, fixed batch 1) through compile + predict."""
    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_shufflenet.onnx"
    rct = tmp_path / "shufflenet.rct"
    res = cli(["compile", path, "-o", rct, "--mode", "fp32", "--batch-size", "1"])
    assert res.exit_code == 0, res
    x = np.random.default_rng(4).standard_normal((2, 3, 224, 224)).astype(np.float32)
    data, out = tmp_path / "x.npz", tmp_path / "y.npz"
    np.savez(data, x=x)
    res = cli(["predict", rct, "--data", data, "-o", out])
    assert res.exit_code == 0, res
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])
    with np.load(out, allow_pickle=False) as z:
        got = z[sess.get_outputs()[0].name]
    assert rel_err(got, ref) <= TOL

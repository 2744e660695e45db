"""Usage errors and unsafe outputs are one `rctc: error:` line with exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rctc.cli import main
from rctc.models import path


@pytest.fixture(scope="module")
def rct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("u") / "mlp.rct"
    assert CliRunner().invoke(main, ["compile", str(path("mlp")), "-o", str(out), "--batch-size", "8"]).exit_code == 0
    return out


def _one_line(args: list[str], needle: str) -> None:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rctc: error:") and needle in lines[0], r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("args,needle", [
    (["compile", "{model}", "--mode", "foo"], "Invalid value for '--mode'"),
    (["compile", "{model}", "--batch-size", "abc"], "'abc' is not a valid integer"),
    (["compile"], "Missing argument 'MODEL'"),
    (["compile", "{model}", "--nope"], "No such option"),
    (["frobnicate"], "No such command"),
    (["compile", "{tmp}"], "is a directory"),
    (["compile", "{model}", "-o", "{tmp}"], "is a directory"),
    (["export", "{rct}"], "Missing option '-o'"),
])
def test_usage_errors_are_one_line(args: list[str], needle: str, rct: Path, tmp_path: Path) -> None:
    subst = {"{model}": str(path("mlp")), "{tmp}": str(tmp_path), "{rct}": str(rct)}
    _one_line([subst.get(a, a) for a in args], needle)


def test_outputs_never_replace_inputs(rct: Path, tmp_path: Path) -> None:
    before = rct.read_bytes()
    data = tmp_path / "d.npz"
    np.savez(data, x=np.zeros((3, 64), np.float32), y=np.zeros(3, np.int64))
    data_before = data.read_bytes()
    _one_line(["predict", str(rct), "--data", str(data), "-o", str(rct)], "is also an input")
    _one_line(["predict", str(rct), "--data", str(data), "-o", str(data)], "is also an input")
    _one_line(["export", str(rct), "-o", str(rct)], "is also an input")
    _one_line(["train", str(rct), "--data", str(data), "-o", str(data)], "is also an input")
    _one_line(["compile", str(rct)], "already a compiled .rct")
    assert rct.read_bytes() == before and data.read_bytes() == data_before


def test_output_into_missing_or_unusable_folder(rct: Path, tmp_path: Path) -> None:
    _one_line(["compile", str(path("mlp")), "-o", str(tmp_path / "no" / "m.rct")], "does not exist")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line(["export", str(rct), "-o", str(blocker / "e.onnx")], "does not exist")
    _one_line(["train", str(rct), "--data", "digits", "--steps", "1", "-o", str(tmp_path / "no" / "t.rct")],
              "does not exist")


def test_compile_notes_a_batch_size_the_model_fixes(tmp_path: Path) -> None:
    """A model with a static batch keeps it; an explicit --batch-size that cannot apply is said."""
    import onnx

    proto = onnx.load(str(path("mlp")))
    for vi in list(proto.graph.input) + list(proto.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = 2
    src = tmp_path / "fixed.onnx"
    onnx.save(proto, str(src))
    res = CliRunner().invoke(main, ["compile", str(src), "-o", str(tmp_path / "a.rct"), "--batch-size", "8"])
    assert res.exit_code == 0 and "batch 2)" in res.output
    assert "fixes the batch dimension at 2; --batch-size 8" in res.output
    res = CliRunner().invoke(main, ["compile", str(src), "-o", str(tmp_path / "b.rct")])
    assert res.exit_code == 0 and "note:" not in res.output

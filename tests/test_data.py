"""Data formats for ``--data``: .npz (renamable keys), .csv with --target, image folders, digits,
and the seeded ``--val-split``; each bad input is one line ``rctc: error: ...`` and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rctc.cli import main
from rctc.data import load_data
from rctc.errors import DataError

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "mlp.rct"
    r = CliRunner().invoke(main, ["compile", str(MODELS / "mlp.onnx"), "-o", str(out), "--batch-size", "8",
                                  "--mode", "fp32"])
    assert r.exit_code == 0, r.output
    return out


def _digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    ds = load_data("digits:train")
    return ds.x[:n], ds.y[:n]


def _train(model: Path, tmp: Path, *args: str) -> dict:
    r = CliRunner().invoke(main, ["train", str(model), "-o", str(tmp / "out.rct"), "--steps", "2", "--json", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _fails(model: Path, tmp: Path, *args: str) -> str:
    r = CliRunner().invoke(main, ["train", str(model), "-o", str(tmp / "bad.rct"), "--steps", "2", *args])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("rctc: error: "), (r.exit_code, r.output)
    assert not (tmp / "bad.rct").exists()
    return lines[0]


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.write_text("\n".join([",".join(header)] + [",".join(str(c) for c in r) for r in rows]) + "\n")
    return path


def test_npz_with_renamed_keys(mlp: Path, tmp_path: Path) -> None:
    x, y = _digits(40)
    np.savez(tmp_path / "d.npz", images=x.reshape(40, 8, 8), labels=y)
    summary = _train(mlp, tmp_path, "--data", str(tmp_path / "d.npz"), "--x-key", "images", "--y-key", "labels")
    assert summary["steps"] == 2
    assert "no array 'x'" in _fails(mlp, tmp_path, "--data", str(tmp_path / "d.npz"))
    np.save(tmp_path / "single.npy", x)
    (tmp_path / "single.npz").write_bytes((tmp_path / "single.npy").read_bytes())
    assert "single array" in _fails(mlp, tmp_path, "--data", str(tmp_path / "single.npz"))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    assert "not a readable .npz" in _fails(mlp, tmp_path, "--data", str(tmp_path / "broken.npz"))


def test_csv(mlp: Path, tmp_path: Path) -> None:
    x, y = _digits(24)
    header = [f"p{i}" for i in range(64)] + ["label"]
    good = _csv(tmp_path / "d.csv", header, [list(r) + [int(c)] for r, c in zip(x, y)])
    ds = load_data(str(good), target="label")
    np.testing.assert_array_equal(ds.y, y)
    np.testing.assert_allclose(ds.x, x)
    assert ds.y.dtype == np.int64
    assert _train(mlp, tmp_path, "--data", str(good), "--target", "label")["steps"] == 2
    assert "no column 'class'" in _fails(mlp, tmp_path, "--data", str(good), "--target", "class")
    assert "needs --target" in _fails(mlp, tmp_path, "--data", str(good))
    rows = [list(r) + [int(c)] for r, c in zip(x, y)]
    rows[5][3] = "abc"
    bad = _csv(tmp_path / "bad.csv", header, rows)
    msg = _fails(mlp, tmp_path, "--data", str(bad), "--target", "label")
    assert "non-numeric cell 'abc'" in msg and "p3" in msg and "row 6" in msg
    short = _csv(tmp_path / "short.csv", header, [list(x[0][:10])])
    assert "has 10 cells" in _fails(mlp, tmp_path, "--data", str(short), "--target", "label")
    empty = _csv(tmp_path / "empty.csv", header, [])
    assert "no data rows" in _fails(mlp, tmp_path, "--data", str(empty), "--target", "label")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81binary")
    assert "not a readable CSV" in _fails(mlp, tmp_path, "--data", str(tmp_path / "bin.csv"), "--target", "label")


def test_image_folder(mlp: Path, tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image")
    x, y = _digits(30)
    root = tmp_path / "imgs"
    for i, (img, c) in enumerate(zip(x, y)):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
        pil.fromarray((img.reshape(8, 8) * 255).round().astype(np.uint8), "L").save(root / f"class{c}" / f"{i}.png")
    ds = load_data(str(root))
    classes = sorted({f"class{c}" for c in y})
    assert ds.x.shape == (30, 8, 8) and sorted(set(ds.y.tolist())) == list(range(len(classes)))
    for img, label in zip(ds.x, ds.y):  # lossless 8-bit PNG round trip, labels by sorted folder name
        assert any(np.allclose(img.reshape(-1), xi, atol=1 / 255) and classes[label] == f"class{c}"
                   for xi, c in zip(x, y))
    assert _train(mlp, tmp_path, "--data", str(root))["steps"] == 2
    (tmp_path / "none" / "a").mkdir(parents=True)
    (tmp_path / "none" / "a" / "readme.txt").write_text("no images here")
    assert "no images found" in _fails(mlp, tmp_path, "--data", str(tmp_path / "none"))
    (root / "class0" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    msg = _fails(mlp, tmp_path, "--data", str(root))
    assert "corrupt.png" in msg and "corrupt or unreadable image" in msg


def test_digits_and_unknown_sources(mlp: Path, tmp_path: Path) -> None:
    train, test = load_data("digits"), load_data("digits:test")
    assert train.x.shape[1:] == (64,) and len(train) + len(test) == 1797
    assert "no such data file" in _fails(mlp, tmp_path, "--data", str(tmp_path / "missing.npz"))
    (tmp_path / "d.txt").write_text("1 2 3")
    assert "unknown data format" in _fails(mlp, tmp_path, "--data", str(tmp_path / "d.txt"))
    with pytest.raises(DataError, match="unknown digits split"):
        load_data("digits:valid")


def test_val_split_is_seeded(mlp: Path, tmp_path: Path) -> None:
    a = _train(mlp, tmp_path, "--data", "digits", "--val-split", "0.1", "--seed", "3")
    b = _train(mlp, tmp_path, "--data", "digits", "--val-split", "0.1", "--seed", "3")
    c = _train(mlp, tmp_path, "--data", "digits", "--val-split", "0.1", "--seed", "4")
    assert a["val_loss"] == b["val_loss"] and a["val_accuracy"] == b["val_accuracy"]
    assert a["val_loss"] != c["val_loss"]
    assert "between 0 and 1" in _fails(mlp, tmp_path, "--data", "digits", "--val-split", "1.5")
    assert "not both" in _fails(mlp, tmp_path, "--data", "digits", "--val-split", "0.1", "--val", "digits:test")


def test_breast_cancer_is_bundled_split_and_standardised_on_the_training_part() -> None:
    from sklearn.datasets import load_breast_cancer  # the independent reference (scikit-learn's copy)

    train, test, every = (load_data(f"breast_cancer:{p}") for p in ("train", "test", "all"))
    assert train.x.shape == (455, 30) and test.x.shape == (114, 30) and every.x.shape == (569, 30)
    np.testing.assert_allclose(train.x.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train.x.std(axis=0), 1.0, atol=1e-4)
    ref = load_breast_cancer()
    mu, sd = ref.data[_split_rows(569)[1]].mean(axis=0), ref.data[_split_rows(569)[1]].std(axis=0)
    order = _split_rows(569)[0]
    np.testing.assert_allclose(test.x, ((ref.data[order] - mu) / sd).astype(np.float32), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(test.y, ref.target[order])
    assert load_data("breast_cancer").x.shape == (455, 30)


def _split_rows(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(test rows, train rows) of the documented seeded 80 / 20 split."""
    order = np.random.default_rng(0).permutation(n)
    k = int(round(n * 0.2))
    return order[:k], order[k:]


def test_unknown_breast_cancer_split_is_one_line() -> None:
    with pytest.raises(DataError, match="unknown breast_cancer split 'val'"):
        load_data("breast_cancer:val")

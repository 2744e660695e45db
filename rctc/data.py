"""Training / evaluation data: loading, validation and conversion to the model's input.

Sources: an ``.npz`` with arrays ``x`` and ``y`` (keys renamable), a ``.csv`` with a
``--target`` column, a folder of images in class subfolders (needs Pillow), and the
built-in ``digits`` (scikit-learn's 8x8 handwritten digits, bundled with rctc):
``digits`` / ``digits:train`` is a seeded 80% split, ``digits:test`` the held-out 20%; and
``breast_cancer`` (scikit-learn's copy of the UCI Wisconsin diagnostic data, 569 samples of 30
features, 2 classes, bundled too), split the same way, each feature standardised with the mean
and standard deviation of the training split.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from rctc.errors import CorruptFileError, DataError
from rctc.npz import read_npz

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
REAL_KINDS = "biuf"  # numpy dtype kinds rctc accepts as data: bool, int, uint, float
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff"}


@dataclass
class Dataset:
    x: np.ndarray
    y: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return int(self.x.shape[0])


def _split(name: str, n: int, part: str) -> dict[str, np.ndarray]:
    """The seeded 80 / 20 split of a built-in set; ``part`` must be one of its keys."""
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(n)
    n_test = int(round(n * DIGITS_TEST_FRACTION))
    parts = {"test": order[:n_test], "train": order[n_test:], "all": order}
    if part not in parts:
        raise DataError(f"unknown {name} split {part!r}; use {name}, {name}:train, {name}:test or {name}:all")
    return parts


def _bundled(file: str) -> dict[str, np.ndarray]:
    with resources.files("rctc").joinpath(f"data/{file}").open("rb") as f:
        with np.load(f, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _digits(part: str) -> Dataset:
    z = _bundled("digits.npz")
    images, target = z["images"].astype(np.float32) / 16.0, z["target"].astype(np.int64)
    idx = _split("digits", len(target), part)[part]
    return Dataset(images[idx].reshape(len(idx), 64), target[idx], f"digits:{part}")


def _breast_cancer(part: str) -> Dataset:
    z = _bundled("breast_cancer.npz")
    x, target = z["data"].astype(np.float64), z["target"].astype(np.int64)
    parts = _split("breast_cancer", len(target), part)
    train = x[parts["train"]]
    x = (x - train.mean(axis=0)) / train.std(axis=0)
    idx = parts[part]
    return Dataset(x[idx].astype(np.float32), target[idx], f"breast_cancer:{part}")


BUILTIN = {"digits": _digits, "breast_cancer": _breast_cancer}


def _npz(path: Path, x_key: str, y_key: str | None) -> Dataset:
    try:
        found, arrays = read_npz(path, [x_key] if y_key is None else [x_key, y_key])
    except CorruptFileError as exc:
        raise DataError(str(exc)) from exc
    if x_key not in arrays:
        raise DataError(f"{path}: no array {x_key!r} (found: {', '.join(found) or 'none'}); use --x-key")
    return Dataset(arrays[x_key], None if y_key is None else arrays.get(y_key), str(path))


def _csv(path: Path, target: str | None) -> Dataset:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV text file ({type(exc).__name__}: {exc})") from exc
    if not rows:
        raise DataError(f"{path}: empty CSV file")
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if r]
    if target is None:
        raise DataError(f"{path}: a CSV needs --target COLUMN (columns: {', '.join(header)})")
    if target not in header:
        raise DataError(f"{path}: no column {target!r} (columns: {', '.join(header)}); check --target")
    if not body:
        raise DataError(f"{path}: no data rows below the header")
    ti = header.index(target)
    try:
        table = np.array(body, dtype=np.float64)
    except ValueError:
        table = None
    if table is None or table.shape != (len(body), len(header)):  # find the culprit for the message
        for i, r in enumerate(body):
            if len(r) != len(header):
                raise DataError(f"{path}: data row {i + 1} has {len(r)} cells, the header has {len(header)}")
            for j, c in enumerate(r):
                try:
                    float(c)
                except ValueError:
                    raise DataError(f"{path}: data row {i + 1}, column {header[j]!r}: non-numeric cell {c!r}; "
                                    "every cell must be a number") from None
        raise DataError(f"{path}: cannot read the cells as numbers")
    y = table[:, ti]
    x = np.delete(table, ti, axis=1).astype(np.float32)
    if np.all(y == np.round(y)):
        y = y.astype(np.int64)
    return Dataset(x, y, str(path))


def _images(path: Path) -> Dataset:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise DataError("image folders need Pillow: pip install 'rctc[images]'") from exc
    classes = sorted(d.name for d in path.iterdir() if d.is_dir())
    files = [(c, f) for ci, c in enumerate(classes) for f in sorted((path / c).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DataError(f"{path}: no images found; expected class subfolders with image files")
    xs, ys = [], []
    for c, f in files:
        try:
            with Image.open(f) as im:
                if im.mode not in ("L", "RGB"):
                    im = im.convert("RGB" if im.mode in ("P", "RGBA", "CMYK", "YCbCr", "LAB", "HSV") else "L")
                xs.append(np.asarray(im, dtype=np.float32) / 255.0)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"{f}: corrupt or unreadable image ({type(exc).__name__}); remove or replace it") from exc
        ys.append(classes.index(c))
    if len({x.shape for x in xs}) != 1:
        raise DataError(f"{path}: images differ in size; resize them to one size")
    x = np.stack(xs)
    if x.ndim == 4:  # N,H,W,C -> N,C,H,W
        x = x.transpose(0, 3, 1, 2)
    return Dataset(x, np.array(ys, np.int64), str(path))


def load_data(spec: str, x_key: str = "x", y_key: str | None = "y", target: str | None = None) -> Dataset:
    """Load a data set from a path or a built-in name, checked to be real-valued arrays of samples
    (``y_key=None``: inputs only, any labels are dropped)."""
    ds = _load(spec, x_key, y_key, target)
    if y_key is None:
        ds.y = None
    check_array(ds.x, "x", ds.source)
    if ds.y is not None:
        check_array(ds.y, "y", ds.source)
        if ds.y.shape[0] != ds.x.shape[0]:
            raise DataError(f"{ds.source}: x has {ds.x.shape[0]} samples but y has {ds.y.shape[0]}")
    return ds


def _load(spec: str, x_key: str, y_key: str | None, target: str | None) -> Dataset:
    name, _, part = spec.partition(":")
    if name in BUILTIN:
        return BUILTIN[name](part or "train")
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{spec}: no such data file or folder (built-in: digits, digits:test, breast_cancer, "
                        "breast_cancer:test)")
    if path.is_dir():
        return _images(path)
    if path.suffix.lower() == ".csv":
        return _csv(path, target)
    if path.suffix.lower() == ".npz":
        return _npz(path, x_key, y_key)
    raise DataError(f"{spec}: unknown data format {path.suffix!r}; use .npz, .csv, an image folder or digits")


def check_array(a: object, name: str, source: str) -> np.ndarray:
    """``a`` is an array of samples of real numbers: at least 1-D, not empty, int / uint / bool / float."""
    a = np.asarray(a)
    if a.dtype.kind not in REAL_KINDS:
        raise DataError(f"{source}: {name} has dtype {a.dtype}; rctc needs real numbers (bool, int or float arrays)")
    if a.ndim == 0:
        raise DataError(f"{source}: {name} is a single value (0-d array); give an array with one row per sample")
    if a.shape[0] == 0:
        raise DataError(f"{source}: no samples in {name}")
    return a


def fit_inputs(x: np.ndarray, shape: tuple[int, ...], dtype: np.dtype, source: str) -> np.ndarray:
    """Convert samples to the model input's per-sample ``shape`` and ``dtype``, or fail clearly."""
    x = check_array(x, "x", source)
    per = int(np.prod(shape))
    if tuple(x.shape[1:]) != tuple(shape):
        if int(np.prod(x.shape[1:])) != per:
            raise DataError(
                f"{source}: samples have shape {list(x.shape[1:])}, the model wants {list(shape)} "
                f"({per} values per sample)"
            )
        x = x.reshape((x.shape[0], *shape))

    if np.issubdtype(dtype, np.integer):
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise DataError(f"{source}: x contains NaN or Inf")
        if np.issubdtype(x.dtype, np.floating) and np.any(x != np.round(x)):
            raise DataError(f"{source}: the model wants integer input (token ids) but x has fractions")
        return x.astype(dtype)
    x = x.astype(dtype)
    if not np.all(np.isfinite(x)):
        bad = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0, 0])
        raise DataError(f"{source}: x contains NaN or Inf (first at sample {bad}); clean the data")
    return x


def check_labels(y: np.ndarray | None, n: int, num_classes: int | None, target_shape: tuple[int, ...] | None,
                 source: str) -> np.ndarray:
    """Validate targets: class labels for cross-entropy, float targets for MSE."""
    if y is None:
        raise DataError(f"{source}: no labels (array 'y' missing; use --y-key or --target)")
    y = check_array(y, "y", source)
    if y.shape[0] != n:
        raise DataError(f"{source}: x has {n} samples but y has {y.shape[0]}")
    if num_classes is not None:
        if y.ndim == 2 and y.shape[1] == 1:  # a column of labels
            y = y[:, 0]
        if y.ndim != 1:
            raise DataError(f"{source}: class labels must be 1-D, got shape {list(y.shape)}")
        if np.issubdtype(y.dtype, np.floating):
            if not np.all(np.isfinite(y)):
                raise DataError(f"{source}: y contains NaN or Inf")
            if np.any(y != np.round(y)):
                raise DataError(f"{source}: class labels must be integers")
        lo, hi = y.min(), y.max()  # compared in y's own dtype: no wrap-around before the range check
        if lo < 0 or hi >= num_classes:
            raise DataError(f"{source}: labels must be in 0..{num_classes - 1}, found {lo}..{hi}")
        return y.astype(np.int64)
    y = y.astype(np.float32)
    if target_shape is not None and tuple(y.shape[1:]) != tuple(target_shape):
        if int(np.prod(y.shape[1:])) != int(np.prod(target_shape)):
            raise DataError(f"{source}: targets have shape {list(y.shape[1:])}, the model outputs {list(target_shape)}")
        y = y.reshape((n, *target_shape))
    if not np.all(np.isfinite(y)):
        raise DataError(f"{source}: y contains NaN or Inf")
    return y

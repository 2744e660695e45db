"""The bundled digits copy equals scikit-learn's, and the train/test split is seeded and disjoint."""

from __future__ import annotations

import numpy as np
import pytest

from rctc.data import load_data


def test_bundled_digits_equal_scikit_learn() -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    ref = datasets.load_digits()
    ds = load_data("digits:all")
    order = np.random.default_rng(0).permutation(len(ref.target))
    np.testing.assert_array_equal(ds.x, (ref.images[order] / 16.0).reshape(-1, 64).astype(np.float32))
    np.testing.assert_array_equal(ds.y, ref.target[order])


def test_split_is_disjoint_and_complete() -> None:
    tr, te = load_data("digits:train"), load_data("digits:test")
    assert len(tr) + len(te) == 1797 and len(te) == 359
    rows = {r.tobytes() for r in tr.x}
    assert sum(r.tobytes() in rows for r in te.x) < 10  # digits has a few duplicate images
    assert load_data("digits").source == "digits:train"

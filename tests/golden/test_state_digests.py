"""Every bundled model trains to the recorded state in every mode (fingerprints recorded on main):
bit-identical integer tensors, float tensors within the BLAS's last-bit noise (see state_digests.py).

A mismatch means numerics changed. If that is intended, re-record with
``python tests/golden/state_digests.py`` in a commit that says why.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from state_digests import DIGESTS, MODES, digest_of, same

from rctc import models

RECORDED = json.loads(DIGESTS.read_text())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", models.READY)
def test_trained_state_is_unchanged(name: str, mode: str) -> None:
    got = digest_of(name, mode)
    want = RECORDED[f"{name}/{mode}"]
    assert sorted(got) == sorted(want), "the set of state tensors changed"
    changed = [k for k in want if not same(got[k], want[k])]
    assert not changed, f"{name}/{mode}: state changed in {changed[:5]} (re-record only if intended)"


def test_float_fingerprints_tolerate_last_bits_but_not_a_real_change() -> None:
    from state_digests import fingerprint

    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 9)).astype(np.float32)
    ulp = (w + np.spacing(w) * rng.integers(-4, 5, size=w.shape)).astype(np.float32)  # a few ulps: another BLAS
    assert same(fingerprint(ulp), fingerprint(w))
    moved = w.copy()
    moved[3, 4] += 0.01 * np.abs(w).max()  # one element moved by 1% of the scale: a numerics change
    assert not same(fingerprint(moved), fingerprint(w))
    assert not same(fingerprint(w * 1.001), fingerprint(w))
    assert not same(fingerprint(w.astype(np.float64)), fingerprint(w))
    q = rng.integers(-128, 128, size=(4, 4)).astype(np.int8)
    q2 = q.copy()
    q2[0, 0] ^= 1
    assert same(fingerprint(q), fingerprint(q)) and not same(fingerprint(q2), fingerprint(q))

"""Every bundled model trains to bit-identical state in every mode (digests recorded on main).

A mismatch means numerics changed. If that is intended, re-record with
``python tests/golden/state_digests.py`` in a commit that says why.
"""

from __future__ import annotations

import json

import pytest
from state_digests import DIGESTS, MODES, digest_of

from rctc import models

RECORDED = json.loads(DIGESTS.read_text())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", models.READY)
def test_trained_state_is_unchanged(name: str, mode: str) -> None:
    got = digest_of(name, mode)
    want = RECORDED[f"{name}/{mode}"]
    assert sorted(got) == sorted(want), "the set of state tensors changed"
    changed = [k for k in want if got[k] != want[k]]
    assert not changed, f"{name}/{mode}: state changed in {changed[:5]} (re-record only if intended)"

"""The C emitters and the op definitions agree: an op type has a C emitter exactly when its
definition names a ``c_kernel`` (so ``rctc ops`` tells the truth about the native backend)."""

from __future__ import annotations

from rctc.native.codegen.emit import EMITTERS, STEP_ARGS
from rctc.ops import REGISTRY


def test_every_emitter_has_a_definition_naming_its_kernel() -> None:
    missing = sorted(t for t in EMITTERS if t not in REGISTRY or REGISTRY[t].c_kernel is None)
    assert not missing, f"emitters without c_kernel on their definition: {missing}"


def test_every_definition_with_a_c_kernel_has_an_emitter() -> None:
    extra = sorted(t for t, d in REGISTRY.items() if d.c_kernel is not None and t not in EMITTERS)
    assert not extra, f"definitions claiming a C kernel with no emitter: {extra}"


def test_step_args_belong_to_emitters() -> None:
    assert set(STEP_ARGS) <= set(EMITTERS)

"""Which backend runs a compiled graph: native where it can, else numpy with one line saying why.

Needs: a compiled graph; for native, a C compiler (``CC``, else ``cc``; rctc.native.build).
Leaves: :func:`choose` (the decision and the line to tell the user) and :func:`make_executor`
(the executor a :class:`~rctc.runtime.trainer.Trainer` runs). The native backend runs rct graphs
(integer kernels, bit-identical to numpy); fp32 and qat graphs are float throughout and stay on
the numpy runtime (said in one line when native was asked for explicitly).
"""

from __future__ import annotations

from dataclasses import dataclass

from rctc.errors import NativeUnavailable, RctcError
from rctc.ir import Graph
from rctc.runtime.executor import Executor

#: the values of ``--backend``
BACKENDS = ("native", "numpy")


@dataclass(frozen=True)
class Choice:
    """The backend that runs (``"native"`` or ``"numpy"``) and the one line to print, if any."""

    name: str
    note: str | None = None


def choose(requested: str | None, graph: Graph, env: dict[str, str] | None = None) -> Choice:
    """``requested``: ``"native"``, ``"numpy"`` or None (native when a compiler is found)."""
    if requested is not None and requested not in BACKENDS:
        raise RctcError(f"--backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if requested == "numpy":
        return Choice("numpy")
    mode = str(graph.meta.get("mode"))
    if mode != "rct":
        note = (f"using the numpy runtime: the native backend runs rct graphs only (this model is {mode}; its "
                "float kernels stay on numpy)") if requested == "native" else None
        return Choice("numpy", note)
    from rctc.native.build import find_compiler

    try:
        find_compiler(env)
    except NativeUnavailable as exc:
        return Choice("numpy", f"using the numpy runtime: {exc}")
    return Choice("native")


def make_executor(name: str, graph: Graph, threads: int | None = None,
                  env: dict[str, str] | None = None) -> Executor:
    """The executor of backend ``name`` over ``graph``."""
    if name == "numpy":
        return Executor(graph)
    from rctc.native.executor import NativeExecutor

    return NativeExecutor(graph, threads, env)

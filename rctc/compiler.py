"""The compile driver: ONNX -> IR -> pass pipeline of the chosen mode -> compiled Graph.

Needs: the frontend (rctc.onnx_import), the passes and their pipelines, the analyses.
Leaves: ``compile_graph`` (every node of the compiled graph numbered, ``rctc.node_ids``);
``baseline_graph`` (the qat / fp32 training graph of the same
model, rebuilt from the forward structure kept in ``meta["forward_snapshot"]``, see
``rctc.analysis.baseline``, and run through the same pipelines) and ``estimate`` (the
static report with those baselines). The driver is the only layer that runs passes on
behalf of an analysis, so the analyses never import the passes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import onnx

from rctc.analysis.baseline import rebuild_forward, snapshot_forward
from rctc.analysis.profiles import Profile
from rctc.analysis.report import estimate as _estimate
from rctc.frontend_checks import check_batch_size
from rctc.ir import Graph
from rctc.node_ids import assign_node_ids
from rctc.onnx_import import import_model
from rctc.options import CompileOptions
from rctc.pass_manager import PassManager
from rctc.passes.registry import PASSES, PIPELINES


def compile_graph(
    model: onnx.ModelProto | str | os.PathLike[str],
    options: CompileOptions,
    print_between: bool = False,
    echo: Callable[[str], None] = print,
    on_pass: Callable[[str], None] | None = None,
) -> tuple[Graph, PassManager]:
    """Import ``model`` and run the pipeline of ``options.mode``; returns the graph and the pass log.

    ``on_pass`` is called with each pass name after it ran (the CLI's progress bar).
    """
    options.validate()
    g = import_model(model, options.batch_size)
    check_batch_size(g.values, options.batch_size, str(model) if not isinstance(model, onnx.ModelProto) else g.name)
    g.meta["mode"] = options.mode
    g.meta["options"] = options.to_dict()
    g.meta["source"] = os.path.basename(str(model)) if not isinstance(model, onnx.ModelProto) else g.name
    g.meta["step"] = 0
    g.meta["forward_snapshot"] = snapshot_forward(g)
    pm = PassManager(PASSES, print_between=print_between, echo=echo, on_pass=on_pass)
    pm.run(g, PIPELINES[options.mode], options)
    assign_node_ids(g)  # after the last pass: the node part of each node's random stream
    return g, pm


def baseline_graph(g: Graph, mode: str) -> Graph | None:
    """The ``mode`` training graph of the model ``g`` was compiled from, same options; None without a snapshot."""
    snap = g.meta.get("forward_snapshot")
    if snap is None:
        return None
    opts = dict(g.meta.get("options", {}))
    opts["mode"] = mode
    options = CompileOptions.from_dict(opts).validate()
    fwd = rebuild_forward(snap)
    fwd.meta.update({"mode": mode, "options": options.to_dict(), "source": g.meta.get("source"), "step": 0})
    PassManager(PASSES).run(fwd, PIPELINES[mode], options)
    assign_node_ids(fwd)
    return fwd


def estimate(graph: Graph, profile: str | Profile | None = None) -> dict[str, Any]:
    """The static energy / memory report of ``graph`` with its savings vs the fp32 and qat baselines."""
    return _estimate(graph, profile, baseline_graph)


__all__ = ["baseline_graph", "compile_graph", "estimate"]

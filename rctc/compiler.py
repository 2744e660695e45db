"""The compile driver: ONNX -> IR -> pass pipeline of the chosen mode -> compiled Graph.

The imported forward graph's structure (no weights) is kept in ``meta["forward_snapshot"]``
so the analysis can build the qat / fp32 baselines of the same model through the same
pipelines (``rctc.analysis.baseline``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import onnx

from rctc.frontend_checks import check_batch_size
from rctc.ir import Graph
from rctc.onnx_import import import_model
from rctc.options import CompileOptions
from rctc.pass_manager import PassManager


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
    from rctc.analysis.baseline import snapshot_forward
    from rctc.passes.registry import PASSES, PIPELINES

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
    return g, pm

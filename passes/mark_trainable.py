"""mark_trainable: decide which parameters train; make BatchNorm running stats state.

Needs: a canonical forward graph.
Leaves: ``Value.trainable`` set on every parameter (all by default; ``--trainable GLOB``
selects, ``--freeze GLOB`` removes; globs match parameter names), every
BatchNormalization with three outputs (Y, new running mean, new running var) whose new
stats are written back after each step (``graph.state_updates``); running stats are
buffers, never trainable.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from rctc.errors import RctcError
from rctc.ir import Graph
from rctc.options import CompileOptions


def _select(g: Graph, options: CompileOptions) -> None:
    params = g.params()
    names = [p.name for p in params]
    for flag, globs in (("--trainable", options.trainable), ("--freeze", options.freeze)):
        for pat in globs:
            if not any(fnmatchcase(n, pat) for n in names):
                shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
                raise RctcError(f"{flag} {pat!r} matches no parameter; parameters are: {shown}")
    for p in params:
        train = not options.trainable or any(fnmatchcase(p.name, pat) for pat in options.trainable)
        if any(fnmatchcase(p.name, pat) for pat in options.freeze):
            train = False
        p.trainable = train
    if params and not any(p.trainable for p in params):
        raise RctcError("no parameter is left trainable; loosen --freeze / --trainable")


def _bn_running_stats(g: Graph) -> None:
    for node in list(g.nodes):
        if node.op_type != "BatchNormalization" or len(node.outputs) == 3:
            continue
        mean, var = node.inputs[3], node.inputs[4]
        if mean.kind != "buffer" or var.kind != "buffer":
            continue
        y = node.outputs[0]
        new = g.add_node(
            "BatchNormalization",
            list(node.inputs),
            [(f"{y.name}.bn", y.shape, y.dtype), (f"{mean.name}.new", mean.shape, mean.dtype),
             (f"{var.name}.new", var.shape, var.dtype)],
            {k: v for k, v in node.attrs.items() if k != "training_mode"},
            name=f"{node.name}.train",
            before=node,
        )
        new.meta.update(node.meta)
        g.replace_value(y, new.outputs[0], take_name=True)
        g.remove_node(node)
        g.state_updates[mean.name] = new.outputs[1].name
        g.state_updates[var.name] = new.outputs[2].name


def run(g: Graph, options: CompileOptions) -> None:
    _select(g, options)
    _bn_running_stats(g)

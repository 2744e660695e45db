"""add_loss: append the training loss to the forward graph.

Needs: ``graph.meta["logits"]`` (from canonicalize).
Leaves: graph inputs ``labels`` (int64 [N], cross-entropy) or ``targets`` (MSE, same shape
as the output), ``sample_mask`` (float32 [N]: 1 for real samples, 0 for padding; requantise
makes it uint8 when only integer ops read it) and a
scalar ``loss`` (the masked mean) as the first graph output, followed by the model
outputs. ``graph.meta["loss"]`` names it.
"""

from __future__ import annotations

import numpy as np

from rctc.errors import RctcError
from rctc.ir import Graph
from rctc.options import CompileOptions


def run(g: Graph, options: CompileOptions) -> None:
    logits = g.value(g.meta["logits"])
    n = logits.shape[0] if logits.shape else 0
    mask = g.add_input("sample_mask", (n,), np.float32)
    if options.loss == "cross-entropy":
        if len(logits.shape) > 2 and all(d == 1 for d in logits.shape[2:]):  # e.g. [N, C, 1, 1] conv heads
            shape = g.add_const(f"{logits.name}.loss_shape", np.array(logits.shape[:2], np.int64))
            flat = g.add_node("Reshape", [logits, shape], [(f"{logits.name}.2d", logits.shape[:2], logits.dtype)],
                              name=f"{logits.name}/to_2d")
            flat.meta["phase"] = "forward"
            logits = flat.outputs[0]
        if len(logits.shape) != 2:
            raise RctcError(
                f"cross-entropy needs a [batch, classes] output, but {logits.name!r} has shape {list(logits.shape)}; "
                "use --loss mse or add a Flatten"
            )
        labels = g.add_input("labels", (n,), np.int64)
        node = g.add_node("SoftmaxCrossEntropy", [logits, labels, mask], [("loss", (), np.float32)],
                          name="loss", domain="rctc")
        g.meta["num_classes"] = int(logits.shape[1])
        g.meta["target_input"] = "labels"
    else:
        out = g.value(g.meta["model_outputs"][0])
        targets = g.add_input("targets", out.shape, np.float32)
        node = g.add_node("MSELoss", [out, targets, mask], [("loss", (), np.float32)], name="loss", domain="rctc")
        g.meta["target_input"] = "targets"
    node.meta["phase"] = "loss"
    g.outputs = [node.outputs[0]] + [g.value(o) for o in g.meta["model_outputs"]]
    g.meta["loss"] = node.outputs[0].name
    g.meta["loss_kind"] = options.loss

"""The RCT bitwidth controller: between steps, adjust each parameter's bitwidth from Gavg.

Installed as a trainer hook for rct-mode graphs (``attach_controller``); other modes have
no bitwidth slots and get no controller.
"""

from __future__ import annotations

from rctc.runtime.trainer import Trainer


def attach_controller(trainer: Trainer) -> None:
    """Install the bitwidth controller on ``trainer`` when its graph is an rct-mode graph."""
    if trainer.graph.meta.get("mode") != "rct":
        return
    from rctc.runtime.bitwidth import BitwidthController

    trainer.hooks.append(BitwidthController(trainer.graph))

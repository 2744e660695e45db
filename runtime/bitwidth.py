"""The RCT bitwidth controller (runs between steps as a trainer hook).

Every ``adjust_every`` steps, for each trainable parameter with a slot, from the window's
mean Gavg (mean |update| in units of the last bit) and saturated fraction:

* saturation above ``SATURATION_LIMIT`` -> one more bit, same exponent (the range doubles);
* Gavg < ``gavg_low`` (updates underflow) -> one more bit: ``q <<= 1``, ``exp -= 1`` (lossless);
* Gavg > ``gavg_high`` (precision wasted) -> one bit less: ``q / 2`` rounded half to even, ``exp += 1``.

Bits stay within the slot's [min_bits, max_bits]. Every change is logged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rctc.fixedpoint import shift_left
from rctc.ir import Graph
from rctc.slots import bits_name, exp_name

SATURATION_LIMIT = 0.01


class BitwidthController:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        opts = graph.meta["options"]
        self.every = int(opts.get("adjust_every", 0))
        self.low = float(opts["gavg_low"])
        self.high = float(opts["gavg_high"])
        self.params = [p for p in graph.params(trainable_only=True) if "slot" in p.meta
                       and p.name in graph.state_updates]
        self.window: dict[str, list[tuple[float, float]]] = {p.name: [] for p in self.params}
        self.changes: list[dict[str, Any]] = graph.meta.setdefault("bit_changes", [])

    def __call__(self, trainer: Any, rec: Any) -> None:
        gavg = rec.stats.get("gavg", {})
        sat = rec.stats.get("saturation", {})
        for name in self.window:
            if name in gavg:
                self.window[name].append((gavg[name], sat.get(name, 0.0)))
        if self.every <= 0 or rec.step % self.every:
            return
        for p in self.params:
            obs = self.window[p.name]
            if not obs:
                continue
            g_mean = float(np.mean([o[0] for o in obs]))
            s_mean = float(np.mean([o[1] for o in obs]))
            self.window[p.name] = []
            change = self.decide(p.name, g_mean, s_mean)
            if change is not None:
                change.update({"step": rec.step, "param": p.name, "gavg": g_mean, "saturation": s_mean})
                self.changes.append(change)
                rec.stats.setdefault("bit_changes", []).append(change)

    def decide(self, name: str, gavg: float, sat: float) -> dict[str, Any] | None:
        g = self.graph
        p = g.value(name)
        bits_v, exp_v = g.value(bits_name(name)), g.value(exp_name(name))
        bits, exp = int(bits_v.data), int(exp_v.data)
        lo, hi = int(p.meta["slot"]["min_bits"]), int(p.meta["slot"]["max_bits"])
        if sat > SATURATION_LIMIT and bits < hi:
            new_bits, new_exp, reason = bits + 1, exp, "saturation"
        elif gavg < self.low and bits < hi:
            p.data = shift_left(p.data, 1, p.data.dtype)
            new_bits, new_exp, reason = bits + 1, exp - 1, "underflow"
        elif gavg > self.high and bits > lo:
            qmax = (1 << (bits - 2)) - 1
            # half to even: an unbiased rounding (half up would drift every odd value upwards)
            p.data = np.clip(np.rint(p.data.astype(np.float64) / 2), -qmax, qmax).astype(p.data.dtype)
            new_bits, new_exp, reason = bits - 1, exp + 1, "wasted precision"
        else:
            return None
        bits_v.data = np.array(new_bits, np.int32)
        exp_v.data = np.array(new_exp, np.int32)
        return {"old_bits": bits, "new_bits": new_bits, "reason": reason}

    def report(self) -> dict[str, Any]:
        return {
            "bit_changes": len(self.changes),
            "final_bits": {p.name: int(self.graph.value(bits_name(p.name)).data) for p in self.params},
        }

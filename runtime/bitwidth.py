"""The RCT bitwidth controller (runs between steps as a trainer hook).

Needs: the update kernels' integer statistics in each step record (``rec.stats[STATS_KEY]``).
Leaves: every ``adjust_every`` steps, for each trainable parameter with a slot, the decision of
rctc/bitwidth_rule.py (the rule, in exact integers, shared with the C twin) over the window of
steps since the last one: saturation -> one more bit, same exponent; mean Gavg below
``gavg_low`` -> one more bit, ``q <<= 1``, ``exp -= 1``; above ``gavg_high`` -> one bit less,
``q / 2`` rounded half to even, ``exp += 1``. The thresholds are converted to fixed point once,
here. Bits stay within the slot's [min_bits, max_bits]. Every change is logged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rctc.bitwidth_rule import REASONS, STATS_KEY, Action, Window, decide, rescale, threshold_fixed
from rctc.ir import Graph
from rctc.slots import bits_value, exp_value


class BitwidthController:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        opts = graph.meta["options"]
        self.every = int(opts.get("adjust_every", 0))
        #: the thresholds in fixed point (rctc.bitwidth_rule.FRAC_BITS fraction bits)
        self.low = threshold_fixed(float(opts["gavg_low"]))
        self.high = threshold_fixed(float(opts["gavg_high"]))
        self.params = [p for p in graph.params(trainable_only=True) if "slot" in p.meta
                       and p.name in graph.state_updates]
        self.window: dict[str, Window] = {p.name: Window() for p in self.params}
        # (bits, exponent) buffers per parameter; the controller changes their data, never the Values
        self._slot = {p.name: (bits_value(graph, p), exp_value(graph, p)) for p in self.params}
        self.changes: list[dict[str, Any]] = graph.meta.setdefault("bit_changes", [])

    def __call__(self, trainer: Any, rec: Any) -> None:
        stats = rec.stats.get(STATS_KEY, {})
        for name, w in self.window.items():
            if name in stats:
                w.observe(stats[name])
        if self.every <= 0 or rec.step % self.every:
            return
        for p in self.params:
            w = self.window[p.name]
            if not w.count:
                continue
            self.window[p.name] = Window()
            change = self.decide(p.name, w)
            if change is not None:
                change.update({"step": rec.step, "param": p.name, "gavg": w.mean_gavg(),
                               "saturation": w.saturation()})
                self.changes.append(change)
                rec.stats.setdefault("bit_changes", []).append(change)

    def decide(self, name: str, w: Window) -> dict[str, Any] | None:
        """Apply the rule's decision for ``name`` over window ``w``; the change record, or None."""
        p = self.graph.value(name)
        bits_v, exp_v = self._slot[name]
        bits, exp = int(bits_v.data), int(exp_v.data)
        lo, hi = int(p.meta["slot"]["min_bits"]), int(p.meta["slot"]["max_bits"])
        action = decide(w, self.low, self.high, bits, lo, hi)
        if action == Action.KEEP:
            return None
        p.data, new_bits, new_exp = rescale(action, p.data, bits, exp)
        bits_v.data = np.array(new_bits, np.int32)
        exp_v.data = np.array(new_exp, np.int32)
        return {"old_bits": bits, "new_bits": new_bits, "reason": REASONS[action]}

    def report(self) -> dict[str, Any]:
        return {
            "bit_changes": len(self.changes),
            "final_bits": {p.name: int(self._slot[p.name][0].data) for p in self.params},
        }

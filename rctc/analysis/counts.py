"""Operation and traffic counts, and their energy under a profile.

``Counts`` holds, for any set of executed nodes:

* ``macs``: multiply-accumulates by width, ``{"int8*int8+int32": n, "fp32*fp32+fp32": n}``
  (operand widths, then the accumulator width);
* ``elementwise``: element-wise ops by kind and width, ``{"add": {"fp32": n, "int8": n},
  "mult": {...}, "cmp": {...}, "special": {...}}``;
* ``bytes``: bytes moved by memory level, traffic class and direction,
  ``{"dram": {"param": {"read": n, "write": n}, "activation": {...}}}``.

``to_dict()`` is the machine form (``predicted.counts`` / ``measured.counts``); ``energy()``
splits the energy into GEMM, element-wise, parameter movement (parameters, their copies
and optimizer state) and activation movement (activations, errors, parameter gradients).
"""

from __future__ import annotations

from typing import Any

from rctc.analysis.profiles import Profile

PARAM_TRAFFIC = ("param", "optimizer")


class Counts:
    """Additive op / byte counts (plain ints; ``scaled`` makes per-step averages)."""

    __slots__ = ("macs", "elementwise", "bytes")

    def __init__(self) -> None:
        self.macs: dict[str, float] = {}
        self.elementwise: dict[str, dict[str, float]] = {}
        self.bytes: dict[str, dict[str, dict[str, float]]] = {}

    def add_macs(self, key: str, n: float) -> None:
        if n:
            self.macs[key] = self.macs.get(key, 0) + n

    def add_op(self, kind: str, width: str, n: float) -> None:
        if n:
            d = self.elementwise.setdefault(kind, {})
            d[width] = d.get(width, 0) + n

    def add_bytes(self, level: str, kind: str, direction: str, n: float) -> None:
        if n:
            d = self.bytes.setdefault(level, {}).setdefault(kind, {"read": 0, "write": 0})
            d[direction] += n

    def merge(self, other: Counts) -> None:
        for k, n in other.macs.items():
            self.add_macs(k, n)
        for kind, d in other.elementwise.items():
            for w, n in d.items():
                self.add_op(kind, w, n)
        for level, kinds in other.bytes.items():
            for kind, rw in kinds.items():
                for direction, n in rw.items():
                    self.add_bytes(level, kind, direction, n)

    def scaled(self, divisor: int) -> Counts:
        """These counts divided by ``divisor`` (exact ints where they divide evenly)."""
        out = Counts()

        def div(n: float) -> float:
            return n // divisor if isinstance(n, int) and n % divisor == 0 else n / divisor

        out.macs = {k: div(n) for k, n in self.macs.items()}
        out.elementwise = {kind: {w: div(n) for w, n in d.items()} for kind, d in self.elementwise.items()}
        out.bytes = {lv: {k: {d: div(n) for d, n in rw.items()} for k, rw in kinds.items()}
                     for lv, kinds in self.bytes.items()}
        return out

    # ----- summaries ------------------------------------------------------
    def total_macs(self) -> float:
        return sum(self.macs.values())

    def total_bytes(self, kinds: tuple[str, ...] | None = None) -> float:
        return sum(n for lv in self.bytes.values() for k, rw in lv.items() if kinds is None or k in kinds
                   for n in rw.values())

    def energy(self, profile: Profile) -> dict[str, float]:
        """pJ: gemm, elementwise, parameter_movement, activation_movement, total."""
        gemm = sum(n * profile.mac(k) for k, n in self.macs.items())
        ew = sum(n * profile.op(kind, w) for kind, d in self.elementwise.items() for w, n in d.items())
        pmov = amov = 0.0
        for lv_name, kinds in self.bytes.items():
            lv = profile.level(lv_name)
            for kind, rw in kinds.items():
                e = 8 * (rw.get("read", 0) * lv.read_pj_per_bit + rw.get("write", 0) * lv.write_pj_per_bit)
                if kind in PARAM_TRAFFIC:
                    pmov += e
                else:
                    amov += e
        return {"gemm": gemm, "elementwise": ew, "parameter_movement": pmov, "activation_movement": amov,
                "total": gemm + ew + pmov + amov}

    def to_dict(self) -> dict[str, Any]:
        return {
            "macs": dict(sorted(self.macs.items())),
            "elementwise": {k: dict(sorted(d.items())) for k, d in sorted(self.elementwise.items())},
            "bytes": {lv: {k: dict(rw) for k, rw in sorted(kinds.items())} for lv, kinds in sorted(self.bytes.items())},
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Counts) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


__all__ = ["PARAM_TRAFFIC", "Counts"]

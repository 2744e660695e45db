"""Compile options: one dataclass, validated in one place, stored in the .rct."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from rctc.errors import RctcError

MODES = ("rct", "qat", "fp32")
LOSSES = ("cross-entropy", "mse")
OPTIMIZERS = ("sgd", "momentum", "adamw")
#: PyTorch's default weight decay per optimizer (torch.optim.SGD: 0, torch.optim.AdamW: 0.01)
DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "momentum": 0.0, "adamw": 0.01}
ROUNDINGS = ("stochastic", "nearest")
MAX_BATCH_SIZE = 65536  # larger batches do not fit an edge device's memory (and a typo should not allocate TBs)
MAX_SEED = 2**63 - 1
ELEMENTWISE = ("integer", "float")


@dataclass
class CompileOptions:
    mode: str = "rct"
    batch_size: int = 32
    loss: str = "cross-entropy"
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float | None = None  # None: the optimizer's PyTorch default (DEFAULT_WEIGHT_DECAY)
    betas: tuple[float, float] = (0.9, 0.999)  # adamw
    eps: float = 1e-8  # adamw
    trainable: list[str] = field(default_factory=list)
    freeze: list[str] = field(default_factory=list)
    seed: int = 0
    bits: int = 8
    min_bits: int = 4
    max_bits: int = 16
    act_bits: int = 8
    grad_bits: int = 8
    rounding: str = "stochastic"
    #: rct: element-wise ops on integers ("integer") or version 1's float32 element-wise ("float")
    elementwise: str = "integer"
    adjust_every: int = 20
    gavg_low: float = 0.01
    gavg_high: float = 1.0

    def _check_types(self) -> None:
        """Each field has its declared type (the API and a hand-edited .rct can give anything)."""
        for f in fields(self):
            val, want = getattr(self, f.name), f.type
            opt = f"--{f.name.replace('_', '-')}"
            if want == "int" and (not isinstance(val, int) or isinstance(val, bool)):
                raise RctcError(f"{opt} must be an integer, got {val!r}")
            real = isinstance(val, (int, float)) and not isinstance(val, bool)
            if want == "float" and not (real and math.isfinite(val)):
                raise RctcError(f"{opt} must be a finite number, got {val!r}")
            if want == "str" and not isinstance(val, str):
                raise RctcError(f"{opt} must be a string, got {val!r}")
            if want == "list[str]" and not (isinstance(val, list) and all(isinstance(v, str) for v in val)):
                raise RctcError(f"{opt} must be a list of glob patterns, got {val!r}")

    def validate(self) -> CompileOptions:
        def bad(msg: str) -> RctcError:
            return RctcError(msg)

        self._check_types()

        if self.mode not in MODES:
            raise bad(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.loss not in LOSSES:
            raise bad(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.optimizer not in OPTIMIZERS:
            raise bad(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.rounding not in ROUNDINGS:
            raise bad(f"--rounding must be stochastic or nearest, got {self.rounding!r}")
        if self.elementwise not in ELEMENTWISE:
            raise bad(f"--elementwise must be integer or float, got {self.elementwise!r}")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise bad(f"--batch-size must be in 1..{MAX_BATCH_SIZE}, got {self.batch_size}")
        if not 0 <= self.seed <= MAX_SEED:
            raise bad(f"--seed must be in 0..{MAX_SEED}, got {self.seed}")
        if not self.lr > 0:
            raise bad(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise bad(f"--momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise bad(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.optimizer == "adamw":
            if self.mode == "rct":
                raise bad("--optimizer adamw runs in --mode fp32 or qat (rct's integer Adam moments are not "
                          "implemented yet); use --mode qat, or --optimizer sgd / momentum in rct")
            if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
                raise bad(f"--betas must be two values in [0, 1), got {list(self.betas)}")
            if not self.eps > 0:
                raise bad(f"--eps must be > 0, got {self.eps}")
        if self.min_bits < 2:
            raise bad(f"--min-bits must be >= 2, got {self.min_bits}")
        if self.max_bits > 32:
            raise bad(f"--max-bits must be <= 32, got {self.max_bits}")
        if self.min_bits > self.max_bits:
            raise bad(f"--min-bits ({self.min_bits}) is above --max-bits ({self.max_bits})")
        if not self.min_bits <= self.bits <= self.max_bits:
            raise bad(f"--bits {self.bits} is outside --min-bits..--max-bits ({self.min_bits}..{self.max_bits})")
        for name in ("act_bits", "grad_bits"):
            val = getattr(self, name)
            if not 2 <= val <= 16:
                raise bad(f"--{name.replace('_', '-')} must be in 2..16, got {val}")
        if self.adjust_every < 0:
            raise bad(f"--adjust-every must be >= 0 (0 disables the controller), got {self.adjust_every}")
        if not 0 <= self.gavg_low < self.gavg_high:
            raise bad(f"need 0 <= --gavg-low < --gavg-high, got {self.gavg_low} and {self.gavg_high}")
        return self

    @property
    def decay(self) -> float:
        """The weight decay in effect: the option, or the optimizer's PyTorch default."""
        return float(DEFAULT_WEIGHT_DECAY[self.optimizer] if self.weight_decay is None else self.weight_decay)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompileOptions:
        names = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in d.items() if k in names})
        out.betas = (float(out.betas[0]), float(out.betas[1]))  # JSON gives a list
        return out

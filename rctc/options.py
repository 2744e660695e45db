"""Compile options: one dataclass, validated in one place, stored in the .rct."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

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
#: 2: momentum / betas / eps are None unless given (sgd + momentum > 0 is momentum SGD)
OPTIONS_SCHEMA = 2


def _real(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class CompileOptions:
    mode: str = "rct"
    batch_size: int = 32
    loss: str = "cross-entropy"
    optimizer: str = "sgd"
    lr: float = 0.05
    #: None: not given (torch.optim.SGD's 0, or 0.9 for --optimizer momentum); with sgd, > 0 means momentum
    momentum: float | None = None
    weight_decay: float | None = None  # None: the optimizer's PyTorch default (DEFAULT_WEIGHT_DECAY)
    betas: tuple[float, float] | None = None  # adamw; None: torch.optim.AdamW's (0.9, 0.999)
    eps: float | None = None  # adamw; None: torch.optim.AdamW's 1e-8
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
        if self.momentum is not None and not (_real(self.momentum) and 0 <= self.momentum < 1):
            raise bad(f"--momentum must be in [0, 1), got {self.momentum}")
        self._check_optimizer_options()
        if self.weight_decay is not None and self.weight_decay < 0:
            raise bad(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.optimizer == "adamw":
            b = self.adam_betas
            if len(b) != 2 or not all(_real(x) and 0 <= x < 1 for x in b):
                raise bad(f"--betas must be two values in [0, 1), got {list(b)}")
            if not (_real(self.adam_eps) and self.adam_eps > 0):
                raise bad(f"--eps must be > 0, got {self.adam_eps}")
            if self.mode == "rct" and any(round(float(np.float32(x)) * 2**30) >= 2**30 for x in b):
                raise bad(f"--betas {list(b)}: rct mode keeps each beta (a float32) at 30 fraction bits, so it must "
                          "round below 1 there (beta < 1 - 2^-25); use a smaller beta, or --mode qat")
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

    def _check_optimizer_options(self) -> None:
        """An optimizer option that would have no effect is refused, never ignored (PyTorch's habits:
        ``torch.optim.SGD(momentum=0.9)`` is momentum SGD; betas / eps belong to AdamW)."""
        if self.optimizer == "adamw" and self.momentum is not None:
            raise RctcError("--momentum has no effect with --optimizer adamw (its moments are set by --betas); "
                            "drop --momentum, or use --optimizer sgd --momentum M")
        if self.optimizer != "adamw" and (self.betas is not None or self.eps is not None):
            which = " and ".join(n for n, v in (("--betas", self.betas), ("--eps", self.eps)) if v is not None)
            raise RctcError(f"{which} only apply to --optimizer adamw; drop them, or add --optimizer adamw")
        if self.optimizer == "momentum" and self.momentum == 0:
            raise RctcError("--optimizer momentum with --momentum 0 is plain SGD; use --optimizer sgd, or give "
                            "a momentum in (0, 1)")

    @property
    def update_rule(self) -> str:
        """The update the graph gets: "adamw", "momentum" (SGD with momentum > 0) or "sgd"."""
        if self.optimizer == "adamw":
            return "adamw"
        return "momentum" if self.momentum_factor > 0 else "sgd"

    @property
    def momentum_factor(self) -> float:
        """The momentum in effect: the option, else 0.9 for --optimizer momentum and 0 for sgd."""
        if self.momentum is not None:
            return float(self.momentum)
        return 0.9 if self.optimizer == "momentum" else 0.0

    @property
    def adam_betas(self) -> tuple[float, float]:
        return (0.9, 0.999) if self.betas is None else tuple(self.betas)  # type: ignore[return-value]

    @property
    def adam_eps(self) -> float:
        return 1e-8 if self.eps is None else self.eps

    @property
    def decay(self) -> float:
        """The weight decay in effect: the option, or the optimizer's PyTorch default."""
        return float(DEFAULT_WEIGHT_DECAY[self.optimizer] if self.weight_decay is None else self.weight_decay)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "options_schema": OPTIONS_SCHEMA}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompileOptions:
        names = {f.name for f in fields(cls)}
        out = cls(**{k: v for k, v in d.items() if k in names})
        if int(d.get("options_schema", 1)) < OPTIONS_SCHEMA:
            # schema 1 stored every optimizer option with its default (momentum 0.9 beside sgd, which
            # then meant plain SGD): keep what those files built
            if out.optimizer == "sgd":
                out.momentum = None
            if out.optimizer != "adamw":
                out.betas = out.eps = None
        if out.betas is not None:
            out.betas = (float(out.betas[0]), float(out.betas[1]))  # JSON gives a list
        return out


#: options that only rct mode reads (min/max bits and the controller shape the bitwidth slots), and
#: those QAT reads too (its fake quantisation uses --bits for weights and --act-bits for activations)
RCT_ONLY = ("min_bits", "max_bits", "grad_bits", "rounding", "elementwise", "adjust_every", "gavg_low", "gavg_high")
QUANTISED_ONLY = ("bits", "act_bits")


def refuse_no_effect(options: CompileOptions, given: set[str]) -> None:
    """One line for an option the user gave that the chosen mode never reads (never silently ignored)."""
    unread = RCT_ONLY if options.mode == "qat" else RCT_ONLY + QUANTISED_ONLY if options.mode == "fp32" else ()
    hit = [f"--{n.replace('_', '-')}" for n in unread if n in given]
    if hit:
        raise RctcError(f"{', '.join(hit)} {'has' if len(hit) == 1 else 'have'} no effect in --mode {options.mode}; "
                        f"drop {'it' if len(hit) == 1 else 'them'}, or use --mode rct")

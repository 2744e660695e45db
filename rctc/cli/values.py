"""Option values, checked where click parses them: the one boundary for numbers on the command line.

Needs: nothing from the other ``rctc.cli`` modules. Leaves: click parameter types whose failures
are one line ``--OPTION must be RULE, got VALUE`` (a usage error: exit code 2). Every number an
rctc command takes goes through one of these types, so ``inf``, ``nan``, negative counts and
absurd sizes never reach the API.
"""

from __future__ import annotations

import math
from typing import Any

import click

from rctc.options import MAX_BATCH_SIZE, MAX_SEED


class OptionValueError(click.BadParameter):
    """A number outside its option's range: the message already names the option."""

    def format_message(self) -> str:
        return self.message


class Number(click.ParamType):
    """An int or a finite float within ``[low, high]`` (``open_low`` / ``open_high``: bound excluded)."""

    def __init__(self, kind: type, low: float | None = None, high: float | None = None,
                 open_low: bool = False, open_high: bool = False, rule: str | None = None) -> None:
        self.kind, self.low, self.high, self.open_low, self.open_high = kind, low, high, open_low, open_high
        self.name = "integer" if kind is int else "number"
        self.rule = rule or self._rule()

    def _rule(self) -> str:
        fin = "" if self.kind is int else " and finite"
        if self.low is not None and self.high is not None:
            lo, hi = ("(" if self.open_low else "["), (")" if self.open_high else "]")
            return f"in {self.low}..{self.high}" if self.kind is int else f"in {lo}{self.low}, {self.high}{hi}"
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {self.low}{fin}"
        if self.high is not None:
            return f"{'<' if self.open_high else '<='} {self.high}{fin}"
        return "an integer" if self.kind is int else "a finite number"

    def _ok(self, v: float) -> bool:
        if self.kind is float and not math.isfinite(v):
            return False
        if self.low is not None and (v <= self.low if self.open_low else v < self.low):
            return False
        return not (self.high is not None and (v >= self.high if self.open_high else v > self.high))

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, self.kind) and not isinstance(value, bool):
            v = value
        else:
            try:
                v = self.kind(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a valid {self.name}", param, ctx)
        if not self._ok(v):
            name = max(param.opts, key=len) if param is not None and param.opts else "the value"
            raise OptionValueError(f"{name} must be {self.rule}, got {value}", ctx, param)
        return v


INT = Number(int)
FLOAT = Number(float)
COUNT = Number(int, low=1)  # epochs, steps, a moving-average window
NON_NEGATIVE_INT = Number(int, low=0)  # warm-up steps, a checkpoint period, the controller period
POSITIVE_FLOAT = Number(float, low=0, open_low=True)  # a learning rate
NON_NEGATIVE_FLOAT = Number(float, low=0)  # weight decay, Gavg thresholds
FRACTION = Number(float, low=0, high=1, open_low=True, open_high=True, rule="between 0 and 1")
MOMENTUM = Number(float, low=0, high=1, open_high=True)
SEED = Number(int, low=0, high=MAX_SEED)
BATCH_SIZE = Number(int, low=1, high=MAX_BATCH_SIZE)
BAND_BYTES = Number(int, low=1024)  # rctc codegen --band-bytes (native.device.codegen.MIN_BAND_BYTES)
BITS = Number(int, low=0, high=64)  # the exact range of each bitwidth option is CompileOptions.validate's

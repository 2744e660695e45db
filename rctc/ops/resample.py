"""Geometry of Resize (and Upsample read as Resize) and Pad, shared by the gradient rules and the
numpy kernels: per axis, which input positions each output position reads, and with what weight.

Needs: numpy and rctc.errors only (this is part of rctc.ops, the bottom layer).
Leaves: ``resize_plan`` / ``resize_taps`` (output shape, then per resized axis the two input
indices and weights of each output position: nearest reads one index with weight 1, linear two
with weights summing to 1) and ``pad_plan`` / ``pad_index`` (per axis the input index of each
output position, -1 where the constant is written). Both ops are then linear maps per axis:
the forward gathers, the gradient scatters the same taps back (one definition of the taps, so
forward and backward cannot disagree). A mode rctc does not implement is refused with one line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rctc.errors import UnsupportedOpError

COORD_MODES = ("half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
PAD_MODES = ("constant", "reflect", "edge")


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _axes(attrs: dict[str, Any], rank: int) -> list[int]:
    axes = attrs.get("axes")
    return list(range(rank)) if axes is None else [int(a) % rank for a in axes]


def resize_plan(attrs: dict[str, Any], x_shape: Sequence[int], scales: np.ndarray | None,
                sizes: np.ndarray | None, what: str = "Resize") -> tuple[list[float], list[int]]:
    """(scale per axis, output shape) of an ONNX Resize; refuses what rctc does not implement."""
    mode = _s(attrs.get("mode", "nearest"))
    coord = _s(attrs.get("coordinate_transformation_mode", "half_pixel"))
    nearest = _s(attrs.get("nearest_mode", "round_prefer_floor"))
    if mode not in ("nearest", "linear"):
        raise UnsupportedOpError(f"{what}: mode {mode!r} is not supported (nearest, linear); re-export with one")
    if coord not in COORD_MODES:
        raise UnsupportedOpError(f"{what}: coordinate_transformation_mode {coord!r} is not supported "
                                 f"({', '.join(COORD_MODES)})")
    if mode == "nearest" and nearest not in NEAREST_MODES:
        raise UnsupportedOpError(f"{what}: nearest_mode {nearest!r} is not supported")
    if int(attrs.get("antialias", 0)):
        raise UnsupportedOpError(f"{what}: antialias=1 is not supported; export with antialias=False")
    rank = len(x_shape)
    axes = _axes(attrs, rank)
    scale = [1.0] * rank
    out = [int(d) for d in x_shape]
    if sizes is not None and np.asarray(sizes).size:
        if _s(attrs.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
            raise UnsupportedOpError(f"{what}: keep_aspect_ratio_policy other than 'stretch' is not supported")
        for a, n in zip(axes, np.asarray(sizes).reshape(-1)):
            out[a] = int(n)
            scale[a] = int(n) / int(x_shape[a])
    elif scales is not None and np.asarray(scales).size:
        for a, s in zip(axes, np.asarray(scales, dtype=np.float64).reshape(-1)):
            scale[a] = float(np.float32(s))  # ONNX scales are float32: the output size is floor(in * s)
            out[a] = int(math.floor(int(x_shape[a]) * scale[a]))
    else:
        raise UnsupportedOpError(f"{what}: neither scales nor sizes is given")
    return scale, out


def resize_taps(attrs: dict[str, Any], n_in: int, n_out: int, scale: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i0, i1, w0, w1) of one axis: ``y[o] = w0[o] * x[i0[o]] + w1[o] * x[i1[o]]``."""
    coord = _s(attrs.get("coordinate_transformation_mode", "half_pixel"))
    o = np.arange(n_out, dtype=np.float64)
    if coord == "align_corners":  # the resized length is in * scale, unrounded (onnx's reference)
        length = scale * n_in
        src = o * ((n_in - 1) / (length - 1)) if length != 1 else np.zeros(n_out)
    elif coord == "asymmetric":
        src = o / scale
    elif coord == "pytorch_half_pixel" and n_out == 1:
        src = np.zeros(n_out)
    else:  # half_pixel, pytorch_half_pixel
        src = (o + 0.5) / scale - 0.5
    if _s(attrs.get("mode", "nearest")) == "nearest":
        nearest = _s(attrs.get("nearest_mode", "round_prefer_floor"))
        if nearest == "floor":
            idx = np.floor(src)
        elif nearest == "ceil":
            idx = np.ceil(src)
        else:
            frac = src - np.floor(src)
            up = frac > 0.5 if nearest == "round_prefer_floor" else frac >= 0.5
            idx = np.floor(src) + up
        i0 = np.clip(idx, 0, n_in - 1).astype(np.int64)
        return i0, i0, np.ones(n_out), np.zeros(n_out)
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    return i0, i1, 1.0 - w1, w1


def pad_plan(attrs: dict[str, Any], x_shape: Sequence[int], pads: np.ndarray, axes: np.ndarray | None,
             what: str = "Pad") -> tuple[list[int], list[int]]:
    """(begin, end) pads per axis (negative ones crop) of an ONNX Pad; refuses other modes."""
    mode = _s(attrs.get("mode", "constant"))
    if mode not in PAD_MODES:
        raise UnsupportedOpError(f"{what}: mode {mode!r} is not supported ({', '.join(PAD_MODES)})")
    rank = len(x_shape)
    ax = list(range(rank)) if axes is None or not np.asarray(axes).size else \
        [int(a) % rank for a in np.asarray(axes).reshape(-1)]
    p = [int(v) for v in np.asarray(pads).reshape(-1)]
    if len(p) != 2 * len(ax):
        raise UnsupportedOpError(f"{what}: {len(p)} pads for {len(ax)} axes")
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(ax):
        begin[a], end[a] = p[i], p[len(ax) + i]
    for a in range(rank):
        if mode == "reflect" and max(begin[a], end[a]) >= x_shape[a]:
            raise UnsupportedOpError(f"{what}: reflect pads {begin[a]}, {end[a]} need an axis longer than "
                                     f"{x_shape[a]}")
        if mode == "edge" and x_shape[a] == 0 and begin[a] + end[a] > 0:
            raise UnsupportedOpError(f"{what}: edge padding of an empty axis")
    return begin, end


def pad_index(mode: str, n_in: int, begin: int, end: int) -> np.ndarray:
    """Input index of each output position of one axis (-1: the constant value)."""
    j = np.arange(-begin, n_in + end, dtype=np.int64)
    inside = (j >= 0) & (j < n_in)
    if mode == "constant":
        return np.where(inside, j, -1)
    if mode == "edge":
        return np.clip(j, 0, n_in - 1)
    period = 2 * (n_in - 1)
    if period == 0:
        return np.zeros_like(j)
    k = np.mod(j, period)
    return np.where(k < n_in, k, period - k)


__all__ = ["COORD_MODES", "NEAREST_MODES", "PAD_MODES", "pad_index", "pad_plan", "resize_plan", "resize_taps"]

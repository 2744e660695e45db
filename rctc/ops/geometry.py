"""Window geometry of Conv and the pools, shared by passes, import and the kernels.

Needs: nothing but the ONNX attribute conventions (``pads`` as ``[begins..., ends...]``,
``auto_pad`` NOTSET / SAME_UPPER / SAME_LOWER / VALID).
Leaves: one rule for output sizes and explicit pads, so shape inference at import, the
gradient rules and the numpy kernels cannot disagree about a window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _as_str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def out_size(
    in_size: int,
    kernel: int,
    stride: int,
    dilation: int,
    pad_begin: int,
    pad_end: int,
    ceil_mode: bool = False,
) -> int:
    """Output length of one spatial axis (ONNX/PyTorch rule, incl. pooling ``ceil_mode``).

    With ``ceil_mode`` the last window must start inside the input or the begin padding
    (a window that would start in the end padding only is dropped), as in onnxruntime/PyTorch.
    """
    eff = (kernel - 1) * dilation + 1
    span = in_size + pad_begin + pad_end - eff
    if span < 0:
        raise ValueError(f"kernel extent {eff} larger than padded input {in_size + pad_begin + pad_end}")
    if not ceil_mode:
        return span // stride + 1
    n = -(-span // stride) + 1
    if (n - 1) * stride >= in_size + pad_begin:
        n -= 1
    return n


def resolve_pads(
    auto_pad: Any,
    in_spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads: Sequence[int] | None,
) -> list[int]:
    """Explicit ONNX pads ``[begins..., ends...]`` for an ``auto_pad`` setting."""
    k = len(in_spatial)
    mode = _as_str(auto_pad or "NOTSET")
    if mode not in AUTO_PADS:
        raise ValueError(f"unknown auto_pad {mode!r}")
    if mode == "NOTSET":
        p = [int(v) for v in pads] if pads is not None else [0] * (2 * k)
        if len(p) != 2 * k:
            raise ValueError(f"pads has {len(p)} entries, expected {2 * k}")
        return p
    if mode == "VALID":
        return [0] * (2 * k)
    begins, ends = [], []
    for i in range(k):
        out = -(-in_spatial[i] // strides[i])
        total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - in_spatial[i])
        small, big = total // 2, total - total // 2
        # SAME_UPPER puts the extra pad at the end, SAME_LOWER at the beginning.
        begins.append(small if mode == "SAME_UPPER" else big)
        ends.append(big if mode == "SAME_UPPER" else small)
    return begins + ends


def window_params(
    node_attrs: dict[str, Any], x_shape: Sequence[int], kernel: Sequence[int], ceil_mode: bool = False
) -> tuple[list[int], list[int], list[int], list[int]]:
    """(strides, dilations, pads, out_spatial) from ONNX Conv/Pool attributes."""
    k = len(x_shape) - 2
    strides = [int(v) for v in node_attrs.get("strides", [1] * k)]
    dilations = [int(v) for v in node_attrs.get("dilations", [1] * k)]
    pads = resolve_pads(node_attrs.get("auto_pad", "NOTSET"), x_shape[2:], kernel, strides, dilations,
                        node_attrs.get("pads"))
    outs = [
        out_size(x_shape[2 + i], kernel[i], strides[i], dilations[i], pads[i], pads[k + i], ceil_mode)
        for i in range(k)
    ]
    return strides, dilations, pads, outs


__all__ = ["AUTO_PADS", "out_size", "resolve_pads", "window_params"]

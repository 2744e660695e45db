"""Window geometry of Conv and the pools, shared by passes, import and the kernels.

Needs: nothing but the ONNX attribute conventions (``pads`` as ``[begins..., ends...]``,
``auto_pad`` NOTSET / SAME_UPPER / SAME_LOWER / VALID).
Leaves: one rule for output sizes and explicit pads, so shape inference at import, the
gradient rules and the numpy kernels cannot disagree about a window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rctc.errors import RctcError


class GeometryError(RctcError, ValueError):
    """A window the model's attributes make impossible: one line for the user (an RctcError), and
    still a ValueError for callers that probe shapes."""

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
        raise GeometryError(f"a window of extent {eff} is larger than the padded input "
                            f"({in_size + pad_begin + pad_end}); fix the kernel, pads or dilations in the model")
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
        raise GeometryError(f"unknown auto_pad {mode!r}; use one of {AUTO_PADS}")
    if mode == "NOTSET":
        p = [int(v) for v in pads] if pads is not None else [0] * (2 * k)
        if len(p) != 2 * k:
            raise GeometryError(f"pads has {len(p)} entries, expected {2 * k} (begins then ends of each spatial axis)")
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


def conv_transpose_params(
    node_attrs: dict[str, Any], x_shape: Sequence[int], w_shape: Sequence[int]
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """(kernel, strides, dilations, pads, out_spatial) of an ONNX ConvTranspose, pads explicit.

    ``out = stride * (in - 1) + output_padding + (kernel - 1) * dilation + 1 - pad_begin - pad_end``;
    an ``output_shape`` attribute or ``auto_pad`` SAME_* fixes ``out`` (SAME: ``in * stride``) and
    the total padding follows, split as the ONNX specification says (SAME_UPPER puts the odd one
    at the end, NOTSET / SAME_LOWER at the beginning); a negative total (at most stride - 1)
    extends the output at the end, as output_padding does.
    """
    k = len(x_shape) - 2
    kernel = [int(v) for v in node_attrs.get("kernel_shape") or w_shape[2:]]
    strides = [int(v) for v in node_attrs.get("strides") or [1] * k]
    dilations = [int(v) for v in node_attrs.get("dilations") or [1] * k]
    out_pad = [int(v) for v in node_attrs.get("output_padding") or [0] * k]
    auto = _as_str(node_attrs.get("auto_pad", "NOTSET"))
    if auto not in AUTO_PADS:
        raise GeometryError(f"auto_pad {auto!r} is not one of {AUTO_PADS}")
    full = [strides[i] * (int(x_shape[2 + i]) - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1
            for i in range(k)]
    shape = node_attrs.get("output_shape")
    if shape or auto in ("SAME_UPPER", "SAME_LOWER"):
        want = [int(v) for v in shape][-k:] if shape else [int(x_shape[2 + i]) * strides[i] for i in range(k)]
        total = [full[i] - want[i] for i in range(k)]
        if any(-t >= strides[i] for i, t in enumerate(total)):
            raise GeometryError(f"ConvTranspose output_shape {want} exceeds the full output {full} by a stride or more "
                                "(ONNX allows at most stride - 1 past it); fix output_shape in the model")
        # an output_shape up to stride - 1 past the full output (the spec's negative total padding)
        # extends it at the end as output_padding does: rows no window reaches (bias only)
        total = [max(t, 0) for t in total]
        upper = auto == "SAME_UPPER"
        begins = [t // 2 if upper else t - t // 2 for t in total]
        pads = begins + [t - b for t, b in zip(total, begins)]
        return kernel, strides, dilations, pads, want
    elif auto == "VALID":
        pads = [0] * (2 * k)
    else:
        pads = [int(v) for v in node_attrs.get("pads") or [0] * (2 * k)]
    outs = [full[i] - pads[i] - pads[k + i] for i in range(k)]
    return kernel, strides, dilations, pads, outs


__all__ = ["AUTO_PADS", "conv_transpose_params", "out_size", "resolve_pads", "window_params"]

"""Kernels of the quantisation ops: QuantAct, QuantGrad, Dequantize, FakeQuant (QAT)."""

from __future__ import annotations

import numpy as np

from rctc.ir import Node
from rctc.runtime.quant import choose_exponent, int_dtype_for_bits, qmax_for_bits
from rctc.runtime.kernels.registry import KernelContext, register


def pow2(e: int, dtype: type = np.float32) -> np.floating:
    return dtype(np.ldexp(1.0, int(e)))


def round_array(v: np.ndarray, rounding: str, rng: np.random.Generator) -> np.ndarray:
    """Nearest (half to even) or stochastic rounding floor(v + r), r ~ U[0,1) as float32 draws."""
    if rounding == "nearest":
        return np.rint(v)
    fl = np.floor(v)
    r = rng.random(v.shape, dtype=np.float32)
    return fl + (r < (v - fl))


def quantize_to(x: np.ndarray, e: int, bits: int, rounding: str, rng: np.random.Generator) -> np.ndarray:
    qmax = qmax_for_bits(bits)
    v = x.astype(np.float32, copy=False) * pow2(-e)
    r = round_array(v, rounding, rng)
    np.clip(r, -qmax, qmax, out=r)
    return r.astype(int_dtype_for_bits(bits))


def _absmax(x: np.ndarray) -> float:
    return float(np.max(np.abs(x))) if x.size else 0.0


@register("QuantAct")
def quant_act(ctx: KernelContext, node: Node, x: np.ndarray, amax: np.ndarray) -> tuple:
    """Activation -> (q, e, new running max). Training: e from the batch max; inference: from the running max."""
    bits = int(node.attrs["bits"])
    m = _absmax(x)
    if not np.isfinite(m):
        raise FloatingPointError(f"activation {node.inputs[0].name!r} contains NaN/Inf")
    run = float(amax)
    if ctx.training:
        e = choose_exponent(m, bits)
        mom = float(node.attrs.get("momentum", 0.9))
        new = m if run == 0.0 else mom * run + (1 - mom) * m
    else:
        e = choose_exponent(run if run > 0 else m, bits)
        new = run
    q = quantize_to(x, e, bits, "nearest", ctx.rng)
    return q, np.array(e, np.int32), np.array(new, np.float32)


@register("QuantGrad")
def quant_grad(ctx: KernelContext, node: Node, g: np.ndarray) -> tuple:
    """Error (gradient) -> (q, e) at grad bits, stochastic rounding unless configured nearest."""
    bits = int(node.attrs["bits"])
    m = _absmax(g)
    if not np.isfinite(m):
        raise FloatingPointError(f"gradient {node.inputs[0].name!r} contains NaN/Inf; lower the learning rate")
    e = choose_exponent(m, bits)
    return quantize_to(g, e, bits, str(node.attrs.get("rounding", "stochastic")), ctx.rng), np.array(e, np.int32)


@register("Dequantize")
def dequantize(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """alpha * q * 2^e (+ beta * bias, broadcast along ``bias_axis`` or numpy-style) in float32."""
    alpha = float(node.attrs.get("alpha", 1.0))
    y = q.astype(np.float32)
    y *= np.float32(alpha * np.ldexp(1.0, int(e)))
    if bias is not None:
        beta = float(node.attrs.get("beta", 1.0))
        b = bias.astype(np.float32, copy=False)
        if int(node.attrs.get("bias_axis", -1)) == 1 and b.ndim == 1:
            b = b.reshape((1, -1) + (1,) * (y.ndim - 2))
        y += b if beta == 1.0 else np.float32(beta) * b
    return y


@register("FakeQuant")
def fake_quant(ctx: KernelContext, node: Node, x: np.ndarray) -> np.ndarray:
    """QAT: quantise-dequantise at ``bits`` with a per-tensor power-of-two scale from max |x|."""
    bits = int(node.attrs["bits"])
    e = choose_exponent(_absmax(x), bits)
    qmax = qmax_for_bits(bits)
    v = np.rint(x * pow2(-e, x.dtype.type))
    np.clip(v, -qmax, qmax, out=v)
    return (v * pow2(e, x.dtype.type)).astype(x.dtype, copy=False)

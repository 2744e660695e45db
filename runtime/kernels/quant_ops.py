"""Kernels of the quantisation ops: QuantAct, QuantGrad, Dequantize, FakeQuant (QAT)."""

from __future__ import annotations

import math

import numpy as np

from rctc.fixedpoint import choose_exponent, int_dtype_for_bits, qmax_for_bits
from rctc.ir import Node
from rctc.runtime.kernels.registry import KernelContext, register


def pow2(e: int, dtype: type = np.float32) -> np.floating:
    return dtype(np.ldexp(1.0, int(e)))


_TWO24 = float(1 << 24)
_F32_TINY = float(np.finfo(np.float32).tiny)
_F32_MAX = float(np.finfo(np.float32).max)


def uniform_bits(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform integers ``U`` in ``[0, 2^24)`` (uint32): ``U / 2^24`` is ``r ~ U[0, 1)`` on the float32
    grid, the distribution of ``rng.random(dtype=np.float32)`` (the top 24 bits of a 32-bit draw).

    Taken straight from the bit generator's raw 64-bit output (two draws per word): about half
    the cost of ``rng.random``, and no float work. Deterministic for a given generator state.
    """
    n = math.prod(shape)
    raw = rng.bit_generator.random_raw((n + 1) // 2)
    u = raw.view(np.uint32)[:n]
    u >>= np.uint32(8)
    return u.reshape(shape)


def stochastic_floor(v: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(floor(v), r < v - floor(v))`` with ``r = U / 2^24`` (:func:`uniform_bits`): the parts of the
    stochastic rounding ``floor(v + r)``, without the rounding error of the float sum.

    The comparison is done scaled by 2^24 (an exact power-of-two scaling); ``U`` is read as int32
    (the same values), whose conversion to float vectorises, unlike uint32's.
    """
    fl = np.floor(v)
    frac = np.subtract(v, fl)
    frac *= frac.dtype.type(_TWO24)
    return fl, np.less(uniform_bits(rng, v.shape).view(np.int32), frac)


def round_array(v: np.ndarray, rounding: str, rng: np.random.Generator) -> np.ndarray:
    """Nearest (half to even) or stochastic rounding floor(v + r), r ~ U[0,1) on the float32 grid
    (:func:`stochastic_floor`). Returns a new float array of ``v``'s dtype."""
    if rounding == "nearest":
        return np.rint(v)
    fl, up = stochastic_floor(v, rng)
    fl += up
    return fl


def quantize_nearest(x: np.ndarray, e: int, bits: int, in_range: bool = False) -> np.ndarray:
    """``clip(rint(x / 2^e))`` (half to even) in the int dtype of ``bits``.

    ``in_range``: ``e`` was chosen from max|x| (:func:`choose_exponent`), so ``|x / 2^e| <= qmax``
    and rint of a value in ``[-qmax, qmax]`` (integer qmax) stays inside: the clip pass is skipped.
    """
    qmax = qmax_for_bits(bits)
    scale = float(np.ldexp(1.0, -int(e)))
    if _F32_TINY <= scale <= _F32_MAX:
        v = np.multiply(x, np.float32(scale), dtype=np.float32)
    else:  # 2^-e outside the float32 range: scale in float64 (exact), then back
        v = (x.astype(np.float64) * scale).astype(np.float32)
    np.rint(v, out=v)
    if not in_range:
        np.clip(v, -qmax, qmax, out=v)
    return v.astype(int_dtype_for_bits(bits))


#: random bits per element in the stochastic rounding of errors (QuantGrad): ``r = U / 2^16``
ERROR_NOISE_BITS = 16


def uniform16(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform integers ``U`` in ``[0, 2^16)`` (uint16), four per raw 64-bit word of the generator."""
    n = math.prod(shape)
    return rng.bit_generator.random_raw((n + 3) // 4).view(np.uint16)[:n].reshape(shape)


def stochastic_round_error(x: np.ndarray, e: int, bits: int, rng: np.random.Generator) -> np.ndarray:
    """``floor(x / 2^e + U / 2^16)``, ``U`` from :func:`uniform16`, for ``|x / 2^e| <= qmax`` (``e``
    from max|x|), in the int dtype of ``bits`` (at most 16).

    Exact integer arithmetic: ``w = x * 2^(16-e)`` is a power-of-two scaling (in float32 when
    ``0 <= 16-e <= 127``: it scales up, so nothing underflows and ``2^(16-e)`` is a float32;
    otherwise in float64, whose range keeps every float32 input exact), and for integer ``U``
    ``floor((w + U) / 2^16) = (floor(w) + U) >> 16`` (an arithmetic shift is a floor division).
    ``|floor(w) + U| <= qmax * 2^16 + 2^16 - 1 <= 2^31 - 1``, so int32 holds it; the result lies in
    ``[-qmax, qmax]`` (no clip). ``E[q] = x / 2^e`` up to 2^-16 of a last bit: far below the
    error of the ``bits``-bit value itself, with a quarter of the random bits of the 2^-24 grid
    that parameter updates use (:func:`uniform_bits`).
    """
    if bits > 16:
        raise ValueError(f"stochastic_round_error: at most 16 bits, got {bits}")
    shift = ERROR_NOISE_BITS - int(e)
    if 0 <= shift <= 127:
        w = np.multiply(x, np.float32(math.ldexp(1.0, shift)), dtype=np.float32)
    else:
        w = np.multiply(x, math.ldexp(1.0, shift), dtype=np.float64)
    np.floor(w, out=w)
    t = w.astype(np.int32)
    np.add(t, uniform16(rng, x.shape), out=t)
    np.right_shift(t, ERROR_NOISE_BITS, out=t)
    return t.astype(int_dtype_for_bits(bits))


def _absmax(x: np.ndarray) -> float:
    return max(float(x.max()), -float(x.min())) if x.size else 0.0


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
    q = quantize_nearest(x, e, bits, in_range=ctx.training)
    return q, np.array(e, np.int32), np.array(new, np.float32)


@register("QuantGrad")
def quant_grad(ctx: KernelContext, node: Node, g: np.ndarray) -> tuple:
    """Error (gradient) -> (q, e) at grad bits: stochastic rounding on a 2^-16 noise grid
    (:func:`stochastic_round_error`) unless configured nearest."""
    bits = int(node.attrs["bits"])
    m = _absmax(g)
    if not np.isfinite(m):
        raise FloatingPointError(f"gradient {node.inputs[0].name!r} contains NaN/Inf; lower the learning rate")
    e = choose_exponent(m, bits)
    if node.attrs.get("rounding", "stochastic") == "nearest":
        q = quantize_nearest(g, e, bits, in_range=True)
    else:
        q = stochastic_round_error(g, e, bits, ctx.rng)
    return q, np.array(e, np.int32)


@register("Dequantize")
def dequantize(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray,
               bias: np.ndarray | None = None) -> np.ndarray:
    """alpha * q * 2^e (+ beta * bias, broadcast along ``bias_axis`` or numpy-style) in float32."""
    alpha = float(node.attrs.get("alpha", 1.0))
    # one pass: the int -> float32 cast happens inside the multiply (same values as cast, then scale)
    y = np.multiply(q, np.float32(alpha * np.ldexp(1.0, int(e))), dtype=np.float32)
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

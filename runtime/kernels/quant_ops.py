"""Kernels of the quantisation ops: QuantAct, QuantGrad, Dequantize, FakeQuant (QAT), and the
stochastic roundings the rct kernels share.

Needs: the node's random words (``KernelContext.words``, docs/rng.md) for stochastic rounding.
Leaves: the roundings take their noise from the top bits of those words only: 16 bits per
element for errors (QuantGrad), 24 for parameter updates (:func:`stochastic_floor`).
"""

from __future__ import annotations

import math

import numpy as np

from rctc.fixedpoint import choose_exponent, int_dtype_for_bits, qmax_for_bits
from rctc.ir import Node
from rctc.rng import uniform_bits
from rctc.runtime.kernels.registry import KernelContext, register


def pow2(e: int, dtype: type = np.float32) -> np.floating:
    return dtype(np.ldexp(1.0, int(e)))


_TWO24 = float(1 << 24)
def _pow2(k: int) -> float:
    """``2.0 ** k`` as ``np.ldexp(1.0, k)`` gives it (inf past the float64 range), without numpy's
    per-call cost on a Python scalar."""
    try:
        return math.ldexp(1.0, k)
    except OverflowError:
        return math.inf


_F32_TINY = float(np.finfo(np.float32).tiny)
_F32_MAX = float(np.finfo(np.float32).max)


#: random bits per element in the stochastic rounding of parameter updates: ``r = U / 2^24``
UPDATE_NOISE_BITS = 24


def stochastic_floor(v: np.ndarray, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(floor(v), U < frac(v) * 2^24)`` with ``U = words >> 8``, the top 24 bits of one uint32
    word per element (:func:`rctc.rng.uniform_bits`): the parts of the stochastic rounding
    ``floor(v) + [U < frac(v) * 2^24]``, which rounds up with probability
    ``ceil(frac(v) * 2^24) / 2^24`` (``frac(v)`` itself when it lies on the 2^-24 grid, at most
    2^-24 above it otherwise), so ``E[result] = v`` up to 2^-24 of a last bit.

    ``frac(v) = v - floor(v)`` is formed in v's dtype (exact, except that a negative ``v`` just
    below an integer rounds ``v + 1`` by at most half an ulp of 1, 2^-24 in float32); scaling it
    by 2^24 is exact and ``U < 2^24`` is exact in float32, so the comparison adds no rounding.
    ``U`` is read as int32 (the same values), whose conversion to float vectorises, unlike uint32's.
    """
    fl = np.floor(v)
    frac = np.subtract(v, fl)
    frac *= frac.dtype.type(_TWO24)
    u = uniform_bits(words.reshape(v.shape), UPDATE_NOISE_BITS)
    return fl, np.less(u.view(np.int32), frac)


def round_array(v: np.ndarray, rounding: str, words: np.ndarray | None) -> np.ndarray:
    """Nearest (half to even) or stochastic rounding on the 2^-24 grid (:func:`stochastic_floor`,
    one word per element; ``words`` unused, may be None, for nearest). Returns a new float array
    of ``v``'s dtype."""
    if rounding == "nearest":
        return np.rint(v)
    if words is None:
        raise ValueError("stochastic rounding needs one random word per element")
    fl, up = stochastic_floor(v, words)
    fl += up
    return fl


def quantize_nearest(x: np.ndarray, e: int, bits: int, in_range: bool = False) -> np.ndarray:
    """``clip(rint(x / 2^e))`` (half to even) in the int dtype of ``bits``.

    ``in_range``: ``e`` was chosen from max|x| (:func:`choose_exponent`), so ``|x / 2^e| <= qmax``
    and rint of a value in ``[-qmax, qmax]`` (integer qmax) stays inside: the clip pass is skipped.
    """
    qmax = qmax_for_bits(bits)
    scale = _pow2(-int(e))
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


def stochastic_round_error(x: np.ndarray, e: int, bits: int, words: np.ndarray) -> np.ndarray:
    """``floor(x / 2^e + U / 2^16)``, ``U = words >> 16`` (the top 16 bits of one uint32 word per
    element, :func:`rctc.rng.uniform_bits`), for ``|x / 2^e| <= qmax`` (``e``
    from max|x|), in the int dtype of ``bits`` (at most 16).

    Exact integer arithmetic: ``w = x * 2^(16-e)`` is a power-of-two scaling (in float32 when
    ``0 <= 16-e <= 127``: it scales up, so nothing underflows and ``2^(16-e)`` is a float32;
    otherwise in float64, whose range keeps every float32 input exact), and for integer ``U``
    ``floor((w + U) / 2^16) = (floor(w) + U) >> 16`` (an arithmetic shift is a floor division).
    ``|floor(w) + U| <= qmax * 2^16 + 2^16 - 1 <= 2^31 - 1``, so int32 holds it; the result lies in
    ``[-qmax, qmax]`` (no clip). ``E[q] = x / 2^e`` up to 2^-16 of a last bit: far below the
    error of the ``bits``-bit value itself.
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
    np.add(t, uniform_bits(words.reshape(x.shape), ERROR_NOISE_BITS).view(np.int32), out=t)
    np.right_shift(t, ERROR_NOISE_BITS, out=t)
    return t.astype(int_dtype_for_bits(bits))


def _absmax(x: np.ndarray) -> float:
    return max(float(x.max()), -float(x.min())) if x.size else 0.0


@register("QuantAct")
def quant_act(ctx: KernelContext, node: Node, x: np.ndarray, amax: np.ndarray) -> tuple:
    """Activation -> (q, e, new running max). Training: e from the batch max; inference: from the running max."""
    bits = int(node.attrs["bits"])
    m = _absmax(x)
    if not math.isfinite(m):
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
    if not math.isfinite(m):
        raise FloatingPointError(f"gradient {node.inputs[0].name!r} contains NaN/Inf; lower the learning rate")
    e = choose_exponent(m, bits)
    if node.attrs.get("rounding", "stochastic") == "nearest":
        q = quantize_nearest(g, e, bits, in_range=True)
    else:
        q = stochastic_round_error(g, e, bits, ctx.words(node, g.shape))
    return q, np.array(e, np.int32)


@register("Dequantize")
def dequantize(ctx: KernelContext, node: Node, q: np.ndarray, e: np.ndarray,
               bias: np.ndarray | None = None) -> np.ndarray:
    """alpha * q * 2^e (+ beta * bias, broadcast along ``bias_axis`` or numpy-style) in float32."""
    alpha = float(node.attrs.get("alpha", 1.0))
    # one pass: the int -> float32 cast happens inside the multiply (same values as cast, then scale)
    y = np.multiply(q, np.float32(alpha * _pow2(int(e))), dtype=np.float32)
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

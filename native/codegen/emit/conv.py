"""C emitters of the integer 2-D convolutions: IntConv, IntConvGradInput, IntConvGradWeight and
the conv weight-gradient product of fused updates (rctc_im2col_s8 / rctc_col2im_* and the
dispatched rctc_gemm_* of rctc_kernels.h).

Needs: NCHW operands, int8 activations / errors (the im2col kernel is int8), int8 or int16
weights, 2-D windows with any stride, pads, dilation and group (depthwise included).
Leaves: per image one im2col over all channels (group ``g``'s rows are the contiguous block
``[g * C/G * kk, (g + 1) * C/G * kk)``), then one GEMM per group; where the column matrix of one
image (int8 columns; the data gradient's int32 / int64 ones) exceeds ``TILE_BYTES`` it is built
one band of output rows at a time (:func:`rows_per_tile`; the band's im2col / col2im is the
image's with ``pad_t`` lowered by the band's first row times the stride), so the scratch holds
one band: the same sums (each output element a whole sum; the weight gradient and col2im add
exact, or modulo 2^32, partial sums, which any order gives alike); 1x1 / stride 1 / no-pad windows
use the image itself as the columns; depthwise windows (group == C == M) run rctc_dwconv_* (a
GEMM per channel would have one row). Every sum is the exact integer the numpy kernels compute
(int32 accumulators wrap modulo 2^32 only where the compile-time bound already fits int32).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rctc.analysis.arena import align
from rctc.ir import Node, Value
from rctc.native.codegen.emit import (
    Emit,
    ctype,
    emitter,
    numel,
    refuse,
    sname,
    weight_grad_product,
    work_offset,
)
from rctc.native.codegen.emit.products import gemm_name
from rctc.ops.geometry import window_params

#: scratch bytes above which a column matrix is built one band of output rows at a time
TILE_BYTES = 16384


@dataclass(frozen=True)
class Conv2d:
    """One 2-D convolution: batch, channels, image, kernel, window and output size."""

    n: int
    c: int
    h: int
    w: int
    m: int
    group: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pl: int
    dh: int
    dw: int
    oh: int
    ow: int

    @property
    def cg(self) -> int:
        return self.c // self.group

    @property
    def mg(self) -> int:
        return self.m // self.group

    @property
    def kg(self) -> int:
        """Column rows of one group (``C/G * kh * kw``), the forward contraction length."""
        return self.cg * self.kh * self.kw

    @property
    def p(self) -> int:
        return self.oh * self.ow

    @property
    def hw(self) -> int:
        return self.h * self.w

    @property
    def depthwise(self) -> bool:
        """One filter per channel (group == C == M): rctc_dwconv_* instead of im2col + GEMM."""
        return self.group == self.c == self.m and self.group > 1

    @property
    def pointwise(self) -> bool:
        """1x1 kernel, stride 1, no pads: the image is its own column matrix."""
        return (self.kh, self.kw, self.sh, self.sw, self.pt, self.pl) == (1, 1, 1, 1, 0, 0) \
            and (self.oh, self.ow) == (self.h, self.w) and not self.depthwise

    def struct(self) -> str:
        """``static const rctc_conv2d g`` over all channels of one image."""
        return (f"static const rctc_conv2d g = {{{self.c}, {self.h}, {self.w}, {self.kh}, {self.kw}, {self.sh}, "
                f"{self.sw}, {self.pt}, {self.pl}, {self.dh}, {self.dw}, {self.oh}, {self.ow}}};")


def geometry(node: Node, attrs: dict, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
             y_shape: tuple[int, ...]) -> Conv2d:
    """The convolution of ``x_shape`` by ``w_shape`` giving ``y_shape`` (refused unless 2-D NCHW
    and consistent with the window attributes)."""
    if len(x_shape) != 4 or len(w_shape) != 4 or len(y_shape) != 4:
        raise refuse(node, f"convolves a {len(x_shape) - 2}-D image (only 2-D NCHW is mapped)")
    group = int(attrs.get("group", 1))
    kernel = [int(v) for v in attrs.get("kernel_shape") or w_shape[2:]]
    strides, dilations, pads, outs = window_params(attrs, x_shape, kernel)
    if tuple(outs) != tuple(y_shape[2:]) or y_shape[:2] != (x_shape[0], w_shape[0]) \
            or w_shape[1] * group != x_shape[1] or w_shape[0] % group:
        raise refuse(node, f"has inconsistent shapes x {x_shape}, w {w_shape}, y {y_shape} for group {group}")
    n, c, h, w = x_shape
    return Conv2d(n, c, h, w, int(w_shape[0]), group, kernel[0], kernel[1], strides[0], strides[1], pads[0],
                  pads[1], dilations[0], dilations[1], int(y_shape[2]), int(y_shape[3]))


def _int8(node: Node, v: Value, role: str) -> None:
    if np.dtype(v.dtype) != np.int8:
        raise refuse(node, f"has a {np.dtype(v.dtype)} {role} (the im2col kernel is int8)")


def rows_per_tile(g: Conv2d, itemsize: int, limit: int) -> int:
    """Output rows of one band: all of them when the image's columns fit ``limit`` bytes."""
    row = g.c * g.kh * g.kw * g.ow * itemsize
    return g.oh if row * g.oh <= limit else max(1, limit // row)


def _limit(cx: Emit, share: int = 1) -> int:
    """Bytes one band may use: ``TILE_BYTES`` (``cx.band`` when the generator was given one), or
    its ``share`` of the generator's budget."""
    return max(getattr(cx, "band", TILE_BYTES), getattr(cx, "budget", 0) // share)


def _banded(g: Conv2d, rows: int, body: list[str]) -> list[str]:
    """``body`` once per band of ``rows`` output rows (``r0`` its first, ``t`` its geometry,
    ``tp`` its columns), or once with the whole image (``r0`` 0, ``t`` = ``g``) when one band."""
    if rows >= g.oh:
        return ["{", "    const int r0 = 0;", "    const rctc_conv2d t = g;", f"    const int tp = {g.p};",
                *[f"    {s}" for s in body], "}"]
    return [f"for (int r0 = 0; r0 < {g.oh}; r0 += {rows}) {{",
            "    rctc_conv2d t = g;",
            f"    t.oh = {g.oh} - r0 < {rows} ? {g.oh} - r0 : {rows};",
            "    t.pad_t = g.pad_t - r0 * g.stride_h;",
            f"    const int tp = t.oh * {g.ow};",
            *[f"    {s}" for s in body], "}"]


def _columns(g: Conv2d, cx: Emit, x: Value, offset: int, gemms: list[str], share: int = 1) -> list[str]:
    """The lines of one image ``n``: its column matrix ``cols`` (in scratch from byte ``offset``
    on, one band at a time, or the image itself for a pointwise window), then ``gemms``, which
    read ``cols`` (``tp`` columns from output column ``r0 * ow``)."""
    image = f"{cx.ptr(x)} + (ptrdiff_t)n * {g.c * g.hw}"
    if g.pointwise:
        return [f"const int8_t *cols = {image};", "const int r0 = 0;", f"const int tp = {g.p};", *gemms]
    rows = rows_per_tile(g, 1, _limit(cx, share))
    cols = f"(int8_t *){cx.scratch(g.c * g.kh * g.kw * rows * g.ow, offset)}"
    return _banded(g, rows, [f"int8_t *cols = {cols};", f"rctc_im2col_s8(&t, {image}, cols, tp);", *gemms])


def _dw_suffix(node: Node, w: Value, acc: Value) -> str:
    """``s8s32`` ... of the rctc_dwconv_* kernel for these weights and accumulator."""
    key = f"{sname(w)}{sname(acc)}"
    if key not in ("s8s32", "s8s64", "s16s32", "s16s64"):
        raise refuse(node, f"needs a {sname(w)} x {sname(acc)} depthwise kernel, which the library lacks")
    return key


def _dw_bytes(g: Conv2d, acc: Value) -> int:
    """Scratch bytes of rctc_dwconv_* (the stride-1 padded grid of one channel and its sums)."""
    hh, ww = max(g.oh, g.h), max(g.ow, g.w)
    hp, wp = hh + (g.kh - 1) * g.dh, ww + (g.kw - 1) * g.dw
    return np.dtype(acc.dtype).itemsize * hh * wp + hp * wp


def _dw_work(g: Conv2d, cx: Emit, acc: Value) -> str:
    """Scratch for rctc_dwconv_* (:func:`_dw_bytes`)."""
    return cx.scratch(_dw_bytes(g, acc))


#: most per-thread column slots a node split over images keeps in scratch
MAX_SLOTS = 8


def _image_tasks(g: Conv2d, cx: Emit, slot_bytes: int, image: Callable[[str], list[str]], offset: int = 0,
                 after: Callable[[str], list[str]] | None = None) -> list[str] | None:
    """The node split over its images on the step's threads, or None (serial) unless the
    generator allows tasks and the scratch budget holds two or more slots of ``slot_bytes``.

    ``image(slot)`` gives the lines of image ``n`` with its own scratch at ``slot`` (a C pointer
    expression; GEMMs inside run on one thread). The images are cut into ``un`` = the slot count
    units, unit ``u`` images ``[B u / un, B (u + 1) / un)`` with slot ``u``, which the step's threads
    take from rctc_parallel_for's queue (a thread the OS deschedules holds up one unit, not half
    the node); the cut does not depend on the thread count and every image is computed whole by
    one thread with the same code, so neither do the bits. The slots start at scratch byte
    ``offset``; ``after(slot_of_u)`` gives lines run after the threads (``un`` and the expression
    ``slot_of_u`` of slot ``u``'s address in scope)."""
    budget = getattr(cx, "budget", 0) - offset
    slots = min(MAX_SLOTS, g.n, budget // slot_bytes if slot_bytes else MAX_SLOTS)
    if not getattr(cx, "tasks", False) or slots < 2:
        return None
    base = cx.scratch(slots * slot_bytes, offset) if slot_bytes else "rctc_scratch"
    head = [] if g.pointwise else [g.struct(), "(void)g;"]
    name = cx.helper("void *ctx, int u0, int u1", [
        "const int un = *(const int *)ctx;", *head,
        "for (int u = u0; u < u1; ++u) {",
        f"    unsigned char *slot = {base} + (size_t)u * {slot_bytes}u;",
        "    (void)slot;",
        f"    for (int n = {g.n} * u / un; n < {g.n} * (u + 1) / un; ++n) {{",
        *[f"        {ln}" for ln in image("slot")], "    }", "}"])
    return [f"int un = {slots};",
            f"rctc_parallel_for(un, 1, {cx.threads} < un ? {cx.threads} : un, {name}, &un);",
            *(after(f"({base} + (size_t)u * {slot_bytes}u)") if after is not None else [])]


def _per_image(g: Conv2d, body: list[str]) -> list[str]:
    """``body`` in a loop over the images, after the geometry (which a pointwise window never reads)."""
    head = [] if g.pointwise else [g.struct()]
    return [*head, f"for (int n = 0; n < {g.n}; ++n) {{", *[f"    {s}" for s in body], "}"]


@emitter("IntConv")
def int_conv(node: Node, cx: Emit) -> list[str]:
    """Y[n, g] (M/G x P) = W_g (M/G x C/G*kk) cols_g: one GEMM per (image, group)."""
    x, ex, w, ew = node.inputs
    acc, acc_e = node.outputs
    _int8(node, x, "input")
    g = geometry(node, node.attrs, tuple(x.shape), tuple(w.shape), tuple(acc.shape))
    if g.depthwise:
        def dw_one(work: str) -> list[str]:
            return [f"rctc_dwconv_{_dw_suffix(node, w, acc)}(&g, {cx.ptr(x)} + (ptrdiff_t)n * {g.c * g.hw}, "
                    f"{cx.ptr(w)}, {work}, {cx.ptr(acc)} + (ptrdiff_t)n * {g.m * g.p});"]

        split = _image_tasks(g, cx, align(_dw_bytes(g, acc)), dw_one)
        return [*(split if split is not None else _per_image(g, dw_one(_dw_work(g, cx, acc)))),
                f"{cx.scalar(acc_e)} = {cx.scalar(ex)} + {cx.scalar(ew)};"]
    fn = gemm_name(node, w, x, sname(acc))

    def gemms(threads: str) -> list[str]:
        return [f"for (int k = 0; k < {g.group}; ++k)",
                f"    {fn}({g.mg}, tp, {g.kg}, {cx.ptr(w)} + (ptrdiff_t)k * {g.mg * g.kg}, {g.kg}, 1, "
                f"cols + (ptrdiff_t)k * {g.kg} * tp, tp, 1, "
                f"{cx.ptr(acc)} + (ptrdiff_t)n * {g.m * g.p} + (ptrdiff_t)k * {g.mg * g.p} + (ptrdiff_t)r0 * {g.ow}, "
                f"{g.p}, 1, 0, {threads});"]

    done = f"{cx.scalar(acc_e)} = {cx.scalar(ex)} + {cx.scalar(ew)};"
    image = f"{cx.ptr(x)} + (ptrdiff_t)n * {g.c * g.hw}"

    def one(slot: str) -> list[str]:
        if g.pointwise:
            return [f"const int8_t *cols = {image};", "const int r0 = 0;", f"const int tp = {g.p};", *gemms("1")]
        return [f"int8_t *cols = (int8_t *)({slot});", "const int r0 = 0;", "const rctc_conv2d t = g;",
                f"const int tp = {g.p};", f"rctc_im2col_s8(&t, {image}, cols, tp);", *gemms("1")]

    split = _image_tasks(g, cx, 0 if g.pointwise else align(g.kg * g.group * g.p), one)
    if split is not None:
        return [*split, done]
    return [*_per_image(g, _columns(g, cx, x, 0, gemms(cx.threads))), done]


@emitter("IntConvGradInput")
def int_conv_grad_input(node: Node, cx: Emit) -> list[str]:
    """dcols_g (C/G*kk x P) = W_g^T dY[n, g]; dX[n] = col2im(dcols) (the GEMM writes dX directly
    for a pointwise window)."""
    dy, edy, w, ew = node.inputs
    dx, dx_e = node.outputs
    if dx.name in getattr(cx, "streamed", ()):
        return ["/* streamed: formed a channel block at a time by its Requantize (conv_stream.py) */"]
    _int8(node, dy, "error")
    x_shape = tuple(int(s) for s in node.attrs["input_shape"])
    if x_shape != tuple(dx.shape):
        raise refuse(node, f"has input_shape {x_shape} but an output of shape {dx.shape}")
    g = geometry(node, node.attrs, x_shape, tuple(w.shape), tuple(dy.shape))
    acc = sname(dx)
    if acc not in ("s32", "s64"):
        raise refuse(node, f"accumulates in {np.dtype(dx.dtype)} (int32 or int64 is mapped)")
    image = f"{cx.ptr(dx)} + (ptrdiff_t)n * {g.c * g.hw}"
    if g.depthwise:
        def dw_one(work: str) -> list[str]:
            return [f"rctc_dwconv_grad_input_{_dw_suffix(node, w, dx)}(&g, {cx.ptr(dy)} + (ptrdiff_t)n"
                    f" * {g.m * g.p}, {cx.ptr(w)}, {work}, {image});"]

        split = _image_tasks(g, cx, align(_dw_bytes(g, dx)), dw_one)
        return [*(split if split is not None else _per_image(g, dw_one(_dw_work(g, cx, dx)))),
                f"{cx.scalar(dx_e)} = {cx.scalar(edy)} + {cx.scalar(ew)};"]
    fn = gemm_name(node, w, dy, acc)

    def gemm_on(threads: str) -> str:
        return (f"    {fn}({g.kg}, tp, {g.mg}, {cx.ptr(w)} + (ptrdiff_t)k * {g.mg * g.kg}, 1, {g.kg}, "
                f"{cx.ptr(dy)} + (ptrdiff_t)n * {g.m * g.p} + (ptrdiff_t)k * {g.mg * g.p} + (ptrdiff_t)r0 * {g.ow}, "
                f"{g.p}, 1, dcols + (ptrdiff_t)k * {g.kg} * tp, tp, 1, 0, {threads});")

    tr = _grad_input_transposed(node, cx, g, dy, w, dx, fn)
    if tr is not None:
        return [*tr, f"{cx.scalar(dx_e)} = {cx.scalar(edy)} + {cx.scalar(ew)};"]
    gemm = gemm_on(cx.threads)
    item = np.dtype(dx.dtype).itemsize

    def one(slot: str) -> list[str]:
        if g.pointwise:
            return [f"{ctype(dx)} *dcols = {image};", "const int r0 = 0;", f"const int tp = {g.p};",
                    f"for (int k = 0; k < {g.group}; ++k)", gemm_on("1")]
        return [f"memset({image}, 0, {item * g.c * g.hw}u);", f"{ctype(dx)} *dcols = ({ctype(dx)} *)({slot});",
                "const int r0 = 0;", "const rctc_conv2d t = g;", f"const int tp = {g.p};",
                f"for (int k = 0; k < {g.group}; ++k)", gemm_on("1"), f"rctc_col2im_{acc}_add(&t, dcols, tp, {image});"]

    split = _image_tasks(g, cx, 0 if g.pointwise else align(item * g.kg * g.group * g.p), one)
    if split is not None:
        return [*split, f"{cx.scalar(dx_e)} = {cx.scalar(edy)} + {cx.scalar(ew)};"]
    if g.pointwise:
        body = [f"{ctype(dx)} *dcols = {image};", "const int r0 = 0;", f"const int tp = {g.p};",
                f"for (int k = 0; k < {g.group}; ++k)", gemm]
    else:
        rows = rows_per_tile(g, np.dtype(dx.dtype).itemsize, _limit(cx))
        nbytes = np.dtype(dx.dtype).itemsize * g.c * g.kh * g.kw * rows * g.ow
        body = [f"memset({image}, 0, {np.dtype(dx.dtype).itemsize * g.c * g.hw}u);",
                *_banded(g, rows, [f"{ctype(dx)} *dcols = ({ctype(dx)} *){cx.scratch(nbytes)};",
                                   f"for (int k = 0; k < {g.group}; ++k)", gemm,
                                   f"rctc_col2im_{acc}_add(&t, dcols, tp, {image});"])]
    return [*_per_image(g, body), f"{cx.scalar(dx_e)} = {cx.scalar(edy)} + {cx.scalar(ew)};"]


def _grad_input_transposed(node: Node, cx: Emit, g: Conv2d, dy: Value, w: Value, dx: Value,
                           fn: str) -> list[str] | None:
    """The data gradient of a stride-1, group-1 window as the forward convolution of dY by the
    flipped, transposed filters (host steps only, where the scratch holds those filters and one
    image's columns of dY): per image im2col(dY) with the adjoint pads ``(k - 1) d - pad``, then
    one GEMM ``dX_n (C x HW) = W' (C x M kk) cols`` straight into dX: the same exact sums (s32
    modulo 2^32) as the columns-then-col2im path, without its int32 column matrix and adds.
    None where it does not apply (strides, groups, a pad past ``(k - 1) d``, the budget)."""
    if not getattr(cx, "tasks", False) or g.group != 1 or g.pointwise or (g.sh, g.sw) != (1, 1):
        return None
    pe_t, pe_l = (g.kh - 1) * g.dh - g.pt, (g.kw - 1) * g.dw - g.pl
    pe_b, pe_r = g.h + g.pt - g.oh, g.w + g.pl - g.ow  # (k - 1) d - the end pads
    if min(pe_t, pe_l, pe_b, pe_r) < 0:
        return None
    kk, wt_c = g.kh * g.kw, ctype(w)
    wt_bytes = align(np.dtype(w.dtype).itemsize * g.c * g.m * kk)
    cols_bytes = align(g.m * kk * g.hw)
    if wt_bytes + cols_bytes > getattr(cx, "budget", 0):
        return None
    wt = f"(({wt_c} *)({cx.scratch(wt_bytes)}))"
    image = f"{cx.ptr(dx)} + (ptrdiff_t)n * {g.c * g.hw}"
    geom = (f"static const rctc_conv2d gt = {{{g.m}, {g.oh}, {g.ow}, {g.kh}, {g.kw}, 1, 1, {pe_t}, {pe_l}, {g.dh}, "
            f"{g.dw}, {g.h}, {g.w}}};")

    def one(slot: str, threads: str = "1") -> list[str]:
        return [geom, f"int8_t *cols = (int8_t *)({slot});",
                f"rctc_im2col_s8(&gt, {cx.ptr(dy)} + (ptrdiff_t)n * {g.m * g.p}, cols, {g.hw});",
                f"{fn}({g.c}, {g.hw}, {g.m * kk}, {wt}, {g.m * kk}, 1, cols, {g.hw}, 1, {image}, {g.hw}, 1, 0, "
                f"{threads});"]

    build = [f"const {wt_c} *wsrc = {cx.ptr(w)};",  # W'[c][m][kk - 1 - t] = W[m][c][t]
             f"for (int m = 0; m < {g.m}; ++m)", f"    for (int c = 0; c < {g.c}; ++c)",
             f"        for (int t = 0; t < {kk}; ++t)",
             f"            {wt}[((ptrdiff_t)c * {g.m} + m) * {kk} + ({kk - 1} - t)] = "
             f"wsrc[((ptrdiff_t)m * {g.c} + c) * {kk} + t];"]
    split = _image_tasks(g, cx, cols_bytes, one, wt_bytes)
    if split is not None:
        return [*build, *split]
    return [*build, f"for (int n = 0; n < {g.n}; ++n) {{",
            *[f"    {ln}" for ln in one(f"{cx.scratch(cols_bytes, wt_bytes)}", cx.threads)], "}"]


def _grad_weight(node: Node, cx: Emit, g: Conv2d, dy: Value, x: Value, out: str, acc: str,
                 offset: int, filters: tuple[str, str] | None = None) -> list[str]:
    """dW_g (M/G x C/G*kk) = sum_n dY[n, g] cols_g^T into ``out`` (an ``acc``-typed pointer);
    ``filters`` (first, count: C expressions; group 1 only) makes only those rows of dW, at ``out``."""
    _int8(node, dy, "error")
    _int8(node, x, "input")
    if g.depthwise and acc == "s64" and filters is None:
        split = _grad_weight_tasks(node, cx, g, dy, x, out, acc, offset, "")
        if split is not None:
            return split
        return _per_image(g, [f"rctc_dwconv_grad_weight_s64(&g, {cx.ptr(dy)} + (ptrdiff_t)n * {g.m * g.p}, "
                              f"{cx.ptr(x)} + (ptrdiff_t)n * {g.c * g.hw}, {out}, n > 0);"])
    fn = gemm_name(node, dy, x, acc)
    first, count = filters if filters is not None else ("0", str(g.mg))
    if filters is not None and g.group != 1:
        raise refuse(node, "makes its weight gradient a block of filters at a time with groups")
    if filters is None and not g.depthwise:
        split = _grad_weight_tasks(node, cx, g, dy, x, out, acc, offset, fn)
        if split is not None:
            return split
    gemms = [f"for (int k = 0; k < {g.group}; ++k)",
             f"    {fn}({count}, {g.kg}, tp, {cx.ptr(dy)} + (ptrdiff_t)n * {g.m * g.p} + (ptrdiff_t)k * "
             f"{g.mg * g.p} + (ptrdiff_t)({first}) * {g.p} + (ptrdiff_t)r0 * {g.ow}, {g.p}, 1, "
             f"cols + (ptrdiff_t)k * {g.kg} * tp, 1, tp, "
             f"{out} + (ptrdiff_t)k * {g.mg * g.kg}, {g.kg}, 1, n > 0 || r0 > 0, {cx.threads});"]
    return _per_image(g, _columns(g, cx, x, offset, gemms, 1 if filters is None else 2))


def _grad_weight_tasks(node: Node, cx: Emit, g: Conv2d, dy: Value, x: Value, out: str, acc: str, offset: int,
                       fn: str) -> list[str] | None:
    """The whole weight gradient split over images (:func:`_image_tasks`): unit 0 sums its
    images into ``out``, unit u > 0 into its slot's partial gradient, which are then added to
    ``out`` in slot order (exact integer sums, or sums modulo 2^32 for s32, in any grouping give
    the same bits)."""
    ct = "int64_t" if acc == "s64" else "int32_t"
    total = g.m * g.kg
    cols_bytes = 0 if g.pointwise or g.depthwise else align(g.kg * g.group * g.p)
    slot_bytes = cols_bytes + align((8 if acc == "s64" else 4) * total)
    image = f"{cx.ptr(x)} + (ptrdiff_t)n * {g.c * g.hw}"

    def one(slot: str) -> list[str]:
        dst = f"(u == 0 ? {out} : ({ct} *)({slot} + {cols_bytes}u))"
        if g.depthwise:  # rctc_dwconv_grad_weight_s64 (no columns)
            return [f"rctc_dwconv_grad_weight_s64(&g, {cx.ptr(dy)} + (ptrdiff_t)n * {g.m * g.p}, {image}, {dst}, "
                    f"n != {g.n} * u / un);"]
        gemm = [f"{ct} *dw = {dst};", f"const int first = n == {g.n} * u / un;",
                f"for (int k = 0; k < {g.group}; ++k)",
                f"    {fn}({g.mg}, {g.kg}, tp, {cx.ptr(dy)} + (ptrdiff_t)n * {g.m * g.p} + (ptrdiff_t)k * "
                f"{g.mg * g.p}, {g.p}, 1, cols + (ptrdiff_t)k * {g.kg} * tp, 1, tp, "
                f"dw + (ptrdiff_t)k * {g.mg * g.kg}, {g.kg}, 1, !first, 1);"]
        if g.pointwise:
            return [f"const int8_t *cols = {image};", f"const int tp = {g.p};", *gemm]
        return [f"int8_t *cols = (int8_t *)({slot});", "const rctc_conv2d t = g;", f"const int tp = {g.p};",
                f"rctc_im2col_s8(&t, {image}, cols, tp);", *gemm]

    def reduce(slot_of_u: str) -> list[str]:
        return ["for (int u = 1; u < un; ++u) {",
                f"    const {ct} *part = (const {ct} *)({slot_of_u} + {cols_bytes}u);",
                f"    for (size_t i = 0; i < {total}u; ++i) {out}[i] = ({ct})((uint{ct[3:5]}_t){out}[i] + "
                f"(uint{ct[3:5]}_t)part[i]);", "}"]

    split = _image_tasks(g, cx, slot_bytes, one, offset, reduce)
    return None if split is None else ["{", *[f"    {ln}" for ln in split], "}"]


@emitter("IntConvGradWeight")
def int_conv_grad_weight(node: Node, cx: Emit) -> list[str]:
    dy, edy, x, ex = node.inputs
    dw, dw_e = node.outputs
    w_shape = tuple(int(s) for s in node.attrs["weight_shape"])
    if w_shape != tuple(dw.shape) or sname(dw) not in ("s32", "s64"):
        raise refuse(node, f"writes a {np.dtype(dw.dtype)} {dw.shape} gradient for weight_shape {w_shape}")
    g = geometry(node, node.attrs, tuple(x.shape), w_shape, tuple(dy.shape))
    return [*_grad_weight(node, cx, g, dy, x, cx.ptr(dw), sname(dw), 0),
            f"{cx.scalar(dw_e)} = {cx.scalar(edy)} + {cx.scalar(ex)};"]


def _fused_geometry(node: Node) -> Conv2d:
    """The conv of a fused update's weight-gradient product (``product_*`` window attrs)."""
    q, dy, x = node.inputs[0], node.inputs[3], node.inputs[5]
    attrs = {k[len("product_"):]: v for k, v in node.attrs.items() if k.startswith("product_")}
    perm = [int(p) for p in node.attrs.get("transpose") or ()]
    if perm and perm != list(range(len(perm))):
        raise refuse(node, f"transposes its conv weight gradient by {perm}")
    w_shape = tuple(int(s) for s in attrs.get("weight_shape") or q.shape)
    if math.prod(w_shape) != numel(q):
        raise refuse(node, f"makes a {w_shape} product for a parameter of shape {q.shape}")
    return geometry(node, attrs, tuple(x.shape), w_shape, tuple(dy.shape))


@weight_grad_product("IntConvGradWeight")
def conv_weight_grad(node: Node, cx: Emit, acc: str) -> list[str]:
    """The fused update's conv weight gradient (``product_*`` window attrs), exact int64, in the
    parameter's layout (a ``transpose`` other than the identity is refused)."""
    g = _fused_geometry(node)
    return _grad_weight(node, cx, g, node.inputs[3], node.inputs[5], acc, "s64", work_offset(node))


def filter_rows(node: Node) -> tuple[int, int] | None:
    """(filters, elements per filter) of a fused update's conv product that can be made a block
    of filters at a time (:func:`conv_weight_grad_filters`: group 1, not depthwise), else None."""
    g = _fused_geometry(node)
    return (g.m, g.kg) if g.group == 1 else None


def conv_weight_grad_filters(node: Node, cx: Emit, acc: str, first: str, count: str, offset: int) -> list[str]:
    """Rows ``first`` .. ``first + count - 1`` of the fused update's conv weight gradient (exact
    int64, each element the whole sum over images and pixels) at ``acc``, the columns in
    scratch from byte ``offset`` on."""
    g = _fused_geometry(node)
    return _grad_weight(node, cx, g, node.inputs[3], node.inputs[5], acc, "s64", offset, (first, count))

"""A whole training step as a device model: the generated step, ``model.c`` (``rctc_model.h``), its data.

Needs: a compiled rct graph whose device step (:func:`rctc.analysis.arena.device_nodes`: the
step less the host's input quantiser and the metrics) is C-mappable, and the per-step inputs
(:func:`rctc.native.codegen.feeds.step_feeds`). Leaves: a :class:`DeviceModel` holding the C
sources (path -> text: the generated step, ``model.c``, the kernel library's portable sources
and headers, and the x86 SIMD variants a host build adds) and the const arrays
(:class:`rctc.native.device.CArray`) that :func:`rctc.native.device.write_project` writes.

``model.c``: ``rctc_model_init`` copies the initial state block from flash into ``rctc_state``;
``rctc_model_train_steps`` copies each step's inputs into their arena slots and calls the step
with ``(seed, step, lr_m, lr_k)``; a kernel error prints one ``rctc fault`` line and exits 71;
after each step the bitwidth controller's C twin (``rctc_bitwidth.h``, the rule of
:mod:`rctc.bitwidth_rule`) adds the step's statistics (the step's ``rctc_stats`` block) to each
parameter's window and, every ``adjust_every`` steps, decides and rescales the parameter, its
bits and its exponent in the state block, as the host's ``BitwidthController`` does (its window
also starts empty at the run's first step); ``rctc_model_digest`` feeds the records of
:func:`rctc.digest.graph_state_records` (sorted by name) to ``rctc_digest_record``, from the
state block, or from flash for a state tensor the device step never reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rctc.analysis.arena import device_nodes
from rctc.bitwidth_rule import threshold_fixed
from rctc.digest import DTYPE_CODES, graph_state_records
from rctc.errors import RctcError, UnsupportedOpError
from rctc.ir import Graph
from rctc.native.build import CSRC
from rctc.native.codegen.feeds import StepFeeds
from rctc.native.codegen.generator import STATS_WORDS, CProgram, generate
from rctc.native.device import CArray
from rctc.slots import bits_value, exp_value, has_slot

STEP_FILE = "rctc_step.c"
MODEL_FILE = "model.c"
LIBRARY = "rctc"  # the kernel library's folder under the project's src/
FAULT_STATUS = 71


@dataclass
class DeviceModel:
    """The C of one model's device training loop and its data."""

    program: CProgram
    sources: dict[str, str]
    arrays: list[CArray]
    host_only: list[str] = field(default_factory=list)  # sources only a host build compiles

    @property
    def arena_bytes(self) -> int:
        return self.program.arena_bytes

    @property
    def state_bytes(self) -> int:
        return self.program.state_bytes


def device_program(graph: Graph, band_bytes: int | None = None) -> CProgram:
    """The generated device step (refused in one line when an op has no C mapping); ``band_bytes``:
    the banded nodes' smallest band (``generate``)."""
    if graph.meta.get("mode") != "rct":
        raise RctcError(f"rctc codegen needs an rct-mode model; this one is {graph.meta.get('mode')!r} "
                        "(compile it with --mode rct)")
    try:
        return generate(graph, device_nodes(graph), extern_blocks=True, in_place_updates=True,
                        band_bytes=band_bytes)
    except UnsupportedOpError as exc:
        raise UnsupportedOpError(str(exc).replace("use the numpy backend for this model",
                                                  "this model cannot be generated for a device yet")) from None


def library_sources() -> tuple[dict[str, str], list[str]]:
    """The kernel library (path under src/ -> text) and which of those paths are host-only."""
    files: dict[str, str] = {}
    host_only: list[str] = []
    for src in sorted(CSRC.rglob("*")):
        if src.suffix not in (".c", ".h") or not src.is_file():
            continue
        rel = f"{LIBRARY}/{src.relative_to(CSRC).as_posix()}"
        files[rel] = src.read_text()
        if "x86" in src.relative_to(CSRC).parts and src.suffix == ".c":
            host_only.append(rel)
    return files, host_only


def _c_string(name: str) -> str:
    out = []
    for b in name.encode("utf-8"):
        ch = chr(b)
        out.append(ch if 32 <= b < 127 and ch not in '"\\?' else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def _dtype_macro(dtype: np.dtype) -> str:
    """The RCTC_DTYPE_* macro of rctc_digest.h for a state dtype (the digest's code table)."""
    if np.dtype(dtype) not in DTYPE_CODES:
        raise RctcError(f"state dtype {dtype} has no digest code")
    return f"RCTC_DTYPE_{np.dtype(dtype).name.upper()}"


def _digest_lines(graph: Graph, prog: CProgram) -> tuple[list[str], list[CArray]]:
    """The body of rctc_model_digest and the const arrays of state it reads from flash."""
    lines: list[str] = []
    arrays: list[CArray] = []
    records = sorted(graph_state_records(graph), key=lambda r: r[0].encode("utf-8"))
    for i, (_name, data, _) in enumerate(records):
        dims = ", ".join(f"{d}u" for d in data.shape) or "0u"
        lines.append(f"    static const uint32_t dims_{i}[] = {{{dims}}};")
    lines.append("    const unsigned char *state = (const unsigned char *)rctc_model_state();")
    lines.append("    uint32_t crc = 0u;")
    for i, (name, data, _) in enumerate(records):
        slot = prog.slots.get(name)
        if slot is not None and slot.region == "state":
            if slot.dtype != data.dtype or math.prod(slot.shape) != data.size:
                raise RctcError(f"device state {name!r}: the step stores it as {slot.dtype}{list(slot.shape)}, "
                                f"the model as {data.dtype}{list(data.shape)}")
            where = f"state + {slot.offset}"
        else:
            const = f"rctc_const_{i}"
            if data.size == 0:
                where = "state"
            else:
                arrays.append(CArray(const, np.ascontiguousarray(data)))
                where = const
        lines.append(f"    (void)rctc_digest_record(&crc, {_c_string(name)}, {_dtype_macro(data.dtype)}, "
                     f"{data.ndim}u, dims_{i}, 0, {where}); /* {name} */")
    lines.append("    return crc;")
    return lines, arrays


def _state_image(graph: Graph, prog: CProgram) -> np.ndarray:
    """The initial state block, byte for byte (padding zero)."""
    block = np.zeros(max(1, prog.state_bytes), np.uint8)
    for name in prog.state:
        s = prog.slots[name]
        data = np.ascontiguousarray(np.asarray(graph.value(name).data).astype(s.dtype, copy=False))
        if data.size != math.prod(s.shape):
            raise RctcError(f"device state {name!r}: shape {list(data.shape)}, the step expects {list(s.shape)}")
        block[s.offset:s.offset + s.nbytes] = data.reshape(-1).view(np.uint8)
    return block


def _controller(graph: Graph, prog: CProgram) -> tuple[list[str], list[str]]:
    """The controller twin: (definitions at file scope, statements after a step ``s``)."""
    opts = graph.meta.get("options", {})
    every = int(opts.get("adjust_every", 0))
    params = [p for p in graph.params(trainable_only=True) if has_slot(p) and p.name in graph.state_updates]
    if every <= 0 or not params:
        return [], []
    entry = {name: j for j, (name, _) in enumerate(prog.stats)}
    missing = [p.name for p in params if p.name not in entry]
    if missing:
        raise UnsupportedOpError(f"device step: the update of {', '.join(missing[:3])} records no controller "
                                 "statistics in C, so the device cannot run the bitwidth controller; compile with "
                                 "--adjust-every 0 or wait for its C update")
    rows = []
    for p in params:
        q, bits, exp = prog.slots[p.name], prog.slots[bits_value(graph, p).name], prog.slots[exp_value(graph, p).name]
        if {q.region, bits.region, exp.region} != {"state"} or bits.dtype != np.int32 or exp.dtype != np.int32:
            raise RctcError(f"device step: the slot of {p.name!r} is not an int32 bits / exponent pair in the state")
        slot = p.meta["slot"]
        rows.append(f"    {{{STATS_WORDS * entry[p.name]}u, {q.offset}u, {bits.offset}u, {exp.offset}u, "
                    f"{math.prod(q.shape)}u, {q.dtype.itemsize}, {int(slot['min_bits'])}, {int(slot['max_bits'])}}},"
                    f" /* {p.name} */")
    low, high = threshold_fixed(float(opts["gavg_low"])), threshold_fixed(float(opts["gavg_high"]))
    defs = [
        "/* the bitwidth controller's twin (rctc/bitwidth_rule.py): per parameter its stats entry, the",
        "   state offsets of q, bits and exponent, n, q's bytes, min and max bits */",
        "struct rctc_ctrl { uint32_t stat, q, bits, exp, n; int qw, min_bits, max_bits; };",
        f"static const struct rctc_ctrl rctc_ctrl[{len(rows)}] = {{", *rows, "};",
        f"static rctc_bw_window rctc_windows[{len(rows)}];",
        f"#define RCTC_ADJUST_EVERY {every}u",
        f"#define RCTC_GAVG_LOW {low}ull", f"#define RCTC_GAVG_HIGH {high}ull", ""]
    after = [
        "        for (j = 0; j < sizeof rctc_ctrl / sizeof rctc_ctrl[0]; j++) {",
        "            const struct rctc_ctrl *c = &rctc_ctrl[j];",
        "            const uint64_t *st = stats + c->stat;",
        "            if (rctc_bw_observe(&rctc_windows[j], st[2], st[1], c->n) != 0) {",
        '                fault("the controller window overflowed", s, 1);',
        "            }",
        "            if ((s + 1u) % RCTC_ADJUST_EVERY == 0u && rctc_windows[j].count != 0u) {",
        "                int32_t b32, e32;",
        "                int bits, exp;",
        "                memcpy(&b32, state + c->bits, sizeof b32);",
        "                memcpy(&e32, state + c->exp, sizeof e32);",
        "                bits = (int)b32;",
        "                exp = (int)e32;",
        "                (void)rctc_bw_adjust(&rctc_windows[j], RCTC_GAVG_LOW, RCTC_GAVG_HIGH, c->min_bits, "
        "c->max_bits, c->n, state + c->q, c->qw, &bits, &exp);",
        "                b32 = (int32_t)bits;",
        "                e32 = (int32_t)exp;",
        "                memcpy(state + c->bits, &b32, sizeof b32);",
        "                memcpy(state + c->exp, &e32, sizeof e32);",
        "            }",
        "        }"]
    return defs, after


def _model_c(name: str, prog: CProgram, feeds: StepFeeds, digest: list[str],
             controller: tuple[list[str], list[str]]) -> str:
    copies = []
    for i, value in enumerate(prog.inputs):
        s = prog.slots[value]
        n = math.prod(s.shape)
        copies.append(f"        memcpy(arena + {s.offset}, &rctc_in_{i}[(size_t)k * {n}u], {s.nbytes}u); "
                      f"/* {value} */")
    return "\n".join([
        f"/* model.c: rctc_model.h for {name} (written by rctc.native.codegen.model). The step is in",
        f" * {STEP_FILE}; the state image, the inputs of every step and the learning rates are in",
        " * rctc_data.c. Integer only. */",
        "#include <stddef.h>", "#include <stdint.h>", "#include <stdlib.h>", "#include <string.h>", "",
        '#include "rctc_bitwidth.h"', '#include "rctc_data.h"', '#include "rctc_digest.h"', '#include "rctc_model.h"',
        '#include "rctc_port.h"', "",
        "void *rctc_model_arena(void);", "void *rctc_model_state(void);", "uint64_t *rctc_model_stats(void);",
        "int rctc_model_step(uint64_t seed, uint32_t step, int64_t lr_m, int lr_k);", "",
        "static void fault(const char *what, uint32_t step, int code)", "{",
        "    char buf[12];", "    int i = (int)sizeof buf;",
        "    uint32_t v = code < 0 ? (uint32_t)(-(code + 1)) + 1u : (uint32_t)code;",
        '    const char *head = "rctc fault: ";',
        "    rctc_port_write(head, strlen(head));", "    rctc_port_write(what, strlen(what));",
        "    do {", "        buf[--i] = (char)('0' + (int)(v % 10u));", "        v /= 10u;", "    } while (v != 0u);",
        "    if (code < 0) {", "        buf[--i] = '-';", "    }",
        '    rctc_port_write(" code ", 6u);', "    rctc_port_write(buf + i, sizeof buf - (size_t)i);",
        '    rctc_port_write(" at step ", 9u);',
        "    i = (int)sizeof buf;", "    v = step;",
        "    do {", "        buf[--i] = (char)('0' + (int)(v % 10u));", "        v /= 10u;", "    } while (v != 0u);",
        "    rctc_port_write(buf + i, sizeof buf - (size_t)i);", '    rctc_port_write("\\n", 1u);',
        f"    exit({FAULT_STATUS});", "}", "",
        *controller[0],
        "void rctc_model_init(void)", "{",
        "    memcpy(rctc_model_state(), rctc_state_init, RCTC_MODEL_STATE_BYTES);", "}", "",
        "void rctc_model_train_steps(uint32_t first_step, uint32_t n)", "{",
        "    unsigned char *arena = (unsigned char *)rctc_model_arena();",
        *(["    unsigned char *state = (unsigned char *)rctc_model_state();",
           "    const uint64_t *stats = rctc_model_stats();", "    size_t j;"] if controller[1] else []),
        "    uint32_t i;",
        "    for (i = 0; i < n; i++) {",
        "        const uint32_t s = first_step + i;",
        "        const uint32_t k = s - RCTC_MODEL_FIRST_STEP;",
        "        int rc;",
        "        if (k >= RCTC_MODEL_STEPS) { /* also a step before the first: k wraps past 2^32 - 1 */",
        '            fault("no data for this step", s, 0);',
        "        }",
        *copies,
        "        rc = rctc_model_step(rctc_seed[0], s, rctc_lr_m[k], (int)rctc_lr_k[k]);",
        "        if (rc != 0) {",
        '            fault("a kernel refused its input (an accumulator left its range)", s, rc);',
        "        }",
        *controller[1],
        "    }",
        "}", "",
        "uint32_t rctc_model_digest(void)", "{", *digest, "}", ""])


def device_model(graph: Graph, feeds: StepFeeds, name: str, prog: CProgram | None = None) -> DeviceModel:
    """The sources and data of ``graph``'s device training loop over ``feeds``."""
    prog = prog or device_program(graph)
    missing = [v for v in prog.inputs if v not in feeds.inputs]
    if missing:
        raise RctcError(f"device step: no per-step data for input(s) {', '.join(missing)}")
    digest, consts = _digest_lines(graph, prog)
    arrays = [CArray("rctc_state_init", _state_image(graph, prog)),
              CArray("rctc_seed", np.asarray([feeds.seed], np.uint64)),
              CArray("rctc_lr_m", feeds.lr_m.astype(np.int64)), CArray("rctc_lr_k", feeds.lr_k.astype(np.int32))]
    for i, value in enumerate(prog.inputs):
        s = prog.slots[value]
        data = np.ascontiguousarray(feeds.inputs[value]).astype(s.dtype, copy=False)
        if data.shape != (feeds.steps, *s.shape):
            raise RctcError(f"device step: input {value!r} has per-step shape {list(data.shape[1:])}, "
                            f"the step expects {list(s.shape)}")
        arrays.append(CArray(f"rctc_in_{i}", data))
    arrays += consts
    lib, host_only = library_sources()
    controller = _controller(graph, prog)
    sources = {STEP_FILE: prog.source, MODEL_FILE: _model_c(name, prog, feeds, digest, controller), **lib}
    return DeviceModel(prog, sources, arrays, host_only)


def model_name(path: str | Path) -> str:
    """A model name for the harness from a file name (letters, digits, '_', '.', '-')."""
    stem = Path(path).stem or "model"
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in stem)


__all__ = ["DeviceModel", "device_model", "device_program", "library_sources", "model_name"]

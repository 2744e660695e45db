"""Energy profiles: per-operation energies, memory levels and the device budget, from TOML.

A profile is a TOML file (schema: the shipped default ``rctc/profiles/horowitz45.toml``).
``load_profile(None)`` gives the default; ``load_profile("NAME")`` a shipped profile;
``load_profile("path/to/file.toml")`` a user's file. Every problem with a profile (unknown
name, unreadable file, malformed TOML, a missing or negative energy, a bad memory level) is
an ``RctcError`` with one line naming the file and the key.

Energies of widths the table does not list are derived, as DESIGN.md says: integer multiply
``e8 * b1*b2/64`` (scaled from the table's 8-bit entry, or its nearest entry), integer add
linear between the listed widths and proportional to the width outside them; float add
scales with the width and float multiply with its square from the nearest listed width.
A comparison costs an add of the same width; a transcendental op ("special": exp, log,
sqrt, division) costs a multiply unless ``[energy.float.special]`` lists it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rctc.errors import RctcError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    import tomli as tomllib

DEFAULT_PROFILE = "horowitz45"
PLACEMENT_CLASSES = ("parameters", "optimizer", "activations")


@dataclass(frozen=True)
class MemoryLevel:
    name: str
    read_pj_per_bit: float
    write_pj_per_bit: float
    capacity_bytes: int


@dataclass(frozen=True)
class Profile:
    """A validated energy profile. Energies are pJ per operation / per bit moved."""

    name: str
    source: str
    description: str
    int_add: dict[int, float]
    int_mult: dict[int, float]
    float_add: dict[int, float]
    float_mult: dict[int, float]
    float_special: dict[int, float]
    levels: tuple[MemoryLevel, ...]
    memory_budget_bytes: int
    placement: dict[str, str] = field(default_factory=dict)

    # ----- arithmetic -----------------------------------------------------
    def add(self, bits: int, is_float: bool = False) -> float:
        if is_float:
            return _scaled(self.float_add, bits, 1)
        return _interpolated(self.int_add, bits)

    def mult(self, b1: int, b2: int, is_float: bool = False) -> float:
        if is_float:
            return _scaled(self.float_mult, max(b1, b2), 2)
        if b1 == b2 and b1 in self.int_mult:
            return self.int_mult[b1]
        ref = 8 if 8 in self.int_mult else min(self.int_mult, key=lambda w: (abs(w - max(b1, b2)), w))
        return self.int_mult[ref] * b1 * b2 / (ref * ref)

    def op(self, kind: str, width: str) -> float:
        """Energy of one element-wise op of ``kind`` (add / mult / cmp / special) at ``width`` ("fp32", "int8")."""
        is_float, bits = parse_width(width)
        if kind in ("add", "cmp"):
            return self.add(bits, is_float)
        if kind == "mult":
            return self.mult(bits, bits, is_float)
        if kind == "special":
            if is_float and self.float_special:
                return _scaled(self.float_special, bits, 2)
            return self.mult(bits, bits, is_float)
        raise ValueError(f"unknown element-wise op kind {kind!r}")

    def mac(self, key: str) -> float:
        """Energy of one multiply-accumulate ``"int8*int8+int32"`` / ``"fp32*fp32+fp32"``."""
        prod, acc = key.split("+")
        a, b = prod.split("*")
        fa, ba = parse_width(a)
        fb, bb = parse_width(b)
        facc, bacc = parse_width(acc)
        return self.mult(ba, bb, fa or fb) + self.add(bacc, facc)

    # ----- memory ---------------------------------------------------------
    def level(self, name: str) -> MemoryLevel:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise RctcError(f"profile {self.name!r}: no memory level {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "memory_levels": [{"name": lv.name, "read_pj_per_bit": lv.read_pj_per_bit,
                               "write_pj_per_bit": lv.write_pj_per_bit, "capacity_bytes": lv.capacity_bytes}
                              for lv in self.levels],
            "memory_budget_bytes": self.memory_budget_bytes,
        }


def parse_width(width: str) -> tuple[bool, int]:
    """"fp32" -> (True, 32); "int8" -> (False, 8)."""
    if width.startswith("fp"):
        return True, int(width[2:])
    if width.startswith("int"):
        return False, int(width[3:])
    raise ValueError(f"bad width {width!r}")


def _interpolated(table: dict[int, float], bits: int) -> float:
    widths = sorted(table)
    if bits in table:
        return table[bits]
    if bits < widths[0]:
        return table[widths[0]] * bits / widths[0]
    if bits > widths[-1]:
        return table[widths[-1]] * bits / widths[-1]
    hi = next(w for w in widths if w > bits)
    lo = max(w for w in widths if w < bits)
    return table[lo] + (table[hi] - table[lo]) * (bits - lo) / (hi - lo)


def _scaled(table: dict[int, float], bits: int, power: int) -> float:
    if bits in table:
        return table[bits]
    ref = min(table, key=lambda w: (abs(w - bits), w))
    return table[ref] * (bits / ref) ** power


# ----------------------------------------------------------------------------- loading
def profile_names() -> list[str]:
    folder = resources.files("rctc") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_profile(spec: str | Profile | None = None) -> Profile:
    """The profile named ``spec`` (shipped), at path ``spec``, or the default when None."""
    if isinstance(spec, Profile):
        return spec
    spec = spec or DEFAULT_PROFILE
    path = Path(spec)
    if spec.endswith(".toml") or path.is_file() or "/" in spec or "\\" in spec:
        if not path.is_file():
            raise RctcError(f"profile file {spec}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RctcError(f"profile file {spec}: cannot read it ({exc})") from exc
        return parse_profile(text, str(path))
    names = profile_names()
    if spec not in names:
        raise RctcError(f"unknown energy profile {spec!r}; known profiles: {', '.join(names)} "
                        "(or give the path of a .toml profile file)")
    text = (resources.files("rctc") / "profiles" / f"{spec}.toml").read_text(encoding="utf-8")
    return parse_profile(text, f"profile {spec}")


def parse_profile(text: str, source: str) -> Profile:
    """Validate TOML text into a Profile; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RctcError(f"{source}: malformed TOML: {' '.join(str(exc).split())}") from exc
    energy = _table(data, "energy", source)
    tables: dict[str, dict[int, float]] = {}
    for cls in ("int", "float"):
        group = _table(energy, cls, source, f"energy.{cls}")
        for op in ("add", "mult"):
            tables[f"{cls}_{op}"] = _energies(group, op, source, f"energy.{cls}.{op}", required=True)
    special = _energies(_table(energy, "float", source, "energy.float"), "special", source, "energy.float.special",
                        required=False)
    mem = data.get("memory")
    if not isinstance(mem, list) or not mem:
        raise RctcError(f"{source}: missing memory levels ([[memory]] tables with name, read_pj_per_bit, "
                        "write_pj_per_bit, capacity_bytes)")
    levels = tuple(_level(lv, i, source) for i, lv in enumerate(mem))
    if len({lv.name for lv in levels}) != len(levels):
        raise RctcError(f"{source}: memory level names must be unique")
    device = _table(data, "device", source)
    budget = _number(device.get("memory_budget_bytes"), source, "device.memory_budget_bytes")
    placement_raw = data.get("placement", {})
    if not isinstance(placement_raw, dict):
        raise RctcError(f"{source}: [placement] must be a table")
    placement: dict[str, str] = {}
    for key, val in placement_raw.items():
        if key not in PLACEMENT_CLASSES:
            raise RctcError(f"{source}: placement.{key}: unknown class (use {', '.join(PLACEMENT_CLASSES)})")
        if val != "auto" and val not in {lv.name for lv in levels}:
            raise RctcError(f"{source}: placement.{key} = {val!r} is not a memory level or \"auto\"")
        placement[key] = str(val)
    return Profile(
        name=str(data.get("name", Path(source).stem)),
        source=source,
        description=str(data.get("description", "")),
        int_add=tables["int_add"], int_mult=tables["int_mult"],
        float_add=tables["float_add"], float_mult=tables["float_mult"], float_special=special,
        levels=levels, memory_budget_bytes=int(budget), placement=placement,
    )


def _table(data: dict[str, Any], key: str, source: str, path: str | None = None) -> dict[str, Any]:
    val = data.get(key)
    if not isinstance(val, dict):
        raise RctcError(f"{source}: missing table [{path or key}]")
    return val


def _number(val: Any, source: str, key: str) -> float:
    if val is None:
        raise RctcError(f"{source}: missing {key}")
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
        raise RctcError(f"{source}: {key} must be a number, got {val!r}")
    if val < 0:
        raise RctcError(f"{source}: {key} is negative ({val}); energies and sizes must be >= 0")
    return float(val)


def _energies(group: dict[str, Any], op: str, source: str, path: str, required: bool) -> dict[int, float]:
    raw = group.get(op)
    if raw is None and not required:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise RctcError(f"{source}: missing energy table [{path}] (pJ per op keyed by bit width, e.g. 8 = 0.2)")
    out: dict[int, float] = {}
    for width, val in raw.items():
        if not str(width).isdigit() or int(width) < 1:
            raise RctcError(f"{source}: {path}.{width}: keys are bit widths (positive integers)")
        out[int(width)] = _number(val, source, f"{path}.{width}")
    return out


def _level(raw: Any, i: int, source: str) -> MemoryLevel:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise RctcError(f"{source}: memory level #{i + 1} needs a name")
    key = f"memory.{raw['name']}"
    return MemoryLevel(
        name=raw["name"],
        read_pj_per_bit=_number(raw.get("read_pj_per_bit"), source, f"{key}.read_pj_per_bit"),
        write_pj_per_bit=_number(raw.get("write_pj_per_bit"), source, f"{key}.write_pj_per_bit"),
        capacity_bytes=int(_number(raw.get("capacity_bytes"), source, f"{key}.capacity_bytes")),
    )


__all__ = ["DEFAULT_PROFILE", "MemoryLevel", "Profile", "load_profile", "parse_profile", "parse_width",
           "profile_names"]

"""Every intref algorithm is integer-only: no float literal, float dtype, true division or float
math function in any function body (attribute defaults such as ``alpha=0.01`` are allowed: they
are compile-time constants, turned into integers by core.fixed_point / core.exact_ratio, the two
functions exempt here), and intref imports no backend, kernel registry or executor."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "runtime" / "intref"
EXEMPT = {"fixed_point", "exact_ratio"}
FLOAT_NAMES = {"float", "float16", "float32", "float64", "floating", "sqrt", "log", "log2", "exp", "ldexp",
               "frexp", "rint", "round", "divide", "true_divide", "finfo", "isqrt_float"}


def _violations(tree: ast.Module) -> list[str]:
    found: list[str] = []
    notes = set()  # type annotations are not computation
    for node in ast.walk(tree):
        for ann in ([node.annotation] if isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation else []) + (
                [node.returns] if isinstance(node, ast.FunctionDef) and node.returns else []):
            notes.update(id(n) for n in ast.walk(ann))
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef) or fn.name in EXEMPT:
            continue
        for stmt in fn.body:
            for node in ast.walk(stmt):
                if id(node) in notes:
                    continue
                where = f"{fn.name}:{getattr(node, 'lineno', '?')}"
                if isinstance(node, ast.Constant) and isinstance(node.value, float):
                    found.append(f"{where} float literal {node.value}")
                elif isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.Div):
                    found.append(f"{where} true division")
                elif isinstance(node, ast.Name) and node.id in FLOAT_NAMES:
                    found.append(f"{where} {node.id}")
                elif isinstance(node, ast.Attribute) and node.attr in FLOAT_NAMES:
                    found.append(f"{where} .{node.attr}")
    for node in tree.body:  # module-level constants: integers only
        value = node.value if isinstance(node, ast.Assign) else None
        if isinstance(value, ast.Constant) and isinstance(value.value, float):
            found.append(f"module constant {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("path", sorted(SRC.glob("*.py")), ids=lambda p: p.name)
def test_integer_only(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert _violations(tree) == []
    imports = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imports += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imports if m.startswith(("rctc.runtime.kernels", "rctc.runtime.executor", "rctc.native",
                                                    "rctc.passes"))]


def test_the_checker_catches_float_code() -> None:
    bad = ast.parse("def f(x):\n    return np.sqrt(x) / 2 + 0.5\n")
    assert len(_violations(bad)) == 3

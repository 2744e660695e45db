"""Layers import only downward (DESIGN.md "Layout"), read from the source with ast.

* the frontend, the op definitions, the passes and the analyses never import a backend
  (rctc.runtime, rctc.native), not even lazily inside a function (``TYPE_CHECKING`` imports,
  which never run, are allowed for annotations); the numpy runtime never imports the native
  backend (which imports it);
* nothing imports another package's private (``_name``) module;
* no import cycle at module scope (networkx over the module-scope import graph), and every
  module imports in a fresh interpreter;
* training, evaluating and predicting with a compiled model never import networkx (a compile-time
  library: ~0.14-0.2 s of every start of those commands otherwise).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import networkx as nx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> import name (pyproject's package-dir)
PACKAGES = {"rctc": "rctc", "passes": "rctc.passes", "runtime": "rctc.runtime", "models": "rctc.models",
            "native": "rctc.native"}
BACKENDS = ("rctc.runtime", "rctc.native")
#: modules below the backends: the frontend, the IR and its helpers, the op definitions, the
#: passes and the analyses
FRONTEND = ("rctc.ir", "rctc.errors", "rctc.onnx_import", "rctc.constant_folding", "rctc.onnx_attrs", "rctc.options",
            "rctc.slots", "rctc.fixedpoint", "rctc.pass_manager", "rctc.compiler", "rctc.export", "rctc.export_quant",
            "rctc.onnx_export")
LAYERED = ("rctc.ops", "rctc.passes", "rctc.analysis", *FRONTEND)


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for folder, name in PACKAGES.items():
        for f in sorted((ROOT / folder).rglob("*.py")):
            rel = f.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([name, *parts])] = f
    return out


MODULES = _modules()


def _is_package(mod: str) -> bool:
    return MODULES[mod].name == "__init__.py"


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(mod: str, module_scope_only: bool) -> list[str]:
    """Absolute names a module imports (``from a import b`` gives ``a.b`` when that is a module)."""
    tree = ast.parse(MODULES[mod].read_text())
    pkg = mod if _is_package(mod) else mod.rpartition(".")[0]
    found: list[str] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.extend(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = pkg.split(".")
                    anchor = anchor[: len(anchor) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    found.append(sub if sub in MODULES else base)
            is_scope = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if not (module_scope_only and is_scope):
                visit(child, top and not is_scope)

    visit(tree, True)
    return found


def _inside(mod: str, prefix: str) -> bool:
    return mod == prefix or mod.startswith(prefix + ".")


def test_no_backend_import_below_the_backends() -> None:
    bad = [f"{m} imports {i}" for m in MODULES if any(_inside(m, p) for p in LAYERED)
           for i in _imports(m, module_scope_only=False) if any(_inside(i, b) for b in BACKENDS)]
    assert not bad, "\n".join(bad)


def test_the_numpy_runtime_never_imports_the_native_backend() -> None:
    """The native backend builds on the runtime (its kernels run the host segments), never the reverse."""
    bad = [f"{m} imports {i}" for m in MODULES if _inside(m, "rctc.runtime")
           for i in _imports(m, module_scope_only=False) if _inside(i, "rctc.native")]
    assert not bad, "\n".join(bad)
    assert any(_inside(i, "rctc.runtime") for i in _imports("rctc.native.executor", module_scope_only=True))


def test_no_cross_package_private_import() -> None:
    bad = []
    for m in MODULES:
        for i in _imports(m, module_scope_only=False):
            parts = i.split(".")
            for k, part in enumerate(parts):
                if part.startswith("_") and not part.startswith("__"):
                    owner = ".".join(parts[:k])
                    own_pkg = m if _is_package(m) else m.rpartition(".")[0]
                    if not _inside(own_pkg, owner):
                        bad.append(f"{m} imports {i}")
                    break
    assert not bad, "\n".join(bad)


def _cycles(skip: Callable[[str], bool]) -> list[list[str]]:
    g = nx.DiGraph()
    for m in MODULES:
        if skip(m):
            continue
        g.add_node(m)
        for i in _imports(m, module_scope_only=True):
            if i in MODULES and i != m and not skip(i):
                g.add_edge(m, i)
    return list(nx.simple_cycles(g))


def test_no_module_scope_import_cycle() -> None:
    cycles = _cycles(lambda m: False)
    assert not cycles, "module-scope import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles[:5])


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    # deepest modules first: a module that only works after its parent package ran would fail here
    names = sorted((m for m in MODULES if not m.endswith("__main__")), key=lambda m: (-m.count("."), m))
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    res = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]


def test_run_time_commands_do_not_import_networkx(tmp_path: Path) -> None:
    """rctc train / eval / predict on a compiled .rct, in a fresh interpreter: networkx stays unloaded."""
    import rctc
    from rctc.models import build

    rct = tmp_path / "mlp.rct"
    rctc.compile(build("mlp"), mode="rct", batch_size=8).save(rct)
    x = tmp_path / "x.npz"
    np.savez(x, x=np.zeros((8, 64), np.float32), y=np.zeros(8, np.int64))
    code = (
        "import sys\n"
        "from rctc.cli import main\n"
        f"for args in (['train', {str(rct)!r}, '--data', {str(x)!r}, '--steps', '1', '--backend', 'numpy',\n"
        f"              '-o', {str(tmp_path / 'trained.rct')!r}],\n"
        f"             ['eval', {str(rct)!r}, '--data', {str(x)!r}, '--backend', 'numpy'],\n"
        f"             ['predict', {str(rct)!r}, '--data', {str(x)!r}, '--backend', 'numpy',\n"
        f"              '-o', {str(tmp_path / 'pred.npz')!r}]):\n"
        "    try:\n"
        "        main(args, standalone_mode=False)\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'networkx'))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout[-2000:]

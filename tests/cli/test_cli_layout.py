"""The CLI package's layout: one module per command, found by the group, no import cycle, short functions."""

from __future__ import annotations

import ast
from pathlib import Path

import click

import rctc.cli
from rctc.cli import app, main

CLI_DIR = Path(rctc.cli.__file__).parent
MAX_FUNCTION_LINES = 60


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_every_command_module_is_registered_under_its_command() -> None:
    modules = app.command_modules()
    assert {"compile", "train", "eval", "predict", "export", "inspect", "report", "demo"} <= set(modules)
    for name in modules:
        mod = __import__(f"rctc.cli.{name}", fromlist=["command"])
        assert isinstance(mod.command, click.Command)
        assert main.commands[mod.command.name] is mod.command


def test_command_modules_import_neither_the_group_nor_each_other() -> None:
    commands = {f"rctc.cli.{m}" for m in app.command_modules()}
    for path in CLI_DIR.glob("*.py"):
        if path.name == "__init__.py":
            continue
        imported = _imports(path)
        assert "rctc.cli.main" not in imported and "rctc.cli.app" not in imported, path.name
        assert not imported & (commands - {f"rctc.cli.{path.stem}"}), path.name


def test_functions_are_short() -> None:
    for path in CLI_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body_lines = node.end_lineno - node.body[0].lineno + 1
                assert body_lines <= MAX_FUNCTION_LINES, f"{path.name}:{node.name} has {body_lines} lines"

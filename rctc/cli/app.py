"""The ``rctc`` command group: usage errors as one line, and the commands found in this package.

Needs: every command module of ``rctc.cli`` (any module but this one and ``common``) to define a
module-level ``command`` (a ``click.Command``). Leaves: ``main``, a click group holding each such
command under its own name; no command module imports this one, so there is no import cycle.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Any

import click

HELPER_MODULES = frozenset({"app", "common", "outputs", "values"})


class RctcGroup(click.Group):
    """A click group whose usage errors (bad option, missing argument, a folder where a file is
    expected) are one ``rctc: error:`` line with exit code 2, like every other user error."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            hint = f" (see: rctc {exc.ctx.info_name if exc.ctx and exc.ctx.parent else ''} --help)".replace("  ", " ")
            msg = " ".join(exc.format_message().split())
            click.echo(f"rctc: error: {msg}{hint}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("rctc: aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            click.echo(f"rctc: error: {' '.join(exc.format_message().split())}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


def command_modules() -> list[str]:
    """Names of the command modules of this package, sorted."""
    here = [str(Path(__file__).parent)]
    return sorted(m.name for m in pkgutil.iter_modules(here) if m.name not in HELPER_MODULES)


@click.group(cls=RctcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rctc")
def main() -> None:
    """rctc: compile ONNX models into Resource Constrained Training graphs, estimate and train them."""


def _register() -> None:
    package = __name__.rpartition(".")[0]
    for name in command_modules():
        cmd = getattr(importlib.import_module(f"{package}.{name}"), "command", None)
        if not isinstance(cmd, click.Command):
            raise TypeError(f"{package}.{name} is a command module but defines no click command `command`")
        main.add_command(cmd)


_register()

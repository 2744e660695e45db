"""What the command modules share: error reporting, the data options, progress bars, JSON output.

Needs: nothing from the other ``rctc.cli`` modules. Leaves: decorators and helpers with no
process-wide effect (``fail_cleanly``'s numpy error state is scoped to the command).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from rctc.errors import RctcError
from rctc.jsonutil import json_default

# click path types: a file argument / option (a folder there is a usage error)
IN_FILE = click.Path(dir_okay=False, path_type=Path)
OUT_FILE = click.Path(dir_okay=False, path_type=Path)


def fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn RctcError (and a few OS errors) into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with np.errstate(all="ignore"):  # NaN / overflow are detected and reported by rctc itself
                return fn(*args, **kwargs)
        except RctcError as exc:
            click.echo(f"rctc: error: {exc}", err=True)
            sys.exit(2)
        except MemoryError:
            click.echo("rctc: error: out of memory; use a smaller --batch-size", err=True)
            sys.exit(2)
        except OSError as exc:  # an unwritable / invalid output path and the like
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"rctc: error: {where}{exc.strerror or exc}; check the path and its permissions", err=True)
            sys.exit(2)

    return wrapper


def data_options(fn: Any) -> Any:
    """``--x-key``, ``--y-key`` and ``--target``: where the inputs and labels are in the data."""
    fn = click.option("--target", default=None, help="CSV: the label column.")(fn)
    fn = click.option("--y-key", default="y", show_default=True, help="npz: the label array.")(fn)
    fn = click.option("--x-key", default="x", show_default=True, help="npz: the input array.")(fn)
    return fn


def backend_option(fn: Any) -> Any:
    """``--backend native|numpy`` (default: native when a C compiler is found)."""
    return click.option("--backend", type=click.Choice(["native", "numpy"]), default=None,
                        help="Run on the generated C (native) or the numpy runtime [default: native when a C "
                             "compiler (CC, else cc) is found; fp32 / qat models run on numpy].")(fn)


def use_backend(model: Any, backend: str | None) -> None:
    """Put ``model`` on ``backend``; when numpy runs instead, say why in one line on stderr."""
    note = model.use_backend(backend)
    if note:
        click.echo(f"rctc: {note}", err=True)


def json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(fn)


@contextlib.contextmanager
def progress(show: bool, length: int, label: str, describe: Callable[[Any], str], done: int = 0
             ) -> Iterator[Callable[[Any], None] | None]:
    """A click progress bar on stderr when ``show``; yields ``advance(item)`` (or None when hidden)."""
    if not show:
        yield None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True,
                           item_show_func=lambda item: item and describe(item)) as bar:
        if done:
            bar.update(done)
        yield lambda item: bar.update(1, item)


def show_progress(quiet: bool) -> bool:
    """Progress bars only on a terminal, and never with --quiet / --json."""
    return not quiet and sys.stderr.isatty()


def emit_json(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, default=json_default))

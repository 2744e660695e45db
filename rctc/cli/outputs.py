"""The files a command writes: never one of its inputs, one writer at a time, checked before any work.

Needs: a command's output paths and its input paths (``None`` entries are skipped). Leaves, for
the duration of ``writing(...)``: every output is a writable file path in an existing folder, is
none of the inputs (same resolved path, or the same file through a hard link: same ``st_dev`` and
``st_ino``), no two outputs are the same file, and each output is locked (``fcntl.flock`` on a
hidden ``.NAME.lock`` beside it) so a second rctc command writing it is refused at once. The files
themselves are written atomically by ``rctc.rct_format.atomic_write_bytes`` (temporary file in the
same folder, fsync, rename).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rctc.errors import RctcError

try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks, the other guarantees hold
    fcntl = None  # type: ignore[assignment]


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """``a`` and ``b`` name one file: the same resolved path, or one inode (hard links)."""
    pa, pb = Path(a), Path(b)
    if pa.resolve() == pb.resolve():
        return True
    try:
        sa, sb = pa.stat(), pb.stat()
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def refuse_overwriting_inputs(output: Path, *inputs: Any) -> None:
    """An output may not replace one of the command's own inputs."""
    for p in inputs:
        if p is not None and Path(str(p)).exists() and same_file(output, str(p)):
            raise RctcError(f"{output}: is also an input of this command ({p}); choose another output file")


@contextlib.contextmanager
def output_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock for writing ``path``; refuse if another process holds it."""
    if fcntl is None:
        yield
        return
    target = path.resolve()
    lock = target.with_name(f".{target.name}.lock")
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RctcError(f"{path}: cannot create the lock file {lock} ({exc.strerror or exc})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise RctcError(f"{path}: another rctc command is writing this file right now (lock {lock}); wait for "
                            "it to finish or choose another output") from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:  # not a lock file its last holder just removed
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


@contextlib.contextmanager
def writing(outputs: Sequence[Path | None], inputs: Sequence[Any], in_place: Path | None = None) -> Iterator[None]:
    """Check and lock ``outputs`` (see the module docstring). ``in_place``: an input that the first
    output may replace on purpose (``rctc train`` without ``-o`` writes the trained model over its input)."""
    from rctc.rct_format import check_writable

    outs = [o for o in outputs if o is not None]
    for i, out in enumerate(outs):
        refuse_overwriting_inputs(out, *[p for p in inputs if not (i == 0 and p is in_place)])
        for other in outs[:i]:
            if same_file(out, other):
                raise RctcError(f"{out}: is also another output of this command ({other}); give different files")
        check_writable(out)
    with contextlib.ExitStack() as stack:
        for out in outs:
            stack.enter_context(output_lock(out))
        yield

"""Atomic file and directory writes: readers see the old content or the new, never half."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_directory"]


def _check_parent(path: Path) -> None:
    parent = path.parent
    if not parent.exists():
        raise FileNotFoundError(
            f"Cannot write {path}: the folder {parent} does not exist. Create it first."
        )
    if not os.access(parent, os.W_OK):
        raise PermissionError(
            f"Cannot write {path}: the folder {parent} is not writable. Choose another output path."
        )


def _umask() -> int:
    """The process's file-creation mask (Linux reads it without changing it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere the only portable read is a set-and-restore
    os.umask(mask)
    return mask


def _usual_mode(path: Path, target: Path, *, directory: bool) -> None:
    """Give a finished temporary the mode a plain ``open``/``mkdir`` would leave.

    ``mkstemp`` and ``mkdtemp`` create 0600 files and 0700 folders, which would
    make every output (a submission, a model directory) private to its owner
    regardless of the user's umask. Replacing an existing ``target`` keeps its
    mode (a private file stays private), as writing over it in place would.
    """
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = (0o777 if directory else 0o666) & ~_umask()
    path.chmod(mode)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place on success.

    On any exception (including ``KeyboardInterrupt``) the temporary file is
    removed and ``path`` is left as it was. The file ends with the mode the
    umask gives a new file (0644 under the usual 022), not ``mkstemp``'s 0600.
    """
    target = Path(path)
    _check_parent(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            _usual_mode(tmp, target, directory=False)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory; swap it in for ``path`` on success.

    An existing directory at ``path`` is replaced only after the new one is
    complete, so an interrupted write leaves the previous directory intact.
    The swap is two renames (old out of the way, new in): between them, for
    microseconds, no directory exists at ``path``; a reader then gets
    "not found", never a half-written model.
    """
    target = Path(path)
    _check_parent(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        _usual_mode(tmp, target, directory=True)
        if target.exists():
            # A unique parking name: a fixed one left behind by a killed process
            # would make every later save fail with "Directory not empty".
            old = target.with_name(f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

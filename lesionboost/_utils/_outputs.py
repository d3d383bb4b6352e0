"""One output policy for everything lesionboost writes: never lose a file it did not write.

Every folder lesionboost writes into carries a marker, ``.lesionboost.json``, that
names what wrote the folder (``"written_by"``) and the entries it wrote there
(``"entries"``). The rules, checked before any work is done:

* a **folder output** (a run, a report, a simulation, a model) is written only
  into a folder that is new, empty, or marked as written by the same kind of
  command; replacing it needs every entry in it to be lesionboost's own;
* a **file output** (a submission, an embedding table) may go into any existing
  folder, but an existing file is replaced only with ``force`` and only when the
  folder's marker lists it as lesionboost's own;
* an output never replaces, and a replaced folder never contains, an input.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..exceptions import OutputError
from ._atomic import atomic_path

__all__ = [
    "MARKER",
    "check_file_output",
    "check_folder_output",
    "claim",
    "foreign_entries",
    "read_marker",
]

#: Name of the marker file in every folder lesionboost writes into.
MARKER = ".lesionboost.json"

PathLike = str | os.PathLike[str]


def read_marker(folder: PathLike) -> dict[str, Any] | None:
    """The marker of ``folder``, or ``None`` when lesionboost never wrote there."""
    path = Path(folder) / MARKER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError):
        return None  # unreadable: treat the folder as someone else's
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        return None
    return data


def foreign_entries(folder: PathLike) -> list[str]:
    """Entries of ``folder`` that lesionboost did not write (sorted; the marker excluded)."""
    marker = read_marker(folder)
    owned = set(marker["entries"]) if marker else set()
    return sorted(
        entry.name
        for entry in Path(folder).iterdir()
        if entry.name != MARKER and entry.name not in owned and not _is_temporary(entry.name)
    )


def _is_temporary(name: str) -> bool:
    # atomic writes park their temporaries as hidden ".name.*.tmp" siblings
    return name.startswith(".") and name.endswith(".tmp")


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _resolved(paths: Iterable[PathLike | None]) -> list[Path]:
    return [Path(p).resolve() for p in paths if p is not None]


def _contains(folder: Path, path: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def check_folder_output(
    folder: PathLike,
    *,
    written_by: str,
    option: str = "--out",
    inputs: Iterable[PathLike | None] = (),
    replace: bool = False,
) -> None:
    """Check, before any work, that ``written_by`` may write the folder ``folder``.

    Parameters
    ----------
    folder : str or path-like
        The output folder.
    written_by : str
        What writes it (``"lesionboost tune"``, ``"lesionboost report"``, ...); a
        marked folder written by something else is refused.
    option : str, default="--out"
        How the user named the folder, for the messages.
    inputs : iterable of paths
        The command's inputs; none may lie in a folder that is replaced.
    replace : bool, default=False
        The whole folder is replaced (its entries are deleted): every entry in it
        must be lesionboost's own and no input may lie inside it.

    Raises
    ------
    OutputError
        The folder is a file, holds files lesionboost did not write, was written
        by another command, or holds an input that would be replaced.
    """
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{option} {target} is a file; pass a folder.")
    if not target.exists():
        return
    for path in _resolved(inputs):
        if replace and _contains(target.resolve(), path):
            raise OutputError(
                f"{option} {target} holds the input {path}, which writing the folder would "
                "replace. Choose another folder for the output."
            )
    entries = [e for e in target.iterdir() if not _is_temporary(e.name)]
    if not entries:
        return
    marker = read_marker(target)
    if marker is None:
        names = sorted(e.name for e in entries)
        raise OutputError(
            f"{option} {target} holds files lesionboost did not write ({_listing(names)}); "
            "it writes only into a new or empty folder, or one it wrote before. Choose "
            "another folder."
        )
    if marker.get("written_by") != written_by:
        raise OutputError(
            f"{option} {target} was written by {marker.get('written_by')!r}, not by "
            f"{written_by!r}; choose another folder."
        )
    if replace:
        foreign = foreign_entries(target)
        if foreign:
            raise OutputError(
                f"{option} {target} also holds files lesionboost did not write "
                f"({_listing(foreign)}); move them out or choose another folder."
            )


def check_file_output(
    path: PathLike,
    *,
    force: bool,
    option: str = "--out",
    inputs: Iterable[PathLike | None] = (),
) -> None:
    """Check, before any work, that a file output may be written at ``path``.

    Parameters
    ----------
    path : str or path-like
        The output file.
    force : bool
        Whether the user allowed replacing an existing file that lesionboost wrote.
    option : str, default="--out"
        How the user named the file, for the messages.
    inputs : iterable of paths
        The command's inputs; the output may be none of them nor lie inside one.

    Raises
    ------
    OutputError
        The path is an input or a folder, its folder does not exist, or it exists
        and ``force`` is off or lesionboost did not write it.
    """
    target = Path(path)
    resolved = target.resolve()
    for source in _resolved(inputs):
        if _contains(source, resolved):
            raise OutputError(
                f"{option} {target} is an input of this command ({source}); an output "
                "never replaces an input. Choose another path."
            )
    if target.is_dir():
        raise OutputError(f"{option} {target} is a folder; pass a file name.")
    if not target.parent.exists():
        raise OutputError(
            f"the folder of {option} ({target.parent}) does not exist; create it first."
        )
    if not target.exists():
        return
    if not force:
        raise OutputError(
            f"{target} already exists; pass --force to replace it, or choose another {option}."
        )
    marker = read_marker(target.parent)
    if marker is None or target.name not in marker["entries"]:
        raise OutputError(
            f"{target} exists and was not written by lesionboost; --force replaces only "
            f"files lesionboost wrote. Choose another {option}."
        )


def claim(folder: PathLike, names: Iterable[str], *, written_by: str) -> None:
    """Record ``names`` as entries of ``folder`` written by lesionboost (atomically).

    A folder's marker keeps the first writer's ``written_by``; file outputs in a
    user's folder are recorded under ``"lesionboost"`` with no claim on the folder.
    """
    target = Path(folder)
    marker = read_marker(target) or {"written_by": written_by, "entries": []}
    entries = sorted(set(marker["entries"]) | set(names))
    marker["entries"] = entries
    with atomic_path(target / MARKER) as tmp:
        tmp.write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")

"""One output policy for everything lesionboost writes: never lose a file it did not write.

Every folder lesionboost writes into carries a marker, ``.lesionboost.json``, that
names what wrote the folder (``"written_by"``), the entries it wrote there
(``"entries"``) and which command wrote each entry that the folder's own command
did not (``"writers"``: a submission in a run folder, an embedding table in a
user's folder). A marker without ``"writers"`` does not say who wrote each entry;
its entries are replaced only by the folder's own command. The rules, checked
before any work is done:

* a **folder output** (a run, a report, a simulation, a model) is written only
  into a folder that is new, empty, or marked as written by the same kind of
  command; replacing it needs every entry in it to be that command's own;
* a **file output** (a submission, an embedding table) may go into any existing
  folder, but an existing file is replaced only with ``force`` and only when the
  folder's marker lists it as written by the same command (a submission never
  replaces a run's, a simulation's or a model's files);
* an output never replaces, and a replaced folder never contains, an input;
* the folder that will hold an output is, or can be created as, a folder: a path
  through a file is refused before any work.
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
    "disown",
    "entry_writer",
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


def entry_writer(marker: dict[str, Any], name: str) -> str | None:
    """What wrote the entry ``name`` of a folder with ``marker`` (None: not lesionboost).

    An entry the marker lists without a writer of its own belongs to the folder's
    ``written_by``.
    """
    if name not in marker["entries"]:
        return None
    writers = marker.get("writers")
    if isinstance(writers, dict) and isinstance(writers.get(name), str):
        return str(writers[name])
    written_by = marker.get("written_by")
    return str(written_by) if written_by is not None else None


def _check_parent_folder(target: Path, option: str) -> None:
    """Refuse a ``target`` whose nearest existing ancestor is not a folder."""
    for ancestor in target.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputError(
                    f"{option} {target} lies under {ancestor}, which is a file, not a folder; "
                    "choose another path."
                )
            return


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
    also_written_by: Iterable[str] = (),
    replaces: Iterable[str] | None = None,
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
    also_written_by : iterable of str
        Other markers that count as ``written_by``'s own here.
    replaces : iterable of str, optional
        With ``replace``, the entries that writing the folder replaces (a cv run
        rewrites its own files and leaves the others); None: every entry.

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
        _check_parent_folder(target, option)
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
    if marker.get("written_by") not in {written_by, *also_written_by}:
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
        replaced = marker["entries"] if replaces is None else set(replaces)
        others = sorted(
            name
            for name in marker["entries"]
            if name in replaced
            and (target / name).exists()
            and entry_writer(marker, name) not in {written_by, *also_written_by}
        )
        if others:
            raise OutputError(
                f"{option} {target} also holds files another lesionboost command wrote "
                f"({_listing(others)}); replacing the folder would delete them. Move them out "
                "or choose another folder."
            )


def check_file_output(
    path: PathLike,
    *,
    force: bool,
    written_by: str,
    option: str = "--out",
    inputs: Iterable[PathLike | None] = (),
) -> None:
    """Check, before any work, that a file output may be written at ``path``.

    Parameters
    ----------
    path : str or path-like
        The output file.
    force : bool
        Whether the user allowed replacing an existing file that ``written_by`` wrote.
    written_by : str
        What writes the file (``"lesionboost predict"``, ...): an existing file is
        replaced only when the folder's marker records the same writer.
    option : str, default="--out"
        How the user named the file, for the messages.
    inputs : iterable of paths
        The command's inputs; the output may be none of them nor lie inside one.

    Raises
    ------
    OutputError
        The path is an input or a folder, its folder does not exist or is a file, or
        it exists and ``force`` is off or ``written_by`` did not write it.
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
        _check_parent_folder(target, option)
        raise OutputError(
            f"the folder of {option} ({target.parent}) does not exist; create it first."
        )
    if not target.parent.is_dir():
        raise OutputError(
            f"the folder of {option} ({target.parent}) is a file, not a folder; choose "
            "another path."
        )
    if not target.exists():
        return
    if not force:
        raise OutputError(
            f"{target} already exists; pass --force to replace it, or choose another {option}."
        )
    marker = read_marker(target.parent)
    writer = entry_writer(marker, target.name) if marker is not None else None
    if writer is None:
        raise OutputError(
            f"{target} exists and was not written by lesionboost; --force replaces only "
            f"files lesionboost wrote. Choose another {option}."
        )
    if writer != written_by:
        said = (
            f"was written by {writer!r}"
            if marker is not None and "writers" in marker
            else f"is recorded in a folder written by {writer!r}, without saying which command "
            "wrote it"
        )
        raise OutputError(
            f"{target} {said}, not by {written_by!r}; --force replaces only a file the same "
            f"command wrote. Delete it yourself if it is yours to lose, or choose another "
            f"{option}."
        )


def claim(folder: PathLike, names: Iterable[str], *, written_by: str) -> None:
    """Record ``names`` as entries of ``folder`` written by ``written_by`` (atomically).

    A folder's marker keeps the first writer's ``written_by``; an entry written by
    another command (a submission in a run folder, say) is recorded with its own
    writer in ``"writers"``.
    """
    target = Path(folder)
    existing = read_marker(target)
    marker = existing or {"written_by": written_by, "entries": [], "writers": {}}
    names = list(names)
    marker["entries"] = sorted(set(marker["entries"]) | set(names))
    recorded = marker.get("writers")
    writers: dict[str, str] = dict(recorded) if isinstance(recorded, dict) else {}
    for name in names:
        if written_by == marker.get("written_by"):
            writers.pop(name, None)
        else:
            writers[name] = written_by
    # "writers" present (even empty) says the marker names every entry's writer; a
    # marker that never recorded them gains the key only with an entry of another writer
    if isinstance(recorded, dict) or writers:
        marker["writers"] = dict(sorted(writers.items()))
    _write_marker(target, marker)


def disown(folder: PathLike, names: Iterable[str]) -> None:
    """Remove ``names`` from the entries of ``folder``'s marker (the files are gone)."""
    target = Path(folder)
    marker = read_marker(target)
    if marker is None:
        return
    gone = set(names)
    marker["entries"] = [name for name in marker["entries"] if name not in gone]
    if isinstance(marker.get("writers"), dict):
        marker["writers"] = {k: v for k, v in marker["writers"].items() if k not in gone}
    _write_marker(target, marker)


def _write_marker(folder: Path, marker: dict[str, Any]) -> None:
    with atomic_path(folder / MARKER) as tmp:
        tmp.write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")

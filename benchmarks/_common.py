"""What every benchmark script shares: paths, the command line, result tables and JSON output.

A benchmark writes one JSON file, by default ``benchmarks/results/<name>.json``,
holding its own figures, the Markdown-ready tables it produced (``"tables"``)
and the machine and library versions it ran on (``"environment"``).
``benchmarks/render.py`` copies those tables into ``README.md`` and ``docs/*.md``,
so no figure in the documentation is typed by hand.

Typical use in ``benchmarks/<name>.py``::

    from _common import SHARED, Table, parser, write_results

    args = parser(__doc__.splitlines()[0]).parse_args()
    ...
    table = Table("quality/models", ["model", "OOF pAUC"], [["LightGBM", "0.1370"]])
    write_results(args.out, report, [table])
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "ROOT",
    "SHARED",
    "RESULTS",
    "NA",
    "Table",
    "fmt",
    "parser",
    "write_results",
    "environment",
    "CellStore",
    "add_reuse_argument",
]

ROOT = Path(__file__).resolve().parents[1]
"""The repository root."""

SHARED = Path(os.environ.get("LESIONBOOST_SHARED", ROOT.parent / "shared" / "slice3d"))
"""Folder of the real-data files (``train-metadata-sample.csv``, ...): ``$LESIONBOOST_SHARED``,
else ``<repo>/../shared/slice3d``."""

RESULTS = ROOT / "benchmarks" / "results"
"""Where full benchmark runs write their JSON by default, and where ``render.py`` reads."""

#: Distributions whose versions every result file records (the first installed name counts).
LIBRARIES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "polars": ("polars",),
    "lightgbm": ("lightgbm",),
    "xgboost": ("xgboost", "xgboost-cpu"),
    "catboost": ("catboost",),
    "lesionboost": ("lesionboost",),
}

NA = "--"
"""The cell of a value that was not measured (or does not apply)."""

_TABLE_ID = re.compile(r"^[a-z0-9_-]+/[a-z0-9_-]+$")


@dataclass
class Table:
    """One table of results, rendered into the documentation by ``benchmarks/render.py``.

    Parameters
    ----------
    id : str
        ``"<benchmark>/<table>"``, e.g. ``"quality/models"``: the id that the
        ``<!-- table: ID -->`` markers in ``README.md`` and ``docs/*.md`` name.
    columns : list of str
        Header cells.
    rows : list of list of str
        Body cells, already formatted (``"0.1649 ± 0.0047"``, ``"105 s"``, ``"--"``), one
        list per row with one cell per column. Numbers are formatted by the benchmark,
        so a figure reads the same wherever it appears.
    note : str, default=""
        One line shown in italics under the table: what was measured, on what, how.

    Raises
    ------
    ValueError
        For a malformed id, no columns, or a row whose length differs from ``columns``.
    TypeError
        For a cell that is not a string.

    Examples
    --------
    >>> Table("memory/stages", ["stage", "peak RSS"], [["fit", "3.45 GB"]]).columns
    ['stage', 'peak RSS']
    """

    id: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""

    def __post_init__(self) -> None:
        if not _TABLE_ID.match(self.id):
            raise ValueError(
                f"Table id {self.id!r} must look like '<benchmark>/<table>' "
                "(lower-case letters, digits, '_' or '-'), e.g. 'quality/models'."
            )
        self.columns = list(self.columns)
        self.rows = [list(row) for row in self.rows]
        if not self.columns:
            raise ValueError(f"Table {self.id!r} has no columns.")
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"Table {self.id!r}, row {i}: {len(row)} cells for {len(self.columns)} "
                    f"columns {self.columns}."
                )
        for cell in (*self.columns, *(cell for row in self.rows for cell in row), self.note):
            if not isinstance(cell, str):
                raise TypeError(
                    f"Table {self.id!r}: cell {cell!r} is a {type(cell).__name__}; format "
                    "numbers as text in the benchmark (e.g. f'{value:.4f}')."
                )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"id", "columns", "rows", "note"}``."""
        return {"id": self.id, "columns": self.columns, "rows": self.rows, "note": self.note}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Table:
        """Build a table from its JSON form (see :meth:`to_dict`).

        Raises
        ------
        ValueError
            When a key is missing.
        """
        missing = [key for key in ("id", "columns", "rows") if key not in data]
        if missing:
            raise ValueError(f"Table {data.get('id', '?')!r} lacks the key(s) {missing}.")
        return cls(
            id=data["id"],
            columns=list(data["columns"]),
            rows=[list(row) for row in data["rows"]],
            note=data.get("note", "") or "",
        )


def fmt(value: Any, spec: str = ".4f", suffix: str = "") -> str:
    """A number as a table cell: ``format(value, spec) + suffix``, or :data:`NA` for none.

    ``None`` and NaN give :data:`NA`, so a missing figure never reads as a number.

    Examples
    --------
    >>> fmt(0.16491), fmt(0.72, ".0%"), fmt(105.2, ".0f", " s"), fmt(None), fmt(float("nan"))
    ('0.1649', '72%', '105 s', '--', '--')
    """
    if value is None:
        return NA
    number = float(value)
    if number != number:  # NaN
        return NA
    return format(number, spec) + suffix


class _BenchmarkParser(argparse.ArgumentParser):
    """An argument parser that fills ``--out`` after parsing (see :func:`parser`)."""

    def __init__(self, *args: Any, benchmark: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.benchmark = benchmark

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extra = super().parse_known_args(args, namespace)
        if getattr(parsed, "out", None) is None and not getattr(parsed, "small", False):
            parsed.out = RESULTS / f"{self.benchmark}.json"
        return parsed, extra


def parser(description: str, name: str | None = None) -> argparse.ArgumentParser:
    """The argument parser every benchmark starts from: ``--small`` and ``--out``.

    Parameters
    ----------
    description : str
        The script's one-line description (e.g. the first line of its docstring).
    name : str, optional
        The benchmark's name, which names its result file; default: the stem of
        the script being run (``sys.argv[0]``), e.g. ``"quality"``.

    Returns
    -------
    argparse.ArgumentParser
        Add the script's own arguments to it. After ``parse_args()``, ``args.out``
        is the ``--out`` path if given; else ``benchmarks/results/<name>.json`` for a
        full run and ``None`` for a ``--small`` run (which then writes nothing unless
        told where: the tests pass ``--out``).

    Examples
    --------
    >>> args = parser("demo", name="quality").parse_args([])
    >>> args.out.name, args.small
    ('quality.json', False)
    >>> parser("demo", name="quality").parse_args(["--small"]).out is None
    True
    """
    benchmark = name or Path(sys.argv[0]).stem or "benchmark"
    result = _BenchmarkParser(
        description=description,
        benchmark=benchmark,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    result.add_argument(
        "--small",
        action="store_true",
        help="tiny sizes that finish in seconds: checks that the benchmark runs, not its figures",
    )
    result.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE.json",
        help=f"where to write the results (full runs: benchmarks/results/{benchmark}.json; "
        "--small runs: nowhere unless given)",
    )
    return result


def _version(names: Sequence[str]) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def environment() -> dict[str, Any]:
    """Where a result was measured: Python, platform, CPUs and library versions.

    Versions come from the installed distributions' metadata, so nothing heavy is imported.

    Returns
    -------
    dict
        ``python``, ``platform``, ``machine``, ``cpu_count``, ``usable_cpus`` (the CPUs
        this process may run on), ``libraries`` (name -> version, ``None`` when not
        installed) and ``date_utc``.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "libraries": {name: _version(dists) for name, dists in LIBRARIES.items()},
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _jsonable(value: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars and arrays, paths, sets; anything else as text."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def write_results(
    path: str | os.PathLike[str] | None,
    report: Mapping[str, Any],
    tables: Sequence[Table],
) -> Path | None:
    """Write a benchmark's JSON file atomically: its report, its tables and the environment.

    Parameters
    ----------
    path : path-like or None
        The file to write (parent folders are created); ``None`` writes nothing
        (a ``--small`` run without ``--out``).
    report : mapping
        The benchmark's own figures. Must not hold the key ``"tables"``. An
        ``"environment"`` mapping in it (e.g. the GPU's name) is kept and completed
        by :func:`environment`.
    tables : sequence of Table
        The tables this run produced; ids must be unique.

    Returns
    -------
    pathlib.Path or None
        The file written.

    Raises
    ------
    ValueError
        When ``report`` holds ``"tables"`` or two tables share an id.

    Notes
    -----
    The JSON is written to a temporary file in the same folder and moved into
    place with :func:`os.replace`, so a reader never sees a half-written file.
    """
    if "tables" in report:
        raise ValueError("report must not hold the key 'tables'; pass the tables separately.")
    ids = [table.id for table in tables]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"Duplicate table ids: {duplicates}.")
    if path is None:
        return None
    target = Path(path)
    own_env = report.get("environment")
    env = {**environment(), **(own_env if isinstance(own_env, Mapping) else {})}
    payload = {**report, "tables": [table.to_dict() for table in tables], "environment": env}
    text = json.dumps(payload, indent=1, ensure_ascii=False, default=_jsonable) + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def fingerprint(params: Mapping[str, Any]) -> str:
    """A short, stable digest of a configuration (keys sorted, values as JSON or text).

    Examples
    --------
    >>> fingerprint({"a": 1, "b": (2, 3)}) == fingerprint({"b": [2, 3], "a": 1})
    True
    >>> len(fingerprint({}))
    10
    """
    import hashlib

    text = json.dumps(dict(params), sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def add_reuse_argument(cli: argparse.ArgumentParser) -> None:
    """``--reuse RESULT_JSON`` (repeatable): the result files a :class:`CellStore` reuses.

    Examples
    --------
    >>> cli = argparse.ArgumentParser()
    >>> add_reuse_argument(cli)
    >>> [str(p) for p in cli.parse_args(["--reuse", "a.json", "--reuse", "b.json"]).reuse]
    ['a.json', 'b.json']
    """
    cli.add_argument(
        "--reuse",
        type=Path,
        action="append",
        default=[],
        metavar="RESULT_JSON",
        help="take the cells a result file recorded (e.g. benchmarks/results/<name>.json) "
        "instead of measuring them again, where their keys (data, configuration) match; "
        "only while the code they measured is unchanged (repeatable)",
    )


class CellStore:
    """Finished benchmark cells keyed by ``(data set, row)``, kept as JSON lines.

    A long benchmark appends each cell as it finishes, so a rerun after an
    interruption (or with more rows) skips what is already measured. Keys should
    name everything a cell depends on (data size, seed, folds, configuration
    :func:`fingerprint`). Every cell that passes through the store carries its
    key as ``cell["cell_key"] == [data, row]``, so a result file written from
    the cells names where each came from, and :meth:`reuse` can read them back.

    Parameters
    ----------
    path : path or None
        The JSON-lines file (created on the first :meth:`put`); ``None`` keeps
        the cells in memory only.
    reuse : sequence of paths, optional
        Result files whose cells to :meth:`reuse`.

    Examples
    --------
    >>> store = CellStore(None)
    >>> store.put("world/0", "raw", {"pauc": 0.15})
    >>> store.get("world/0", "raw"), store.get("world/1", "raw")
    ({'pauc': 0.15, 'cell_key': ['world/0', 'raw']}, None)
    """

    def __init__(self, path: Path | None, reuse: Sequence[Path] = ()) -> None:
        self.path = path
        self.cells: dict[tuple[str, str], dict[str, Any]] = {}
        for results in reuse:
            self.reuse(results)
        if path is not None and path.exists():
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    data, row, cell = entry["data"], entry["row"], entry["cell"]
                except (ValueError, KeyError):  # a line cut short by an interruption
                    print(f"{path}:{number}: unreadable cell skipped", file=sys.stderr)
                    continue
                self.cells[(data, row)] = cell | {"cell_key": [data, row]}

    def get(self, data: str, row: str) -> dict[str, Any] | None:
        """The stored cell, or None."""
        return self.cells.get((data, row))

    def put(self, data: str, row: str, cell: dict[str, Any]) -> None:
        """Store ``cell`` (recording its key in it) and append it to the file."""
        cell["cell_key"] = [data, row]
        self.cells[(data, row)] = cell
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            line = json.dumps({"data": data, "row": row, "cell": cell}, default=_jsonable)
            with self.path.open("a") as handle:
                handle.write(line + "\n")

    def reuse(self, results: Path) -> int:
        """Take the keyed cells of a benchmark's result file; return how many.

        Every object in the file that carries a ``cell_key`` (as cells written
        through a store do) becomes a stored cell, unless the store already holds
        one under that key. The keys name the configuration, not the code it ran:
        reuse a result file only while the code its cells measured is unchanged.

        Examples
        --------
        >>> import tempfile
        >>> report = {"runs": [{"models": {"raw": {"pauc": 0.15, "cell_key": ["w/0", "raw"]}}}]}
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "result.json"
        ...     _ = path.write_text(json.dumps(report))
        ...     store = CellStore(None)
        ...     store.reuse(path), store.get("w/0", "raw")["pauc"]
        (1, 0.15)
        """
        try:
            report = json.loads(Path(results).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{results}: no such result file to reuse cells from; pass a benchmark's "
                "JSON (e.g. benchmarks/results/robustness.json) or drop --reuse"
            ) from None
        except ValueError as error:
            raise ValueError(f"{results} is not a benchmark result (JSON): {error}") from None
        found = 0
        pending: list[Any] = [report]
        while pending:
            item = pending.pop()
            if isinstance(item, dict):
                key = item.get("cell_key")
                if isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key):
                    found += 1
                    self.cells.setdefault((key[0], key[1]), item)
                    continue
                pending.extend(item.values())
            elif isinstance(item, list):
                pending.extend(item)
        print(f"{results}: {found} cell(s) to reuse", file=sys.stderr)
        return found

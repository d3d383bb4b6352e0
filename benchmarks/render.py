"""Copy the benchmark tables of ``benchmarks/results/*.json`` into the documentation.

Every figure table in ``README.md`` and ``docs/*.md`` sits between two markers::

    <!-- table: quality/models -->
    <!-- /table -->

This script replaces what lies between them with the Markdown form of the table
of that id (header, separator, rows, then the table's note in italics), read
from the ``"tables"`` of the JSON files that the benchmarks write
(``benchmarks/_common.py``). Markers inside fenced code blocks are left alone.

One table is composed here rather than by a benchmark: ``summary/headline``
(the README's results table) is the ``<benchmark>/headline`` tables of
:data:`HEADLINE_PARTS`, in that order, each with columns ``what | target |
measured``, with a fourth column naming the script. It exists only when every
part does.

Usage::

    python benchmarks/render.py            # rewrite README.md and docs/*.md
    python benchmarks/render.py --check    # exit 1 and list the blocks that are out of date
                                           # or have no table, without writing
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT, Table  # noqa: E402

__all__ = [
    "HEADLINE_PARTS",
    "Block",
    "compose_headline",
    "find_blocks",
    "check_text",
    "load_tables",
    "missing_parts",
    "render_table",
    "render_text",
]

#: Benchmarks whose ``<name>/headline`` tables make up ``summary/headline``, in row order.
HEADLINE_PARTS: tuple[str, ...] = (
    "quality",
    "robustness",
    "learnability",
    "fidelity",
    "features",
    "images",
    "tuning",
    "memory",
)
HEADLINE_ID = "summary/headline"
HEADLINE_COLUMNS = ["what", "target", "measured"]

_BLOCK = re.compile(
    r"^<!-- table: (?P<id>\S+) -->[ \t]*\n(?P<body>.*?)^<!-- /table -->[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_OPEN = re.compile(r"^<!-- table: \S+ -->[ \t]*$", re.MULTILINE)
_FENCE = re.compile(
    r"^ {0,3}(?P<fence>`{3,}|~{3,})[^\n]*\n.*?^ {0,3}(?P=fence)[ \t]*$", re.MULTILINE | re.DOTALL
)


@dataclass(frozen=True)
class Block:
    """One ``<!-- table: ID -->`` ... ``<!-- /table -->`` block of a document.

    Attributes
    ----------
    id : str
        The table id the opening marker names.
    line : int
        1-based line of the opening marker.
    start, end : int
        Character span of the inside (what :func:`render_text` replaces).
    """

    id: str
    line: int
    start: int
    end: int


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def find_blocks(text: str) -> list[Block]:
    """The table blocks of a Markdown text, in order, outside fenced code blocks.

    Raises
    ------
    ValueError
        For an opening marker without its closing ``<!-- /table -->`` before the
        next opening marker or the end of the text.

    Examples
    --------
    >>> [b.id for b in find_blocks("a\\n<!-- table: x/y -->\\n<!-- /table -->\\n")]
    ['x/y']
    """
    masked = _FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    blocks: list[Block] = []
    for m in _BLOCK.finditer(masked):
        inner = _OPEN.search(masked, m.start("body"), m.end("body"))
        if inner is not None:
            raise ValueError(
                f"line {_line(text, m.start())}: <!-- table: {m['id']} --> has no <!-- /table --> "
                f"before the next opening marker (line {_line(text, inner.start())})."
            )
        blocks.append(Block(m["id"], _line(text, m.start()), m.start("body"), m.end("body")))
    if len(blocks) != len(_OPEN.findall(masked)):
        matched = {block.line for block in blocks}
        for m in _OPEN.finditer(masked):
            if _line(text, m.start()) not in matched:
                raise ValueError(
                    f"line {_line(text, m.start())}: {m.group(0).strip()} has no <!-- /table -->."
                )
    return blocks


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|") or " "


def render_table(table: Table | Mapping[str, Any]) -> str:
    """The Markdown of one table: header, separator, rows, then the note in italics.

    Examples
    --------
    >>> print(render_table(Table("a/b", ["x", "y"], [["1", "2"]], note="Seed 0.")))
    | x | y |
    | --- | --- |
    | 1 | 2 |
    <BLANKLINE>
    _Seed 0._
    """
    table = table if isinstance(table, Table) else Table.from_dict(table)
    lines = [
        "| " + " | ".join(_cell(c) for c in table.columns) + " |",
        "| " + " | ".join("---" for _ in table.columns) + " |",
        *("| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows),
    ]
    note = " ".join(table.note.split())
    if note:
        lines += ["", f"_{note}_"]
    return "\n".join(lines)


def render_text(text: str, tables: Mapping[str, Table | Mapping[str, Any]]) -> str:
    """Fill every table block of ``text`` whose id is in ``tables``; leave the others as they are.

    Parameters
    ----------
    text : str
        A Markdown document with ``<!-- table: ID -->`` ... ``<!-- /table -->`` blocks.
    tables : mapping of str to Table or dict
        Tables by id (a dict is a table's JSON form, see ``Table.to_dict``).

    Returns
    -------
    str
        The document with the inside of each known block replaced by
        :func:`render_table`. Rendering twice gives the same text.

    Examples
    --------
    >>> doc = "<!-- table: a/b -->\\nold\\n<!-- /table -->\\n"
    >>> print(render_text(doc, {"a/b": {"id": "a/b", "columns": ["x"], "rows": [["1"]]}}), end="")
    <!-- table: a/b -->
    | x |
    | --- |
    | 1 |
    <!-- /table -->
    """
    pieces: list[str] = []
    position = 0
    for block in find_blocks(text):
        if block.id not in tables:
            continue
        pieces += [text[position : block.start], render_table(tables[block.id]) + "\n"]
        position = block.end
    pieces.append(text[position:])
    return "".join(pieces)


def compose_headline(tables: Mapping[str, Table]) -> Table | None:
    """``summary/headline``: the headline tables of :data:`HEADLINE_PARTS` stacked, script named.

    Parts without a recorded run are left out and named in the table's note.

    Returns
    -------
    Table or None
        ``None`` while no part has a recorded run (:func:`missing_parts` says which).

    Raises
    ------
    ValueError
        When a part's columns are not ``what | target | measured``.
    """
    rows: list[list[str]] = []
    absent = []
    for name in HEADLINE_PARTS:
        part = tables.get(f"{name}/headline")
        if part is None:
            absent.append(f"`{name}.py`")
            continue
        if part.columns != HEADLINE_COLUMNS:
            raise ValueError(
                f"{part.id} has columns {part.columns}; {HEADLINE_ID} needs {HEADLINE_COLUMNS}."
            )
        rows += [[*row, f"`{name}.py`"] for row in part.rows]
    if not rows:
        return None
    note = (
        "Each row comes from the named script in benchmarks/; its JSON file in "
        "benchmarks/results/ records the machine and library versions."
    )
    if absent:
        note += f" No run of {', '.join(absent)} is recorded."
    return Table(HEADLINE_ID, [*HEADLINE_COLUMNS, "benchmark"], rows, note=note)


def missing_parts(tables: Mapping[str, Any]) -> list[str]:
    """The ``<benchmark>/headline`` ids that ``summary/headline`` still lacks."""
    return [f"{name}/headline" for name in HEADLINE_PARTS if f"{name}/headline" not in tables]


def load_tables(results_dir: str | Path = RESULTS) -> dict[str, Table]:
    """Every table of the ``*.json`` files in ``results_dir``, by id, plus ``summary/headline``.

    Parameters
    ----------
    results_dir : path-like, default=benchmarks/results
        Folder of the benchmarks' JSON files (a missing folder holds no tables).

    Returns
    -------
    dict of str to Table

    Raises
    ------
    ValueError
        For a file that is not JSON or whose ``"tables"`` are malformed, and for an
        id that two files define.
    """
    tables: dict[str, Table] = {}
    origin: dict[str, Path] = {}
    folder = Path(results_dir)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read it as JSON ({exc}).") from exc
        entries = data.get("tables", []) if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ValueError(f"{path}: 'tables' must be a list of tables.")
        for entry in entries:
            try:
                table = Table.from_dict(entry)
            except (TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"{path}: {exc}") from exc
            if table.id in tables:
                raise ValueError(
                    f"{path}: table {table.id!r} is also defined in {origin[table.id]}."
                )
            tables[table.id], origin[table.id] = table, path
    headline = compose_headline(tables)
    if headline is not None:
        tables[HEADLINE_ID] = headline
    return tables


def documents(root: Path = ROOT) -> list[Path]:
    """The files this script maintains: ``README.md`` and ``docs/*.md``."""
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.is_file()]


def _why_missing(table_id: str, tables: Mapping[str, Table], results: Path) -> str:
    if table_id == HEADLINE_ID:
        return (
            "composed from the headline tables of "
            + ", ".join(HEADLINE_PARTS)
            + "; missing: "
            + ", ".join(missing_parts(tables))
        )
    benchmark = table_id.split("/", 1)[0]
    folder = results.resolve()
    shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
    if (folder / f"{benchmark}.json").is_file():
        return f"{shown}/{benchmark}.json has no such table (run benchmarks/{benchmark}.py again)"
    return f"no table with this id in {shown}/*.json (run benchmarks/{benchmark}.py)"


def check_text(
    text: str, tables: Mapping[str, Table], *, name: str = "<text>", results: Path = RESULTS
) -> list[str]:
    """What is out of date in one document: one line per block that lacks a table or differs.

    Returns
    -------
    list of str
        ``"<name>:<line>: <id>: <why>"`` for each such block; empty when the
        document is up to date.
    """
    problems = []
    for block in find_blocks(text):
        if block.id not in tables:
            why = _why_missing(block.id, tables, results)
        elif text[block.start : block.end] != render_table(tables[block.id]) + "\n":
            why = "differs from its JSON"
        else:
            continue
        problems.append(f"{name}:{block.line}: {block.id}: {why}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (1: ``--check`` found problems)."""
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    cli.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and list the blocks that differ or lack a table",
    )
    cli.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON files")
    cli.add_argument(
        "files", nargs="*", type=Path, help="Markdown files (default: README.md and docs/*.md)"
    )
    args = cli.parse_args(argv)
    try:
        tables = load_tables(args.results)
        problems: list[str] = []
        for path in args.files or documents():
            text = path.read_text(encoding="utf8")
            name = path.resolve().relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path
            found = check_text(text, tables, name=str(name), results=args.results)
            if args.check:
                problems += found
                continue
            problems += [p for p in found if not p.endswith("differs from its JSON")]
            new = render_text(text, tables)
            if new != text:
                path.write_text(new, encoding="utf8")
                print(f"updated {name}")
    except (OSError, ValueError) as exc:
        print(f"render.py: error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print("\n".join(problems) if problems else "every table is up to date")
        return 1 if problems else 0
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run a benchmark script's ``--small`` mode in a fresh interpreter and check what it writes.

Every script in ``benchmarks/`` takes ``--small`` and ``--out FILE.json``; the tests
check the JSON it writes, its ``"tables"`` against the ``<!-- table: ID -->`` blocks
of ``README.md`` and ``docs/*.md`` (:func:`check_tables`), and sometimes what it prints.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# the benchmark scripts import their shared helpers (`_common`) from their own folder
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import render  # noqa: E402  (benchmarks/render.py)

#: Column count of every table the benchmarks write, by id (the variants tables have
#: one column per data set and are checked by their own test).
COLUMNS: dict[str, int] = {
    "quality/headline": 3,
    "quality/models": 5,
    "quality/gap": 3,
    "learnability/headline": 3,
    "learnability/fits": 4,
    "fidelity/headline": 3,
    "fidelity/checks": 3,
    "fidelity/univariate_auc": 4,
    "fidelity/followup_auc": 4,
    "fidelity/scenarios": 5,
    "features/headline": 3,
    "features/speed": 6,
    "features/groups": 2,
    "ablation/groups": 3,
    "ablation/outlier": 2,
    "images/headline": 3,
    "images/speed": 3,
    "images/scaling": 3,
    "images/quality": 6,
    "images/cnn": 3,
    "tuning/headline": 3,
    "tuning/throughput": 3,
    "memory/headline": 3,
    "memory/stages": 3,
    "defaults/candidates": 7,
    "defaults/race": 7,
    "defaults/full_size": 6,
    "defaults/check": 10,  # candidate, mean, worst world and the seven worlds
    "ceiling/pauc": 8,
    "ceiling/gap": 8,
    "devices/models": 6,
    "devices/reproducibility": 5,
}


def run_small(
    script: str, out: Path, *extra: str, timeout: float = 600
) -> tuple[dict[str, Any], str]:
    """Run ``benchmarks/<script> --small --out <out> <extra...>``; return (report, stdout).

    Fails the test with the end of stderr when the script exits non-zero.
    """
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--small", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(Path(out).read_text())
    return report, done.stdout


def import_benchmark(script: str) -> ModuleType:
    """Import ``benchmarks/<script>`` as a module, to test its functions directly."""
    spec = importlib.util.spec_from_file_location(
        f"{Path(script).stem}_benchmark", BENCHMARKS / script
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def doc_table_ids(benchmark: str) -> set[str]:
    """The table ids of ``benchmark`` that ``README.md`` and ``docs/*.md`` show.

    A ``<benchmark>/headline`` table counts when the README's ``summary/headline``
    block is composed from it (``render.HEADLINE_PARTS``).
    """
    ids: set[str] = set()
    for path in render.documents():
        ids |= {block.id for block in render.find_blocks(path.read_text(encoding="utf8"))}
    if render.HEADLINE_ID in ids:
        ids |= {f"{name}/headline" for name in render.HEADLINE_PARTS}
    return {table_id for table_id in ids if table_id.split("/", 1)[0] == benchmark}


def check_tables(
    report: Mapping[str, Any], benchmark: str, *, absent: Iterable[str] = ()
) -> dict[str, render.Table]:
    """Check a benchmark's JSON tables against the documentation; return them by id.

    - every id the docs use for ``benchmark`` (less ``absent``) is there, and every
      table is a known one (some, like the GPU's, are not shown in the docs);
    - headline tables have the columns ``what | target | measured``, the others the
      column counts of :data:`COLUMNS`;
    - every table has rows, and no cell is empty;
    - ``render.render_text`` fills each of the docs' blocks of these ids with the
      table, and the filled documents pass ``render.check_text`` for them.
    """
    tables = {entry["id"]: render.Table.from_dict(entry) for entry in report["tables"]}
    assert doc_table_ids(benchmark) - set(absent) <= set(tables), sorted(tables)
    unknown = {t for t in tables if t not in COLUMNS and not t.endswith("/headline")}
    per_data_set = ("variants", "robustness", "second_stage", "members")  # columns vary
    assert not unknown or benchmark in per_data_set, sorted(unknown)
    for table_id, table in tables.items():
        if table_id.endswith("/headline"):
            assert table.columns == render.HEADLINE_COLUMNS, table_id
        if table_id in COLUMNS:
            assert len(table.columns) == COLUMNS[table_id], (table_id, table.columns)
        assert table.rows, f"{table_id} has no rows"
        for row in [table.columns, *table.rows]:
            assert all(cell.strip() for cell in row), (table_id, row)
    filled: set[str] = set()
    for path in render.documents():
        text = path.read_text(encoding="utf8")
        new = render.render_text(text, tables)
        for block in render.find_blocks(new):
            if block.id in tables:
                assert new[block.start : block.end] == render.render_table(tables[block.id]) + "\n"
                filled.add(block.id)
        problems = render.check_text(new, tables, name=path.name)
        assert [p for p in problems if p.split(": ")[1] in tables] == [], problems
    assert filled == set(tables) & _blocks(), (sorted(filled), sorted(tables))
    return tables


def _blocks() -> set[str]:
    ids: set[str] = set()
    for path in render.documents():
        ids |= {block.id for block in render.find_blocks(path.read_text(encoding="utf8"))}
    return ids

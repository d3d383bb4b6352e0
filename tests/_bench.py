"""Run a benchmark script's ``--small`` mode in a fresh interpreter and read its report.

Every script in ``benchmarks/`` takes ``--small`` and ``--out FILE.json``; the tests
check the JSON it writes (and sometimes the table it prints).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


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
    spec = importlib.util.spec_from_file_location(f"{Path(script).stem}_benchmark",
                                                  BENCHMARKS / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

"""What every ``lesionboost`` subcommand shares: output flags, exit codes, JSON and logging.

Conventions (modelled on Optuna's CLI): data and ``--json`` summaries go to
stdout, logs and progress to stderr; ``-v/--verbose`` and ``-q/--quiet`` set the
log level, ``--debug`` shows tracebacks; exit codes: 0 success, 1 failure (one-line
error), 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .._utils._atomic import atomic_path
from ..exceptions import LesionBoostError

logger = logging.getLogger("lesionboost")


EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(LesionBoostError, ValueError):
    """Raised by a subcommand for an invalid combination of arguments (exit code 2)."""


def add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    group.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    group.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    group.add_argument(
        "--json", action="store_true", help="print a JSON summary on stdout when done"
    )


def emit(args: argparse.Namespace, summary: dict[str, Any], text: str | None = None) -> None:
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    elif text:
        print(text)


def configure_logging(args: argparse.Namespace) -> None:
    if getattr(args, "quiet", False):
        level = logging.ERROR
    elif getattr(args, "verbose", 0) >= 1 or getattr(args, "debug", False):
        level = logging.DEBUG
    else:
        level = logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[lesionboost] %(message)s"))
    root = logging.getLogger("lesionboost")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("optuna").setLevel(max(level, logging.WARNING))
    if getattr(args, "quiet", False):
        os.environ["TQDM_DISABLE"] = "1"  # tqdm reads this when a bar is created


def check_positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise UsageError(f"{name} must be positive, got {value}.")


def write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=json_default) + "\n", encoding="utf-8")


def json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (np.ndarray, tuple, set)):
        return list(value)
    return str(value)


def quiet_libraries(args: argparse.Namespace) -> None:
    import optuna

    # Optuna logs every trial at INFO; our progress bar and summary replace that.
    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    # OpenMP threads that spin while waiting make LightGBM/XGBoost many times slower on
    # a machine whose cores are busy with other work (several times slower for the
    # same CV); sleeping waits cost little when the cores are free. Must be set before
    # the GBDT libraries load their OpenMP runtime; an explicit setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

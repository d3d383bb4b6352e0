"""The ``lesionboost`` command line: small subcommands over the library.

Conventions shared by every subcommand (modelled on Optuna's CLI):

* data and ``--json`` summaries go to stdout, logs and progress to stderr;
* ``-v/--verbose`` and ``-q/--quiet`` set the log level, ``--debug`` shows tracebacks;
* exit codes: 0 success, 1 failure (one-line error), 2 usage error, 130 interrupted.

Each subcommand is a pair of functions: ``_add_<name>(subparsers)`` declares its
arguments and ``_run_<name>(args) -> int`` does the work by calling the library.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__
from ._errors import LesionBoostError

__all__ = ["main", "build_parser"]

logger = logging.getLogger("lesionboost")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(LesionBoostError, ValueError):
    """Raised by a subcommand for an invalid combination of arguments (exit code 2)."""


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    group.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    group.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    group.add_argument(
        "--json", action="store_true", help="print a JSON summary on stdout when done"
    )


def _emit(args: argparse.Namespace, summary: dict[str, Any], text: str | None = None) -> None:
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    elif text:
        print(text)


# --------------------------------------------------------------------------- show-versions
def _add_show_versions(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "show-versions",
        help="print library versions, onnxruntime providers and CUDA facts",
        description="Print library versions, onnxruntime providers and CUDA facts.",
        epilog="example: lesionboost show-versions --json",
    )
    _common(parser)


def _run_show_versions(args: argparse.Namespace) -> int:
    from ._show_versions import show_versions

    show_versions(as_json=args.json)
    return EXIT_OK


# name -> (declare arguments, run)
COMMANDS: dict[str, tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]] = {
    "show-versions": (_add_show_versions, _run_show_versions),
}


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="lesionboost",
        description=(
            "Gradient-boosted skin-cancer triage on ISIC 2024 SLICE-3D. "
            "Run without data to use the built-in simulator."
        ),
        epilog="example: lesionboost tune --out runs/demo   (tunes on simulated data)",
    )
    parser.add_argument("--version", action="version", version=f"lesionboost {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add, _ in COMMANDS.values():
        add(subparsers)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lesionboost`` command; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _configure_logging(args)
    _, run = COMMANDS[args.command]
    try:
        return run(args)
    except KeyboardInterrupt:
        print("lesionboost: interrupted; no partial output was kept.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        if args.debug:
            raise
        print(f"lesionboost {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (LesionBoostError, OSError, ValueError, KeyError) as exc:
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"lesionboost {args.command}: error: {message}", file=sys.stderr)
        return EXIT_FAILURE

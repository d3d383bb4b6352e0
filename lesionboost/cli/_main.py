"""``lesionboost``: parse the command line, run one subcommand, turn errors into exit codes."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from ..exceptions import LesionBoostError, OutputError
from ._output import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    configure_logging,
)
from ._parsers import COMMANDS, build_parser

__all__ = ["main"]


def _runner(command: str) -> Callable[[argparse.Namespace], int]:
    """The function that runs ``command``, imported from its module on first use."""
    module, _, function = COMMANDS[command].partition(":")
    runner: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(module, __package__), function
    )
    return runner


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
    configure_logging(args)
    try:
        return _runner(args.command)(args)
    except KeyboardInterrupt:
        if args.command == "tune":  # finished trials live in the study, not in the outputs
            print(
                "lesionboost: interrupted; finished trials are kept in the study: run the "
                "same command again to resume.",
                file=sys.stderr,
            )
        else:
            print("lesionboost: interrupted; no partial output was kept.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, OutputError) as exc:
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

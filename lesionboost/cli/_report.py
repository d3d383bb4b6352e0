"""``lesionboost report``: the plots and HTML page of a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._output import EXIT_OK, emit


def run_report(args: argparse.Namespace) -> int:
    from ..report import write_report

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"{run_dir} is not a folder; pass the --out folder of a `lesionboost tune` run."
        )
    out = write_report(run_dir, out_dir=args.out)
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    plots = [name for name in files if name.endswith(".png")]
    emit(
        args,
        {"report": str(out), "files": files, "html": str(out / "index.html")},
        f"wrote {out / 'index.html'} with {len(plots)} plots",
    )
    return EXIT_OK

"""The ``lesionboost`` command line: small subcommands over the library.

Conventions shared by every subcommand (modelled on Optuna's CLI):

* data and ``--json`` summaries go to stdout, logs and progress to stderr;
* ``-v/--verbose`` and ``-q/--quiet`` set the log level, ``--debug`` shows tracebacks;
* exit codes: 0 success, 1 failure (one-line error), 2 usage error, 130 interrupted.

Each subcommand is a pair of functions: ``_add_<name>(subparsers)`` declares its
arguments and ``_run_<name>(args) -> int`` does the work by calling the library
(``_deferred`` makes one whose body lives in :mod:`lesionboost._cli_run`).
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


def _deferred(name: str) -> Callable[[argparse.Namespace], int]:
    """A ``_run_<command>`` whose body is ``lesionboost._cli_run.<name>``, imported on use."""

    def run(args: argparse.Namespace) -> int:
        from . import _cli_run

        result: int = getattr(_cli_run, name)(args)
        return result

    run.__name__ = run.__qualname__ = f"_{name}"
    return run


# --------------------------------------------------------------------------- simulate
def _add_simulate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="write a simulated SLICE-3D cohort (Kaggle files + oracle risk)",
        description=(
            "Simulate a SLICE-3D cohort calibrated to the real data and write "
            "train-metadata.csv (exact Kaggle schema), oracle.csv (true logit and "
            "tabular-only logit per isic_id), optionally train-image.hdf5, and with "
            "--test-patients a test-metadata.csv, test-oracle.csv and test-image.hdf5."
        ),
        epilog="example: lesionboost simulate --out sim-data --patients 200 --images 1000",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    parser.add_argument("--patients", type=int, default=1042, metavar="N",
                        help="training patients (default 1042: ~401k lesions)")
    parser.add_argument("--test-patients", type=int, default=0, metavar="N",
                        help="new patients for a test split (default 0: none)")
    parser.add_argument("--images", default="0", metavar="N|all",
                        help="train crops to render into train-image.hdf5 (a seeded random "
                        "choice of lesions, independent of the label; default 0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    _common(parser)


def _run_simulate(args: argparse.Namespace) -> int:
    import time

    if args.patients < 1:
        raise UsageError(f"--patients must be >= 1, got {args.patients}.")
    if args.test_patients < 0:
        raise UsageError(f"--test-patients must be >= 0, got {args.test_patients}.")
    if args.images == "all":
        images: bool | int = True
    else:
        try:
            images = int(args.images)
        except ValueError:
            raise UsageError(f"--images takes a count or 'all', got {args.images!r}.") from None
        if images < 0:
            raise UsageError(f"--images must be >= 0, got {images}.")
    from .simulate import simulate_slice3d, write_slice3d

    start = time.perf_counter()
    sim = simulate_slice3d(
        args.patients, n_test_patients=args.test_patients, images=images, seed=args.seed
    )
    paths = write_slice3d(sim, args.out)
    summary = {
        "out": args.out,
        "patients": args.patients,
        "rows": sim.train.height,
        "positives": int(sim.train.get_column("target").sum()),
        "test_rows": 0 if sim.test is None else sim.test.height,
        "images": len(sim.image_ids),
        "seed": args.seed,
        "seconds": round(time.perf_counter() - start, 2),
        "files": {key: str(path) for key, path in paths.items()},
    }
    _emit(args, summary, "\n".join(
        [f"simulated {summary['rows']} lesions ({summary['positives']} malignant) of "
         f"{args.patients} patients in {summary['seconds']} s"]
        + [f"  {path}" for path in summary["files"].values()]
    ))  # fmt: skip
    return EXIT_OK


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


# --------------------------------------------------------------------------- embed
def _parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like i/n (e.g. 0/4), got {text!r}.") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text}: need 0 <= i < n (shards are numbered from 0).")
    return index, count


def _add_embed(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed the crops of an HDF5 image file with an ONNX model (Parquet out)",
        description=(
            "Embed the JPEG crops of a Kaggle-layout HDF5 file with an ONNX image model "
            "(default: the built-in label-free embedder) on CUDA or CPU. Writes one row per "
            "crop: isic_id, image_failed, emb_000, ... A missing or corrupt crop gives a NaN "
            "row flagged in image_failed. --shard i/n embeds the i-th of n equal parts of the "
            "sorted ids, so several machines can split one large file."
        ),
        epilog="example: lesionboost embed --images train-image.hdf5 --out emb.parquet --shard 0/4",
    )
    parser.add_argument("--images", required=True, metavar="HDF5", help="Kaggle-layout image file")
    parser.add_argument(
        "--model", "--image-model", dest="model", metavar="MODEL.onnx",
        help="ONNX image model (default: the built-in label-free embedder)",
    )
    parser.add_argument("--out", required=True, metavar="PARQUET", help="output Parquet file")
    parser.add_argument(
        "--shard", metavar="i/n", help="embed shard i of n (0-based) of the sorted ids"
    )
    parser.add_argument(
        "--metadata", metavar="FILE",
        help="embed only the isic_id values of this CSV/Parquet file (default: every crop)",
    )
    parser.add_argument("--batch-size", type=int, metavar="N", help="crops per model call")
    parser.add_argument(
        "--providers", choices=("auto", "cpu", "cuda"), default="auto",
        help="onnxruntime device: auto = CUDA when available (default), else CPU",
    )
    parser.add_argument(
        "--output-name", metavar="NAME", help="model output to write (default: the embedding)"
    )
    parser.add_argument("--workers", type=int, metavar="N", help="JPEG decoding threads")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    _common(parser)


def _run_embed(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import numpy as np
    import polars as pl

    from ._atomic import atomic_path
    from .image import OnnxEmbedder
    from .io import ImageStore

    index, count = _parse_shard(args.shard)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise UsageError(f"{out} already exists; choose another --out or pass --force.")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}.")
    store = ImageStore(args.images)
    if args.metadata:
        source = Path(args.metadata)
        table = pl.read_parquet(source) if source.suffix == ".parquet" else pl.read_csv(
            source, columns=["isic_id"], infer_schema=False
        )
        if "isic_id" not in table.columns:
            raise UsageError(f"{source} has no isic_id column.")
        ids = sorted(set(table.get_column("isic_id").drop_nulls().to_list()))
    else:
        ids = sorted(store.ids())
    shard_ids = [str(v) for v in np.array_split(np.asarray(ids, dtype=object), count)[index]]
    embedder = OnnxEmbedder(
        args.model, providers=args.providers, batch_size=args.batch_size,
        output=args.output_name, workers=args.workers,
    )
    started = time.perf_counter()
    embeddings, failed = embedder.embed(store, shard_ids, return_failed=True)
    seconds = time.perf_counter() - started
    width = max(3, len(str(max(embeddings.shape[1] - 1, 0))))
    columns: dict[str, Any] = {
        "isic_id": pl.Series("isic_id", shard_ids, dtype=pl.String),
        "image_failed": pl.Series("image_failed", failed, dtype=pl.Boolean),
    }
    for j in range(embeddings.shape[1]):
        columns[f"emb_{j:0{width}d}"] = embeddings[:, j]
    from .image._features import TABLE_MODEL_KEY, TABLE_SHA_KEY

    # The model's identity travels with the embeddings, so that a model fitted on
    # them refuses embeddings of another model at predict time.
    provenance = {
        TABLE_MODEL_KEY: str(args.model) if args.model else "builtin",
        TABLE_SHA_KEY: embedder.sha256,
        "lesionboost.output": embedder.output,
        "lesionboost.input_size": str(embedder.input_size),
    }
    with atomic_path(out) as tmp:
        pl.DataFrame(columns).write_parquet(tmp, metadata=provenance)
    stats = embedder.stats
    summary = {
        "out": str(out),
        "images": len(shard_ids),
        "failed": int(failed.sum()),
        "missing": stats.missing if stats else 0,
        "corrupt": stats.corrupt if stats else 0,
        "dim": int(embeddings.shape[1]),
        "model": str(args.model) if args.model else "builtin",
        "output": embedder.output,
        "device": embedder.device,
        "providers": embedder.providers,
        "shard": f"{index}/{count}",
        "seconds": round(seconds, 3),
        "crops_per_s": round(len(shard_ids) / seconds, 1) if seconds > 0 else None,
    }
    _emit(
        args,
        summary,
        f"wrote {out}: {len(shard_ids)} crops x {embeddings.shape[1]} dims on {embedder.device} "
        f"({summary['crops_per_s']} crops/s), {int(failed.sum())} failed",
    )
    return EXIT_OK


# ------------------------------------------------------------------------- tune, predict, report
# Bodies live in lesionboost/_cli_run.py so that `lesionboost --help` stays fast.
def _add_tune(subparsers: Any) -> None:
    import textwrap

    parser = subparsers.add_parser(
        "tune",
        help="tune the ensemble with Optuna (resumable, distributed); fit and save the best",
        description=textwrap.fill(
            "Tune LesionBoostClassifier by patient-grouped out-of-fold pAUC with Optuna, then "
            "fit the best configuration on all data. Writes RUN_DIR/model/, best.json, "
            "folds.parquet, oof.parquet and report/. Without --data it tunes on the built-in "
            "simulator with demo settings (150 patients, 3 folds, LightGBM only, 60 rounds, 6 "
            "trials: a few minutes on 2 cores). Rerunning the same command resumes "
            "a killed run without losing finished trials. Several machines: start the same "
            "command with one --storage postgresql://... URL and --study NAME on each."
        ),
        epilog=(
            "examples:\n  lesionboost tune --out runs/demo\n"
            "  lesionboost tune --data train-metadata.csv --trials 100 --workers 2 "
            "--out runs/real\n"
            "  lesionboost tune --data train-metadata.csv --storage "
            "postgresql://user:pw@db/optuna --study isic --out runs/m1"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", metavar="CSV|PARQUET|DIR",
                        help="training metadata (default: simulate a demo cohort)")
    parser.add_argument("--images", metavar="HDF5", help="training crops (adds image features)")
    parser.add_argument("--image-model", metavar="MODEL",
                        help="image model for --images: an .onnx file, a `lesionboost embed` "
                        "Parquet file (embeds once for all trials) or a train_embedder folder "
                        "(default: the built-in embedder)")
    parser.add_argument("--trials", type=int, metavar="N",
                        help="finished trials the study should hold (default 50; demo 6)")
    parser.add_argument("--timeout", type=float, metavar="SEC",
                        help="stop starting trials after SEC seconds")
    parser.add_argument("--storage", metavar="URL",
                        help="Optuna storage: sqlite:///f.db, journal:PATH, postgresql://... "
                        "(default: $LESIONBOOST_STORAGE, else RUN_DIR/study.db, or "
                        "RUN_DIR/study.journal with --workers > 1)")
    parser.add_argument("--study", default="lesionboost", metavar="NAME",
                        help="study name in the storage (default: lesionboost)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="worker processes on this machine sharing the storage (default 1)")
    parser.add_argument("--out", default="runs/lesionboost", metavar="RUN_DIR",
                        help="run folder (default: runs/lesionboost)")
    parser.add_argument("--force", action="store_true",
                        help="discard a previous run in RUN_DIR and start over (a study in "
                        "a --storage outside RUN_DIR is never deleted)")
    parser.add_argument("--folds", type=int, metavar="K",
                        help="patient-grouped folds (default 5; demo 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of folds, sampler, models")
    parser.add_argument("--members", metavar="LIST",
                        help="comma-separated members (default lightgbm,xgboost,catboost; "
                        "demo lightgbm)")
    parser.add_argument("--rounds", type=int, metavar="N",
                        help="boosting rounds of every member (default: the estimator's; demo "
                        "60); small values make quick test runs")
    parser.add_argument("--patients", type=int, metavar="N",
                        help="size of the simulated cohort without --data (default 150)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the boosters train (default cpu)")
    parser.add_argument("--n-jobs", type=int, metavar="N",
                        help="threads per booster (default: all cores / workers)")
    _common(parser)


_run_tune = _deferred("run_tune")


def _add_predict(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="score new lesions with a saved model: a Kaggle submission (+ triage view)",
        description=(
            "Score the lesions of a metadata file with a saved model directory and write a "
            "Kaggle submission (isic_id,target). --top-k K also writes OUT-triage.csv: for "
            "each patient their K highest-risk lesions with rank, score and the three "
            "features that pushed the score up most (SHAP contributions of the members)."
        ),
        epilog="example: lesionboost predict --model runs/demo/model --data test-metadata.csv "
        "--out submission.csv --top-k 5",
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="saved model directory")
    parser.add_argument("--data", required=True, metavar="CSV|PARQUET",
                        help="metadata of the lesions to score (test-metadata.csv)")
    parser.add_argument("--images", metavar="HDF5", help="their crops (models with image features)")
    parser.add_argument("--out", required=True, metavar="CSV", help="submission file to write")
    parser.add_argument("--top-k", type=int, metavar="K",
                        help="also write OUT-triage.csv with each patient's top K lesions")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    _common(parser)


_run_predict = _deferred("run_predict")


def _add_report(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="draw the plots and HTML page of a tune run",
        description=(
            "Draw ROC (scored region TPR >= 0.8 shaded, pAUC printed), per-fold pAUC, "
            "optimisation history, feature importances and calibration as PNGs, plus one "
            "self-contained index.html, from a tune run folder. Needs matplotlib "
            '(pip install "lesionboost[report]").'
        ),
        epilog="example: lesionboost report runs/demo   (writes runs/demo/report/index.html)",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a tune run")
    parser.add_argument("--out", metavar="DIR", help="report folder (default RUN_DIR/report; "
                        "replaced atomically)")
    _common(parser)


_run_report = _deferred("run_report")


# name -> (declare arguments, run)
COMMANDS: dict[str, tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]] = {
    "show-versions": (_add_show_versions, _run_show_versions),
    "simulate": (_add_simulate, _run_simulate),
    "embed": (_add_embed, _run_embed),
    "tune": (_add_tune, _run_tune),
    "predict": (_add_predict, _run_predict),
    "report": (_add_report, _run_report),
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
        if args.command == "tune":  # finished trials live in the study, not in the outputs
            print("lesionboost: interrupted; finished trials are kept in the study: run the "
                  "same command again to resume.", file=sys.stderr)
        else:
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

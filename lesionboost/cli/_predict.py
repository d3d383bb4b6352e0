"""``lesionboost predict``: score new lesions with a saved model; a Kaggle submission and an
optional per-patient triage list."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import polars as pl

from .._utils._atomic import atomic_path
from .._utils._outputs import check_file_output, claim
from ._output import EXIT_OK, UsageError, emit, quiet_libraries

#: What the marker of a folder names as the writer of predict's files.
WRITTEN_BY = "lesionboost predict"


def run_predict(args: argparse.Namespace) -> int:
    quiet_libraries(args)
    from ..io import read_metadata, resolve_metadata_path, write_submission
    from ..persist import load_model
    from ..schema import LEAK_COLUMNS

    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}.")
    out = Path(args.out)
    triage = out.with_name(f"{out.stem}-triage.csv") if args.top_k else None
    if args.images is not None and not Path(args.images).exists():
        raise FileNotFoundError(f"--images {args.images} does not exist.")
    data = Path(args.data)
    if data.is_dir():  # a Kaggle folder: predict scores its test file, never the train file
        data = resolve_metadata_path(data, "test")
    inputs = [Path(args.model), data, args.images]
    if out.suffix.lower() != ".csv":
        raise UsageError(
            f"--out {out}: predict writes a CSV submission (isic_id,target); give the file a "
            ".csv name."
        )
    check_file_output(out, force=args.force, written_by=WRITTEN_BY, inputs=inputs)
    if triage is not None:
        check_file_output(
            triage,
            force=args.force,
            written_by=WRITTEN_BY,
            option="--out (triage file)",
            inputs=inputs,
        )
    model = load_model(args.model)
    frame = read_metadata(data, kind="auto")
    frame = frame.drop([c for c in LEAK_COLUMNS if c in frame.columns])
    if not hasattr(model, "explain"):
        raise ValueError(
            f"{args.model} holds a bare {type(model).__name__}, which scores feature matrices; "
            "predict needs a LesionBoostClassifier model (the model/ folder of a tune run)."
        )
    has_images = getattr(model, "image_state_", None) is not None
    if args.precision is not None and not has_images:
        raise UsageError(
            f"{args.model} was trained without image features; drop --precision (it sets the "
            "precision the crops are embedded at)."
        )
    if args.images is not None and not has_images:
        raise UsageError(
            f"{args.model} was trained without image features; drop --images (the crops "
            "would not be used)."
        )
    if args.images is not None:
        model.set_params(images=str(Path(args.images).resolve()))
    elif getattr(model, "images", None) is not None:
        raise UsageError(
            "this model was trained with image features: pass --images with the HDF5 crops "
            f"of the lesions in {args.data} (e.g. test-image.hdf5)."
        )
    if args.precision is not None:
        from ..image import embedder_at_precision

        model.set_params(
            image_model=embedder_at_precision(model.image_model, model.image_state_, args.precision)
        )
    started = time.perf_counter()
    if triage is not None:
        explained = model.explain(frame, top_k=3, per_patient=args.top_k)
        scores = explained.get_column("score").to_numpy()
    else:
        scores = model.predict_proba(frame)[:, 1]
    write_submission(frame.get_column("isic_id"), scores, out, overwrite=True)
    claim(out.parent, [out.name], written_by=WRITTEN_BY)
    summary: dict[str, Any] = {
        "out": str(out),
        "rows": frame.height,
        "patients": frame.get_column("patient_id").n_unique(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if triage is not None:
        table = _triage_table(frame, explained, args.top_k)
        with atomic_path(triage) as tmp:
            table.write_csv(tmp)
        claim(triage.parent, [triage.name], written_by=WRITTEN_BY)
        summary["triage"] = str(triage)
        summary["triage_rows"] = table.height
    emit(
        args,
        summary,
        f"wrote {out} ({frame.height} lesions)"
        + (f" and {triage} (top {args.top_k} per patient)" if triage else ""),
    )
    return EXIT_OK


def _triage_table(frame: pl.DataFrame, explained: pl.DataFrame, top_k: int) -> pl.DataFrame:
    """Each patient's ``top_k`` highest-risk lesions with the three features that drove them."""
    table = pl.DataFrame(
        {
            "patient_id": frame.get_column("patient_id"),
            "isic_id": frame.get_column("isic_id"),
            "score": explained.get_column("score"),
            "features": explained.get_column("top_features"),
            "contributions": explained.get_column("top_contributions"),
        }
    )
    table = (
        table.filter(pl.col("features").is_not_null())  # explain's per-patient top rows
        .sort(["patient_id", "score", "isic_id"], descending=[False, True, False])
        .with_columns(pl.int_range(1, pl.len() + 1).over("patient_id").alias("rank"))
        .filter(pl.col("rank") <= top_k)
    )
    columns = [
        pl.col("patient_id"),
        pl.col("rank").cast(pl.Int32),
        pl.col("isic_id"),
        pl.col("score"),
    ]
    for i in range(3):
        columns.append(pl.col("features").list.get(i, null_on_oob=True).alias(f"feature_{i + 1}"))
        columns.append(
            pl.col("contributions")
            .list.get(i, null_on_oob=True)
            .round(6)
            .alias(f"contribution_{i + 1}")
        )
    return table.select(columns)

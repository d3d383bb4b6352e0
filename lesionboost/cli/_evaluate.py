"""``lesionboost evaluate``: the clinical evaluation of a cv run, a saved model or a scores file.

:func:`run_evaluate` re-runs :func:`~lesionboost.evaluation.evaluate` on one repeat of
a ``lesionboost cv`` run folder (read back by ``_runs.py``), on a saved model scoring
a labelled file (``--model DIR --data``), or on a scores file against a labelled file
(``--scores FILE --data``); it prints a short summary with patient-bootstrap
intervals and, with ``--report``, draws the evaluation report and model card.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .._utils._outputs import check_folder_output, read_marker
from ..report import EVALUATION_WRITTEN_BY, evaluation_report_markers
from ._output import EXIT_OK, UsageError, emit
from ._runs import _no_malignant, _run_scores, _scheme_text, _simulated

logger = logging.getLogger("lesionboost")

#: Bootstrap replicates of the evaluation.
DEFAULT_N_BOOT = 1000


def _check_not_another_runs_report(report_dir: Path, run_dir: str | None) -> None:
    """Refuse a ``--report`` folder that belongs to a run other than the one evaluated."""
    parent = report_dir.resolve().parent
    marker = read_marker(parent)
    if marker is None or report_dir.name not in marker["entries"]:
        return
    if run_dir is not None and Path(run_dir).resolve() == parent:
        return
    raise UsageError(
        f"--report {report_dir} is the report of the run {parent} (written by "
        f"{marker.get('written_by')!r}); evaluate writes there only when it evaluates that "
        "run. Choose another --report folder."
    )


def _is_training_data(model_dir: Path, frame: pl.DataFrame) -> bool:
    """Whether ``frame`` is the data the saved model records as its training data."""
    import json

    from ..persist import fingerprint

    try:
        manifest = json.loads((model_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    recorded = manifest.get("training_data") if isinstance(manifest, dict) else None
    if not isinstance(recorded, dict) or recorded.get("rows") != frame.height:
        return False
    return bool(recorded.get("sha256") == fingerprint(frame)["sha256"])


def _labelled(path: Path) -> tuple[pl.DataFrame, Path]:
    from ..io import read_metadata, resolve_metadata_path

    file = resolve_metadata_path(path, "train") if path.is_dir() else path
    frame = read_metadata(file, kind="auto")
    if "target" not in frame.columns:
        raise ValueError(
            f"--data {path} has no 'target' column: evaluate needs labelled lesions (the "
            "train-metadata.csv layout). To score unlabelled lesions use lesionboost predict."
        )
    _no_malignant(frame.get_column("target").fill_null(0).to_numpy(), f"--data {path}")
    return frame, file


def _model_scores(args: argparse.Namespace) -> tuple[pl.DataFrame, dict[str, Any]]:
    from ..persist import load_model
    from ..schema import LEAK_COLUMNS

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before the boosters load OpenMP
    model = load_model(args.model)
    frame, file = _labelled(Path(args.data))
    has_images = getattr(model, "image_state_", None) is not None
    if args.images is not None and not has_images:
        raise UsageError(f"{args.model} was trained without image features; drop --images.")
    if args.images is not None:
        model.set_params(images=str(Path(args.images).resolve()))
    elif getattr(model, "images", None) is not None:
        raise UsageError(
            "this model was trained with image features: pass --images with the HDF5 crops "
            f"of the lesions in {args.data}."
        )
    scores = model.predict_proba(frame.drop([c for c in LEAK_COLUMNS if c in frame.columns]))
    frame = frame.with_columns(pl.Series("score", np.asarray(scores)[:, 1]))
    scheme = "external"
    description = (
        f"The saved model {args.model} scored the labelled lesions of {args.data}; the "
        "figures are valid for new patients only if none of them was in the training data."
    )
    if _is_training_data(Path(args.model), frame.drop("score")):
        scheme = "in-sample"
        description = (
            f"The saved model {args.model} scored the lesions it was fitted on ({args.data}): "
            "in-sample figures, far above what new patients would see."
        )
        logger.warning(
            "--data %s is the data the model %s was fitted on: these figures are in-sample "
            "(optimistic); evaluate a model on patients it never saw, or use lesionboost cv.",
            args.data,
            args.model,
        )
    context = {
        "data": {
            "source": str(file.resolve()),
            "simulated": _simulated(file),
        },
        "validation": {"scheme": scheme, "description": description},
        "model": {"name": f"{type(model).__name__} ({args.model})"},
    }
    return frame, context


def _file_scores(args: argparse.Namespace) -> tuple[pl.DataFrame, dict[str, Any]]:
    data, path = Path(args.data), Path(args.scores)
    frame, file = _labelled(data)
    if path.resolve() == file.resolve():
        raise UsageError(
            f"--scores {path} is the labelled file itself (--data); pass the scores of a model "
            "on those lesions (e.g. the CSV lesionboost predict writes)."
        )
    try:
        table = (
            pl.read_parquet(path)
            if path.suffix == ".parquet"
            else pl.read_csv(path, schema_overrides={"isic_id": pl.String})
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ValueError(f"--scores {path} could not be read as a table ({exc}).") from exc
    column = next((c for c in ("score", "target") if c in table.columns), None)
    if "isic_id" not in table.columns or column is None:
        raise ValueError(
            f"--scores {path} needs the columns isic_id and score (or target, as in a Kaggle "
            f"submission); it has {table.columns[:5]}."
        )
    if column == "target" and "patient_id" in table.columns:
        raise UsageError(
            f"--scores {path} is a metadata table (it has patient_id): its target column holds "
            "labels, not scores. Pass the scores of a model (e.g. the CSV lesionboost predict "
            "writes)."
        )
    if not table.schema[column].is_numeric():
        values = table.get_column(column).cast(pl.String, strict=False)
        numeric = values.cast(pl.Float64, strict=False)
        bad = table.filter(numeric.is_null() & values.is_not_null()).head(3)
        if bad.height:
            raise ValueError(
                f"--scores {path}: column {column!r} must hold numbers; isic_id "
                f"{bad.get_column('isic_id').to_list()} hold {bad.get_column(column).to_list()}."
            )
        table = table.with_columns(numeric.alias(column))
    missing = table.filter(pl.col(column).is_null()).get_column("isic_id")
    if missing.len():
        raise ValueError(
            f"--scores {path}: {missing.len()} lesion(s) have no {column} (isic_id "
            f"{missing.head(3).to_list()}); every lesion needs a score."
        )
    table = table.select(pl.col("isic_id").cast(pl.String), pl.col(column).alias("score"))
    duplicated = table.filter(pl.col("isic_id").is_duplicated()).get_column("isic_id")
    if duplicated.len():
        raise ValueError(
            f"--scores {path} scores isic_id {duplicated[0]!r} more than once; "
            "pass one score per lesion."
        )
    ids = frame.get_column("isic_id").cast(pl.String)
    unknown = table.filter(~pl.col("isic_id").is_in(ids.implode())).get_column("isic_id")
    if unknown.len():
        raise ValueError(
            f"--scores {path} holds {unknown.len()} isic_id(s) that --data {data} does not "
            f"list (unknown ids, e.g. {unknown.head(3).to_list()}); score the lesions of the "
            "labelled file."
        )
    if table.height != frame.height:
        absent = ids.filter(~ids.is_in(table.get_column("isic_id").implode()))
        raise ValueError(
            f"--scores {path} has {table.height} rows but --data {data} has {frame.height} "
            f"lesions (mismatched lengths); every labelled lesion needs one score (missing "
            f"e.g. {absent.head(3).to_list()})."
        )
    frame = frame.with_columns(pl.col("isic_id").cast(pl.String)).join(
        table, on="isic_id", how="left", maintain_order="left"
    )
    context = {
        "data": {"source": str(file.resolve()), "simulated": _simulated(file)},
        "validation": {
            "scheme": "external",
            "description": f"The scores of {path} on the labelled lesions of {data}.",
        },
        "model": {"name": f"scores from {path}"},
    }
    return frame, context


def _ci(interval: Any) -> str:
    return "n/a" if interval is None else f"{interval[0]:.4f}-{interval[1]:.4f}"


def _summary_text(evaluation: Any, heading: str) -> str:
    """A short human summary of an :class:`~lesionboost.evaluation.Evaluation`."""
    pauc_label = f"pAUC above {evaluation.min_tpr:.0%} TPR"
    lines = [
        heading,
        f"  {'lesions':<20}{evaluation.n:,} ({evaluation.n_malignant} malignant, "
        f"{evaluation.n_patients} patients)",
        f"  {pauc_label:<20}{evaluation.pauc:.4f}  95 % CI {_ci(evaluation.pauc_ci)}  "
        f"({evaluation.n_boot_used} patient-level bootstrap replicates)",
        f"  {'AUC':<20}{evaluation.auc:.4f}  95 % CI {_ci(evaluation.auc_ci)}",
        f"  {'top-15 sensitivity':<20}{evaluation.top15_sensitivity:.4f}  95 % CI "
        f"{_ci(evaluation.top15_sensitivity_ci)}",
    ]
    point = next(
        (p for p in evaluation.operating_points if abs(p["target_sensitivity"] - 0.8) < 1e-9), None
    )
    per_cancer = evaluation.lesions_per_cancer.get(0.8)
    if point is not None and per_cancer is not None:
        lines.append(
            f"  {'at 80% sensitivity':<20}{per_cancer:.1f} lesions examined per cancer "
            f"found, {point['referrals_per_1000']:.1f} referrals per 1,000 lesions"
        )
    weak = evaluation.weakest_subgroup
    lines.append(
        f"  {'weakest subgroup':<20}"
        + (
            "none flagged (no level with enough malignant lesions)"
            if weak is None
            else f"{weak['subgroup']} = {weak['level']} (pAUC {weak['pauc']:.4f}, "
            f"{weak['n_malignant']} malignant)"
        )
    )
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate

    modes = [args.run_dir is not None, args.model is not None, args.scores is not None]
    if sum(modes) != 1:
        raise UsageError(
            "evaluate one thing: a cv run folder (lesionboost evaluate RUN), a saved model "
            "(--model DIR --data LABELLED.csv) or a scores file (--scores CSV --data "
            "LABELLED.csv)."
        )
    if args.run_dir is not None and (args.data or args.images):
        raise UsageError("a run folder holds its own lesions and scores; drop --data/--images.")
    if args.run_dir is None and args.data is None:
        raise UsageError(
            f"{'--model' if args.model else '--scores'} needs --data: the "
            "labelled lesions (train-metadata.csv layout)."
        )
    if args.images is not None and args.model is None:
        raise UsageError("--images gives the crops a --model scores; it needs --model.")
    if args.repeat is not None and args.run_dir is None:
        raise UsageError("--repeat chooses a repeat of a cv run folder; it needs RUN.")
    if args.n_boot is not None and args.n_boot < 0:
        raise UsageError(f"--n-boot must be >= 0 (0: no intervals), got {args.n_boot}.")
    for option, value in (
        ("RUN", args.run_dir),
        ("--model", args.model),
        ("--data", args.data),
        ("--images", args.images),
        ("--scores", args.scores),
    ):
        if value is not None and not Path(value).exists():
            raise FileNotFoundError(f"{option} {value} does not exist.")
    report_dir: Path | None = None
    if args.report is not None:
        if args.report:
            report_dir = Path(args.report)
        elif args.run_dir is not None:
            report_dir = Path(args.run_dir) / "report"
        else:
            raise UsageError("--report needs a folder (--report DIR) with --model or --scores.")
        inputs = [
            Path(p)
            for p in (
                args.run_dir and Path(args.run_dir) / "oof.parquet",
                args.model,
                args.data,
                args.images,
                args.scores,
            )
            if p
        ]
        check_folder_output(
            report_dir,
            written_by=EVALUATION_WRITTEN_BY,
            option="--report",
            replace=True,
            inputs=inputs,
            also_written_by=evaluation_report_markers(report_dir),
        )
        _check_not_another_runs_report(report_dir, args.run_dir)
    n_boot, seed = args.n_boot, args.seed
    if args.run_dir is not None:
        run_dir = Path(args.run_dir)
        repeat = args.repeat or 0
        frame, cv, context = _run_scores(run_dir, repeat)
        recorded = cv.get("evaluation", {})
        n_boot = n_boot if n_boot is not None else recorded.get("n_boot", DEFAULT_N_BOOT)
        seed = seed if seed is not None else recorded.get("seed", 0)
        heading = f"evaluation of {run_dir} (repeat {repeat}, {_scheme_text(cv['scheme'])})"
        source: dict[str, Any] = {"run_dir": str(run_dir), "repeat": repeat}
    elif args.model is not None:
        frame, context = _model_scores(args)
        heading = f"evaluation of the model {args.model} on {args.data}"
        source = {"model": str(args.model), "data": str(args.data)}
    else:
        frame, context = _file_scores(args)
        heading = f"evaluation of the scores {args.scores} on {args.data}"
        source = {"scores": str(args.scores), "data": str(args.data)}
    n_boot = DEFAULT_N_BOOT if n_boot is None else n_boot
    seed = 0 if seed is None else seed
    target = frame.get_column("target").to_numpy()
    evaluation = evaluate(
        target, frame.get_column("score").to_numpy(), frame, n_boot=int(n_boot), seed=int(seed)
    )
    result = {**evaluation.to_dict(), "source": source, "validation": context.get("validation")}
    if report_dir is not None:
        from ..report import write_evaluation_report

        keep = [c for c in ("target", "score", "attribution") if c in frame.columns]
        title = (
            f"lesionboost cv: {Path(args.run_dir).resolve().name}"
            if args.run_dir
            else "lesionboost evaluation"
        )
        write_evaluation_report(
            evaluation, report_dir, oof=frame.select(keep), context=context, title=title
        )
        result["report"] = str(report_dir / "index.html")
    text = _summary_text(evaluation, heading)
    if report_dir is not None:
        text += f"\n  {'report':<20}{report_dir / 'index.html'}"
    emit(args, result, text)
    return EXIT_OK

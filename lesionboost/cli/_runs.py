"""The ``lesionboost cv`` run folder: its layout, what ``cv.json`` records, and reading it back.

``lesionboost cv --out RUN`` writes the folder (``_cv.py``); ``lesionboost evaluate
RUN`` (``_evaluate.py``) and ``lesionboost compare`` (``_compare.py``) read it back,
so the records both sides rely on -- the fingerprints, the per-repeat summaries and
the report context -- are built here, next to the readers::

    RUN/folds.parquet     isic_id, patient_id, repeat, fold: the split of every repeat
    RUN/oof.parquet       isic_id, patient_id, attribution, repeat, fold, target, score and
                          the subgroup columns of evaluate() (sex, age_approx, ...)
    RUN/evaluation.json   evaluate() on repeat 0's out-of-fold scores (Evaluation.to_dict())
    RUN/report/           plots, per-centre table and model card (write_evaluation_report)
    RUN/cv.json           configuration, scheme, per-fold and pooled pAUC of every repeat,
                          seeds and fingerprints; written last, so it marks a finished run
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .._utils._outputs import read_marker
from ..report import CV_RUN_WRITTEN_BY
from ._output import UsageError

#: The marker of a cv run folder.
WRITTEN_BY = CV_RUN_WRITTEN_BY
#: The entries of a cv run folder, in the order they are written (cv.json last).
RUN_ENTRIES = ("folds.parquet", "oof.parquet", "evaluation.json", "report", "cv.json")
#: Metadata columns kept in oof.parquet: the subgroups of evaluate().
SUBGROUP_COLUMNS = (
    "attribution",
    "sex",
    "age_approx",
    "anatom_site_general",
    "tbp_tile_type",
    "tbp_lv_Lext",
    "tbp_lv_Bext",
)


def _simulated(path: Path) -> bool:
    """Whether ``path`` is a file that ``lesionboost simulate`` wrote."""
    marker = read_marker(path.parent)
    return bool(
        marker
        and marker.get("written_by") == "lesionboost simulate"
        and path.name in marker["entries"]
    )


def _fingerprint(
    ids: list[str], splits: list[np.ndarray] | None = None, target: np.ndarray | None = None
) -> str:
    digest = hashlib.sha256("\n".join(ids).encode())
    if target is not None:
        digest.update(np.asarray(target, dtype=np.int8).tobytes())
    for split in splits or []:
        digest.update(b"\0" + np.asarray(split, dtype=np.int32).tobytes())
    return digest.hexdigest()


def _repeat_summary(repeat: int, seed: int, result: Any) -> dict[str, Any]:
    finite = result.fold_scores[np.isfinite(result.fold_scores)]
    return {
        "repeat": repeat,
        "seed": seed,
        "pauc": float(result.pauc),
        "fold_scores": [None if not np.isfinite(s) else float(s) for s in result.fold_scores],
        "mean_fold_score": float(finite.mean()) if finite.size else None,
        "sd_fold_score": float(finite.std(ddof=1)) if finite.size > 1 else None,
        "fit_seconds": [round(float(s), 2) for s in result.fit_seconds],
    }


def _scheme_text(scheme: dict[str, Any]) -> str:
    if scheme["cv"] == "centre":
        return f"leave-one-centre-out over {scheme['n_splits']} centres"
    repeats = scheme["n_repeats"]
    return (
        f"{scheme['n_splits']}-fold patient-grouped"
        + (f" x {repeats} repeats" if repeats > 1 else "")
        + f", seed {scheme['seed']}"
    )


def _validation_context(scheme: dict[str, Any], repeats: list[dict[str, Any]]) -> dict[str, Any]:
    if scheme["cv"] == "centre":
        description = (
            f"Leave-one-centre-out cross-validation over {scheme['n_splits']} centres: each "
            "centre's lesions are scored by a model trained on the other centres only."
        )
    else:
        seeds = scheme["seeds"]
        description = (
            f"{scheme['n_splits']}-fold patient-grouped cross-validation stratified on the "
            "label: each lesion is scored by a model that never saw its patient"
            + (
                f"; {scheme['n_repeats']} repeats with seeds {seeds[0]}-{seeds[-1]}"
                if scheme["n_repeats"] > 1
                else f" (seed {seeds[0]})"
            )
            + ". The figures are the out-of-fold scores of repeat 0."
        )
    return {
        "scheme": scheme["cv"],
        "description": description,
        "n_splits": scheme["n_splits"],
        "n_repeats": scheme["n_repeats"],
        "seed": scheme["seed"],
        "pooled_pauc_per_repeat": [round(r["pauc"], 4) for r in repeats],
    }


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); rerun {what}.") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object; rerun {what}.")
    return data


def _no_malignant(target: np.ndarray, where: str) -> None:
    if int(np.nansum(target)) == 0:
        raise ValueError(
            f"{where} holds no malignant lesion ({target.size} lesions, none with target == 1); "
            "the evaluation ranks malignant against benign lesions, so evaluate lesions of "
            "both kinds."
        )


def _run_scores(run_dir: Path, repeat: int) -> tuple[pl.DataFrame, dict[str, Any], dict[str, Any]]:
    """The scored lesions of one repeat of a cv run, its cv.json and the report context."""
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"{run_dir} is not a folder; pass the --out folder of a `lesionboost cv` run."
        )
    oof_path, cv_path, folds_path = (
        run_dir / n for n in ("oof.parquet", "cv.json", "folds.parquet")
    )
    for path in (cv_path, oof_path, folds_path):
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: {run_dir} is not a finished `lesionboost cv` run. Pass "
                "the --out folder of a cv run that completed (or rerun it)."
            )
    cv = _read_json(cv_path, "lesionboost cv")
    oof = pl.read_parquet(oof_path)
    missing = [
        c for c in ("isic_id", "patient_id", "repeat", "target", "score") if c not in oof.columns
    ]
    if missing:
        raise ValueError(f"{oof_path} lacks the column(s) {missing}; rerun `lesionboost cv`.")
    available = sorted(oof.get_column("repeat").unique().to_list())
    if repeat not in available:
        raise UsageError(f"--repeat {repeat}: {run_dir} holds repeats {available}.")
    part = oof.filter(pl.col("repeat") == repeat)
    if part.get_column("isic_id").is_duplicated().any():
        raise ValueError(
            f"{oof_path} scores a lesion more than once in repeat {repeat}; the file is "
            "damaged: rerun `lesionboost cv`."
        )
    expected = cv.get("data", {}).get("n_rows")
    if part.height != expected:
        raise ValueError(
            f"{oof_path} holds {part.height} scored lesions in repeat {repeat} but {cv_path} "
            f"records {expected} (mismatched lengths); rerun `lesionboost cv`."
        )
    folds = pl.read_parquet(folds_path, columns=["isic_id", "repeat"])
    listed = folds.filter(pl.col("repeat") == repeat).get_column("isic_id")
    unknown = part.filter(~pl.col("isic_id").is_in(listed.implode())).get_column("isic_id")
    if unknown.len():
        raise ValueError(
            f"{oof_path} scores {unknown.len()} isic_id(s) that {folds_path} does not list "
            f"(unknown ids, e.g. {unknown.head(3).to_list()}); rerun `lesionboost cv`."
        )
    _no_malignant(part.get_column("target").to_numpy(), str(oof_path))
    context = json.loads(json.dumps(cv.get("report_context", {})))
    validation = context.setdefault("validation", {})
    if repeat and "description" in validation:
        validation["description"] = validation["description"].replace(
            "repeat 0", f"repeat {repeat}"
        )
    return part, cv, context

"""The plots and self-contained HTML page of a ``lesionboost tune`` run.

A run directory written by ``lesionboost tune`` holds ``best.json`` (the run's
numbers and trial history) and ``oof.parquet`` (one out-of-fold score per lesion):
:func:`write_report` turns them into the five PNG plots of :data:`PLOT_FILES` (drawn
by :mod:`._plots`) and one ``index.html`` that embeds them, so the page can be mailed
or attached to a ticket as a single file.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from .._utils._atomic import atomic_directory
from .._utils._outputs import check_folder_output, claim
from ..metrics import pauc_above_tpr
from ._page import _STYLE, WRITTEN_BY, _html_figures, _html_table
from ._plots import (
    _save,
    plot_calibration,
    plot_fold_scores,
    plot_history,
    plot_importances,
    plot_roc,
)

__all__ = ["write_report", "PLOT_FILES"]

logger = logging.getLogger("lesionboost.report")  # the package's logger, as before the split

#: file name -> title of every plot :func:`write_report` draws, in page order.
PLOT_FILES = {
    "roc.png": "ROC curve (out-of-fold)",
    "fold_pauc.png": "pAUC per validation fold",
    "history.png": "Optimisation history",
    "importance.png": "Top feature importances (final model)",
    "calibration.png": "Calibration (out-of-fold)",
}


def _load_run(run_dir: Path) -> tuple[dict[str, Any], pl.DataFrame]:
    best_path, oof_path = run_dir / "best.json", run_dir / "oof.parquet"
    for path in (best_path, oof_path):
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: {run_dir} is not a finished lesionboost tune run. "
                "Pass the --out folder of a `lesionboost tune` run that completed."
            )
    try:
        best = json.loads(best_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{best_path} is not valid JSON ({exc}); rerun `lesionboost tune`."
        ) from exc
    oof = pl.read_parquet(oof_path)
    missing = [c for c in ("target", "score", "fold") if c not in oof.columns]
    if missing:
        raise ValueError(
            f"{oof_path} lacks the column(s) {missing}; expected isic_id, patient_id, fold, "
            "target, score as written by `lesionboost tune`."
        )
    return best, oof


def _html_page(best: Mapping[str, Any], images: Mapping[str, bytes], oof: pl.DataFrame) -> str:
    data = best.get("data", {})
    counts = best.get("n_trials", {})
    summary = [
        ("study", best.get("study_name")),
        ("storage", best.get("storage")),
        ("best trial", best.get("best_trial")),
        ("best OOF pAUC (above 80 % TPR)", _fmt(best.get("best_value"))),
        ("defaults' OOF pAUC (first trial)", _fmt(best.get("defaults_value"))),
        ("fold pAUC mean ± SD", f"{_fmt(best.get('fold_mean'))} ± {_fmt(best.get('fold_sd'))}"),
        (
            "trials (complete / pruned / failed)",
            " / ".join(str(counts.get(s, 0)) for s in ("COMPLETE", "PRUNED", "FAIL")),
        ),
        (
            "lesions / patients / malignant",
            f"{data.get('n_rows', oof.height)} / {data.get('n_patients', '?')} / "
            f"{data.get('n_positive', int(oof['target'].sum()))}",
        ),
        ("data", data.get("source")),
        ("folds", f"{best.get('n_splits')} patient-grouped (seed {best.get('seed')})"),
        ("tuning wall time (s)", _fmt(best.get("tuning_seconds"), 1)),
        ("lesionboost", best.get("lesionboost_version")),
    ]
    params = best.get("best_params", {})
    param_rows = [(k, json.dumps(v)) for k, v in sorted(params.items())]
    figures = _html_figures(PLOT_FILES, images)
    title = f"lesionboost run: {best.get('study_name', '')}"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><h2>Numbers</h2>{_html_table(summary)}"
        f"<h2>Plots</h2>{figures}<h2>Best configuration</h2>{_html_table(param_rows)}"
        "</body></html>\n"
    )


def _fmt(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def write_report(
    run_dir: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Draw the plots of a tuning run and write them with one HTML page.

    Parameters
    ----------
    run_dir : str or path-like
        A ``lesionboost tune`` output folder (needs ``best.json`` and
        ``oof.parquet``).
    out_dir : str or path-like, optional
        Where to write; defaults to ``run_dir/report``. The folder must be new,
        empty or an earlier report; it is written atomically: an existing report
        is replaced only once the new one is complete.

    Returns
    -------
    pathlib.Path
        The report folder, holding the PNGs of :data:`PLOT_FILES` and
        ``index.html`` (plots embedded, so the page stands alone).

    Raises
    ------
    OutputError
        ``out_dir`` holds files lesionboost did not write, is another command's
        folder (e.g. the run folder itself), or holds the run's inputs.

    Notes
    -----
    The plots, in page order:

    * ``roc.png`` -- the ROC curve with the scored region (TPR >= 0.8) shaded and
      the partial AUC printed;
    * ``fold_pauc.png`` -- pAUC of every validation fold with their mean;
    * ``history.png`` -- the optimisation history (every finished trial, the best
      value so far, the enqueued defaults marked);
    * ``importance.png`` -- the top feature importances of the final model;
    * ``calibration.png`` -- observed malignant rate against the mean score in
      quantile bins of the score (a reliability diagram on log axes: malignant
      lesions are ~0.1 % of the data, so linear axes hide everything).

    Examples
    --------
    >>> from lesionboost.cli import main
    >>> main(["tune", "--out", "run", "--patients", "40", "--trials", "1", "--rounds", "10",
    ...       "-q"])  # doctest: +ELLIPSIS
    best OOF pAUC ...
    0
    >>> write_report("run")
    PosixPath('run/report')
    """
    run = Path(run_dir)
    target = Path(out_dir) if out_dir is not None else run / "report"
    check_folder_output(
        target, written_by=WRITTEN_BY, option="the report folder", replace=True,
        inputs=[run / "best.json", run / "oof.parquet"],
    )  # fmt: skip
    best, oof = _load_run(run)
    y = oof["target"].to_numpy()
    score = oof["score"].to_numpy()
    fold_scores = best.get("fold_scores")
    if not fold_scores:  # recompute from the OOF frame when best.json has none
        fold_scores = []
        for fold in sorted(oof["fold"].unique().to_list()):
            part = oof.filter(pl.col("fold") == fold)
            labels = part["target"].to_numpy()
            ok = 0 < labels.sum() < len(labels)
            fold_scores.append(
                pauc_above_tpr(labels, part["score"].to_numpy()) if ok else float("nan")
            )
    figures = {
        "roc.png": lambda: plot_roc(y, score),
        "fold_pauc.png": lambda: plot_fold_scores(fold_scores),
        "history.png": lambda: plot_history(best.get("history", [])),
        "importance.png": lambda: plot_importances(best.get("feature_importances", {})),
        "calibration.png": lambda: plot_calibration(
            y,
            score,
            calibrated=oof["score_calibrated"].to_numpy() if "score_calibrated" in oof else None,
        ),
    }
    images: dict[str, bytes] = {}
    with atomic_directory(target) as tmp:
        for name, draw in figures.items():
            _save(draw(), tmp / name)
            images[name] = (tmp / name).read_bytes()
        (tmp / "index.html").write_text(_html_page(best, images, oof), encoding="utf-8")
        claim(tmp, [*figures, "index.html"], written_by=WRITTEN_BY)
    logger.info("wrote the report to %s (%d plots + index.html)", target, len(images))
    return target

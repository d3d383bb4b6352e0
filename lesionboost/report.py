"""Plots and a self-contained HTML page for a tuning run.

A run directory written by ``lesionboost tune`` holds ``best.json`` (the run's
numbers and trial history) and ``oof.parquet`` (one out-of-fold score per
lesion). :func:`write_report` turns them into five PNG plots and one
``index.html`` that embeds the plots as base64, so the page can be mailed or
attached to a ticket as a single file:

* ``roc.png`` -- the ROC curve with the scored region (TPR >= 0.8) shaded and
  the partial AUC printed;
* ``fold_pauc.png`` -- pAUC of every validation fold with their mean;
* ``history.png`` -- the optimisation history (every finished trial, the best
  value so far, the enqueued defaults marked);
* ``importance.png`` -- the top feature importances of the final model;
* ``calibration.png`` -- observed malignant rate against the mean score in
  quantile bins of the score (a reliability diagram on log axes: malignant
  lesions are ~0.1 % of the data, so linear axes hide everything).

Every ``plot_*`` function returns a :class:`matplotlib.figure.Figure` built
without ``pyplot``: no global state and no GUI backend, so reports can be drawn
from worker threads and on machines without a display (figures are rendered by
the Agg canvas). matplotlib is an optional dependency (``pip install
"lesionboost[report]"``), imported only when a plot is drawn.

:func:`write_evaluation_report` draws the clinical side of an
:class:`~lesionboost.evaluation.Evaluation` (``lesionboost cv`` and ``lesionboost
evaluate --report`` call it): sensitivity against referrals per 1,000 lesions,
reliability curves (before and after calibration when both are given), a forest
plot of pAUC per subgroup with the weakest level flagged, a per-centre table, and
a model card in Markdown and JSON (:func:`model_card`) in the spirit of
TRIPOD+AI: intended use, data and centres, validation scheme, performance with
intervals, subgroups and limitations.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score, roc_curve

from ._utils._atomic import atomic_directory
from ._utils._imports import import_optional
from ._utils._outputs import check_folder_output, claim
from ._version import __version__
from .evaluation import MIN_MALIGNANT_FOR_WEAKEST, Evaluation
from .metrics import pauc_above_tpr

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "plot_roc",
    "plot_fold_scores",
    "plot_history",
    "plot_importances",
    "plot_calibration",
    "write_report",
    "PLOT_FILES",
    "plot_operating_points",
    "plot_reliability",
    "plot_subgroups",
    "centre_table",
    "model_card",
    "model_card_markdown",
    "write_evaluation_report",
    "EVALUATION_PLOT_FILES",
]

logger = logging.getLogger(__name__)

#: The marker of a report folder.
WRITTEN_BY = "lesionboost report"

#: file name -> title of every plot :func:`write_report` draws, in page order.
PLOT_FILES = {
    "roc.png": "ROC curve (out-of-fold)",
    "fold_pauc.png": "pAUC per validation fold",
    "history.png": "Optimisation history",
    "importance.png": "Top feature importances (final model)",
    "calibration.png": "Calibration (out-of-fold)",
}


def _figure(width: float = 6.4, height: float = 4.8) -> Figure:
    import_optional("matplotlib", purpose="drawing report plots")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def plot_roc(y_true: Any, y_score: Any, *, min_tpr: float = 0.8) -> Figure:
    """ROC curve with the region the ISIC 2024 metric scores shaded.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        0/1 labels.
    y_score : array-like of shape (n,)
        Scores, higher = more likely malignant.
    min_tpr : float, default=0.8
        Lower TPR bound of the scored region.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = plot_roc([0, 0, 1, 1, 0], [0.1, 0.3, 0.8, 0.4, 0.2])
    >>> "pAUC" in fig.axes[0].get_title()
    True
    """
    y = np.asarray(y_true).astype(int)
    score = np.asarray(y_score, dtype=float)
    pauc = pauc_above_tpr(y, score, min_tpr=min_tpr)
    fpr, tpr, _ = roc_curve(y, score)
    fig = _figure()
    ax = fig.add_subplot()
    # Shade between the curve and TPR = min_tpr wherever the curve is above it:
    # exactly the area pauc_above_tpr integrates.
    grid = np.linspace(0.0, 1.0, 2001)
    curve = np.interp(grid, fpr, tpr)
    ax.fill_between(
        grid,
        min_tpr,
        curve,
        where=curve >= min_tpr,
        color="tab:orange",
        alpha=0.35,
        label=f"scored region (TPR >= {min_tpr:g})",
    )
    ax.plot(fpr, tpr, color="tab:blue", lw=1.8, label=f"ROC (AUC {roc_auc_score(y, score):.4f})")
    ax.axhline(min_tpr, color="tab:orange", lw=1, ls="--")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(
        f"pAUC above {min_tpr:.0%} TPR = {pauc:.4f} (max {1 - min_tpr:.2f}); "
        f"{int(y.sum())} malignant / {len(y)}"
    )
    ax.legend(loc="lower right")
    return fig


def plot_fold_scores(fold_scores: Sequence[float] | Mapping[Any, float]) -> Figure:
    """Bar chart of the pAUC of each validation fold, with the mean as a line.

    Examples
    --------
    >>> fig = plot_fold_scores([0.15, 0.16, 0.14])
    >>> len(fig.axes[0].patches)
    3
    """
    if isinstance(fold_scores, Mapping):
        labels = [str(k) for k in fold_scores]
        values = np.asarray(list(fold_scores.values()), dtype=float)
    else:
        values = np.asarray(list(fold_scores), dtype=float)
        labels = [str(i) for i in range(len(values))]
    fig = _figure()
    ax = fig.add_subplot()
    bars = ax.bar(labels, values, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.4f}" for v in values], padding=2, fontsize=8)
    finite = values[np.isfinite(values)]
    if finite.size:
        mean, sd = float(finite.mean()), float(finite.std(ddof=1)) if finite.size > 1 else 0.0
        ax.axhline(mean, color="tab:red", ls="--", label=f"mean {mean:.4f} ± {sd:.4f} (SD)")
        ax.legend(loc="lower right")
        ax.set_ylim(0, max(0.2, float(finite.max()) * 1.1))
    ax.set_xlabel("validation fold")
    ax.set_ylabel("pAUC above 80 % TPR")
    ax.set_title("Out-of-fold pAUC per patient-grouped fold")
    return fig


def plot_history(trials: Sequence[Mapping[str, Any]]) -> Figure:
    """Optimisation history: every finished trial's value and the best so far.

    Parameters
    ----------
    trials : sequence of mappings
        One per trial with ``number``, ``state`` ("COMPLETE", "PRUNED", ...)
        and ``value`` (the OOF pAUC for complete trials, the mean of the folds
        it reached for pruned ones); optional ``defaults`` (bool) marks the
        enqueued known-good defaults.

    Examples
    --------
    >>> fig = plot_history([{"number": 0, "state": "COMPLETE", "value": 0.15},
    ...                     {"number": 1, "state": "PRUNED", "value": 0.12}])
    >>> fig.axes[0].get_xlabel()
    'trial'
    """
    fig = _figure()
    ax = fig.add_subplot()
    done = [t for t in trials if t.get("state") == "COMPLETE" and t.get("value") is not None]
    pruned = [t for t in trials if t.get("state") == "PRUNED" and t.get("value") is not None]
    if done:
        numbers = np.array([t["number"] for t in done])
        values = np.array([t["value"] for t in done], dtype=float)
        order = np.argsort(numbers)
        numbers, values = numbers[order], values[order]
        ax.scatter(numbers, values, s=18, color="tab:blue", label="complete trial", zorder=3)
        ax.step(numbers, np.maximum.accumulate(values), where="post", color="tab:red",
                label="best so far")
        defaults = [t for t in done if t.get("defaults")]
        if defaults:
            ax.scatter([t["number"] for t in defaults], [t["value"] for t in defaults], s=80,
                       facecolors="none", edgecolors="black", label="defaults", zorder=4)
    if pruned:
        ax.scatter([t["number"] for t in pruned], [t["value"] for t in pruned], marker="x",
                   color="grey", label="pruned (partial folds)", zorder=2)
    if not done and not pruned:
        ax.text(0.5, 0.5, "no finished trial", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("trial")
    ax.set_ylabel("OOF pAUC above 80 % TPR")
    ax.set_title(f"{len(done)} complete, {len(pruned)} pruned trial(s)")
    if done or pruned:
        ax.legend(loc="best")
    return fig


def plot_importances(importances: Mapping[str, float], *, top: int = 20) -> Figure:
    """Horizontal bars of the ``top`` largest feature importances.

    Examples
    --------
    >>> fig = plot_importances({"size_z": 3.0, "hue": 1.0, "age": 0.5}, top=2)
    >>> len(fig.axes[0].patches)
    2
    """
    items = sorted(importances.items(), key=lambda kv: kv[1], reverse=True)[:top]
    fig = _figure(7.0, max(3.0, 0.28 * len(items) + 1.2))
    ax = fig.add_subplot()
    if items:
        names = [name for name, _ in items][::-1]
        values = [float(value) for _, value in items][::-1]
        ax.barh(names, values, color="tab:green")
        ax.tick_params(axis="y", labelsize=8)
    else:
        ax.text(0.5, 0.5, "the model exposes no importances", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("share of the mean |SHAP contribution| (final model)")
    ax.set_title(f"Top {len(items)} features")
    return fig


def plot_calibration(y_true: Any, y_score: Any, *, n_bins: int = 10) -> Figure:
    """Reliability diagram in quantile bins of the score, on log axes.

    Scores outside ``[0, 1]`` (e.g. logits) are mapped through a sigmoid first.
    Rank-blended scores are percentiles, not probabilities: for them the plot
    shows how steeply the malignant rate rises across the score range, and the
    diagonal is only a reference.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0, 1, 500)
    >>> fig = plot_calibration(rng.uniform(0, 1, 500) < p, p, n_bins=5)
    >>> fig.axes[0].get_xscale()
    'log'
    """
    y = np.asarray(y_true).astype(int)
    score = np.asarray(y_score, dtype=float)
    if score.min() < 0 or score.max() > 1:
        score = 1.0 / (1.0 + np.exp(-score))
    bins = int(max(2, min(n_bins, len(np.unique(score)))))
    observed, predicted = calibration_curve(y, score, n_bins=bins, strategy="quantile")
    fig = _figure()
    ax = fig.add_subplot()
    floor = 0.5 / len(y)  # a bin with no malignant lesion still needs a place on a log axis
    ax.plot(predicted, np.maximum(observed, floor), "o-", color="tab:purple",
            label=f"observed rate ({bins} quantile bins)")
    low = max(min(float(predicted.min()), floor), 1e-6)
    ax.plot([low, 1], [low, 1], color="grey", ls=":", label="perfectly calibrated")
    ax.axhline(y.mean(), color="tab:orange", ls="--", lw=1, label=f"prevalence {y.mean():.4%}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("mean score in bin")
    ax.set_ylabel("fraction malignant in bin")
    ax.set_title("Calibration of out-of-fold scores")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, format="png")  # Figure.savefig renders with the Agg canvas


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


def _html_table(rows: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>"


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
        ("trials (complete / pruned / failed)",
         " / ".join(str(counts.get(s, 0)) for s in ("COMPLETE", "PRUNED", "FAIL"))),
        ("lesions / patients / malignant",
         f"{data.get('n_rows', oof.height)} / {data.get('n_patients', '?')} / "
         f"{data.get('n_positive', int(oof['target'].sum()))}"),
        ("data", data.get("source")),
        ("folds", f"{best.get('n_splits')} patient-grouped (seed {best.get('seed')})"),
        ("tuning wall time (s)", _fmt(best.get("tuning_seconds"), 1)),
        ("lesionboost", best.get("lesionboost_version")),
    ]
    params = best.get("best_params", {})
    param_rows = [(k, json.dumps(v)) for k, v in sorted(params.items())]
    figures = "".join(
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,'
        f'{base64.b64encode(images[name]).decode("ascii")}"><figcaption>{html.escape(title)}'
        "</figcaption></figure>"
        for name, title in PLOT_FILES.items()
        if name in images
    )
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;"
        "text-align:left;font-size:0.9em}th{background:#f4f4f4}figure{display:inline-block;"
        "margin:0.5em}img{max-width:520px}figcaption{text-align:center;font-size:0.9em}"
    )
    title = f"lesionboost run: {best.get('study_name', '')}"
    return (
        f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{style}</style></head><body>"
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
        "calibration.png": lambda: plot_calibration(y, score),
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


# ----------------------------------------------------------- clinical evaluation report

#: file name -> title of every plot :func:`write_evaluation_report` draws, in page order.
EVALUATION_PLOT_FILES = {
    "operating_points.png": "Sensitivity against referrals per 1,000 lesions",
    "reliability.png": "Reliability curve",
    "subgroups.png": "pAUC per subgroup level (95 % CI)",
}

#: What the model is for, written into every model card.
INTENDED_USE: dict[str, Any] = {
    "purpose": (
        "Triage support: rank the lesions of a 3D total-body photograph by estimated risk of "
        "malignancy so that a clinician examines the most suspicious ones first."
    ),
    "users": "Dermatologists and clinicians trained in skin-lesion assessment.",
    "not_for": [
        "diagnosis: a score is not a diagnosis and never replaces a clinician's examination, "
        "dermoscopy or histopathology",
        "use without a clinician, or self-screening by patients",
        "images other than 3D-TBP tile crops (dermoscopic or smartphone photographs)",
        "populations, devices or clinics unlike those the model was validated on",
    ],
}

# a centre or skin tone with fewer malignant lesions has no reliable estimate of its own
_FEW_MALIGNANT = MIN_MALIGNANT_FOR_WEAKEST
# width of a level name in the forest plot
_LABEL_WIDTH = 38


def _calibration_of(source: Any) -> dict[str, Any] | None:
    """The calibration dict of an :class:`Evaluation` or of a calibration mapping."""
    if source is None:
        return None
    if isinstance(source, Evaluation):
        return source.calibration
    if isinstance(source, Mapping):
        if isinstance(source.get("calibration"), Mapping):  # an Evaluation.to_dict()
            return dict(source["calibration"])
        reliability = source.get("reliability")
        if isinstance(reliability, Mapping) and {"mean_predicted", "fraction_malignant"} <= set(
            reliability
        ):
            return dict(source)
    raise TypeError(
        "calibrated must be an Evaluation of the calibrated scores, its to_dict(), or a "
        "calibration dict with a 'reliability' entry holding 'mean_predicted' and "
        f"'fraction_malignant' lists; got {type(source).__name__}."
    )


def _scores_of(oof: Any, evaluation: Evaluation) -> pl.DataFrame:
    """``oof`` as a polars frame with ``target`` and ``score``, one row per evaluated lesion."""
    from ._utils._frame import to_polars

    frame = to_polars(oof, what="oof")
    missing = [c for c in ("target", "score") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"oof lacks the column(s) {missing}; pass the evaluated lesions with their "
            "'target' and 'score' (and 'attribution' for the per-centre operating points)."
        )
    if frame.height != evaluation.n:
        raise ValueError(
            f"oof has {frame.height} rows but the evaluation scored {evaluation.n} lesions; "
            "pass exactly the lesions that were evaluated."
        )
    return frame


def plot_operating_points(
    evaluation: Evaluation, *, y_true: Any = None, y_score: Any = None
) -> Figure:
    """Sensitivity against referrals per 1,000 lesions, with the operating points marked.

    Parameters
    ----------
    evaluation : Evaluation
        Gives the operating points at 80, 90 and 95 % sensitivity.
    y_true, y_score : array-like, optional
        The evaluated labels and scores; with them the whole curve is drawn
        (every threshold), without them only the operating points.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> from lesionboost.evaluation import evaluate
    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random(400) < 0.1).astype(int)
    >>> s = np.clip(0.1 + 0.4 * y + rng.normal(0, 0.15, 400), 0, 1)
    >>> meta = pl.DataFrame({"patient_id": np.repeat([f"p{i}" for i in range(40)], 10)})
    >>> fig = plot_operating_points(evaluate(y, s, meta, n_boot=0), y_true=y, y_score=s)
    >>> fig.axes[0].get_xscale()
    'log'
    """
    fig = _figure()
    ax = fig.add_subplot()
    if y_true is not None and y_score is not None:
        y = np.asarray(y_true).astype(int)
        score = np.asarray(y_score, dtype=float)
        fpr, tpr, _ = roc_curve(y, score, drop_intermediate=False)
        positives = int(y.sum())
        flagged = tpr * positives + fpr * (y.size - positives)
        keep = flagged > 0
        ax.step(1000.0 * flagged[keep] / y.size, tpr[keep], where="post", color="tab:blue",
                lw=1.6, label="all thresholds")
    points = evaluation.operating_points
    x = [p["referrals_per_1000"] for p in points]
    ax.plot(x, [p["sensitivity"] for p in points], "o", color="tab:red", zorder=3,
            label="operating points")
    for point in points:
        ax.annotate(
            f"{point['target_sensitivity']:.0%}: {point['referrals_per_1000']:.1f} / 1,000",
            (point["referrals_per_1000"], point["sensitivity"]),
            textcoords="offset points", xytext=(6, -12), fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(right=1000.0)
    ax.set_xlabel("lesions referred per 1,000 lesions (log scale)")
    ax.set_ylabel("sensitivity (malignant lesions referred)")
    ax.set_title(
        f"{evaluation.n_malignant} malignant of {evaluation.n:,} lesions, "
        f"{evaluation.n_patients} patients"
    )
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="lower right")
    return fig


def plot_reliability(curves: Mapping[str, Mapping[str, Any] | None], *, n: int | None = None
                     ) -> Figure:
    """Reliability curves on log axes: the fraction malignant against the mean score per bin.

    Parameters
    ----------
    curves : mapping of str to calibration dict
        Label -> an :attr:`Evaluation.calibration` dict (or any mapping with
        ``reliability: {mean_predicted, fraction_malignant}``, optionally
        ``brier`` and ``slope``). ``None`` marks scores that are not
        probabilities. Pass ``{"before calibration": ..., "after calibration": ...}``
        to compare a calibrator's effect.
    n : int, optional
        Lesions behind the curves; places bins without a malignant lesion on the
        log axis at half a lesion.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> curve = {"reliability": {"mean_predicted": [0.01, 0.1, 0.5],
    ...                          "fraction_malignant": [0.0, 0.08, 0.6]}}
    >>> fig = plot_reliability({"before": curve}, n=300)
    >>> fig.axes[0].get_yscale()
    'log'
    """
    fig = _figure()
    ax = fig.add_subplot()
    floor = 0.5 / n if n else 1e-4
    drawn = 0
    colours = ("tab:purple", "tab:green", "tab:orange", "tab:blue")
    lows = [floor]
    for (label, cal), colour in zip(curves.items(), colours * 4, strict=False):
        if cal is None:
            continue
        rel = cal["reliability"]
        predicted = np.asarray(rel["mean_predicted"], dtype=float)
        observed = np.asarray(rel["fraction_malignant"], dtype=float)
        if not predicted.size:
            continue
        extra = []
        if cal.get("brier") is not None:
            extra.append(f"Brier {cal['brier']:.4f}")
        if cal.get("slope") is not None:
            extra.append(f"slope {cal['slope']:.2f}")
        text = f"{label} ({', '.join(extra)})" if extra else label
        ax.plot(np.maximum(predicted, floor), np.maximum(observed, floor), "o-", color=colour,
                label=text)
        lows.append(float(np.maximum(predicted, floor).min()))
        drawn += 1
    if drawn:
        low = max(min(lows), 1e-6)
        ax.plot([low, 1], [low, 1], color="grey", ls=":", label="perfectly calibrated")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(loc="upper left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "scores are not probabilities in [0, 1]: no reliability curve",
                ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("mean score in bin")
    ax.set_ylabel("fraction malignant in bin")
    ax.set_title("Reliability (quantile bins)")
    return fig


def _short(text: str, width: int = _LABEL_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def plot_subgroups(evaluation: Evaluation) -> Figure:
    """Forest plot: pAUC with its 95 % interval for every subgroup level, weakest flagged.

    Levels with a single class have no pAUC and are listed as "n/a". The
    overall pAUC is a vertical line; 0.02 (a constant score) a dotted one.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> from lesionboost.evaluation import evaluate
    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random(400) < 0.1).astype(int)
    >>> s = np.clip(0.1 + 0.4 * y + rng.normal(0, 0.15, 400), 0, 1)
    >>> meta = pl.DataFrame({"patient_id": np.repeat([f"p{i}" for i in range(40)], 10),
    ...                      "sex": np.repeat(["female", "male"], 200)})
    >>> fig = plot_subgroups(evaluate(y, s, meta, n_boot=20))
    >>> len(fig.axes[0].get_yticklabels())
    2
    """
    rows: list[tuple[str, dict[str, Any]]] = [
        (name, level) for name, levels in evaluation.subgroups.items() for level in levels
    ]
    fig = _figure(7.5, max(3.0, 0.3 * len(rows) + 1.4))
    ax = fig.add_subplot()
    weakest = evaluation.weakest_subgroup
    labels = []
    for position, (name, level) in enumerate(rows):
        y = len(rows) - 1 - position
        text = f"{name}: {_short(str(level['level']))} ({level['n_malignant']}/{level['n']})"
        overall_weakest = (
            weakest is not None and weakest["subgroup"] == name
            and weakest["level"] == level["level"]
        )
        if level["pauc"] is None:
            text += "  n/a"
        else:
            colour = "tab:red" if level["weakest"] else "tab:blue"
            if level["pauc_ci"] is not None:
                low, high = level["pauc_ci"]
                ax.plot([low, high], [y, y], color=colour, lw=1.4)
            ax.plot([level["pauc"]], [y], "D" if overall_weakest else "o", color=colour,
                    markersize=7 if overall_weakest else 5)
            if level["weakest"]:
                text += "  (weakest)"
        labels.append((y, text))
    if labels:
        ax.set_yticks([y for y, _ in labels], [t for _, t in labels], fontsize=7)
    ax.axvline(evaluation.pauc, color="tab:green", ls="--", lw=1,
               label=f"overall {evaluation.pauc:.4f}")
    ax.axvline(0.02, color="grey", ls=":", lw=1, label="constant score (0.02)")
    ax.set_xlim(0, 0.205)
    if rows:
        ax.set_ylim(-0.8, len(rows) - 0.2)
    else:
        ax.text(0.1, 0.5, "no subgroup columns in the metadata", ha="center", va="center")
    ax.set_xlabel(f"pAUC above {evaluation.min_tpr:.0%} TPR (95 % patient-bootstrap CI)")
    ax.set_title("pAUC per level (malignant/lesions); red: weakest of its subgroup",
                 fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def centre_table(evaluation: Evaluation, *, oof: Any = None) -> list[dict[str, Any]]:
    """Per-centre results: lesions, malignant, prevalence, pAUC (95 % CI) and AUC.

    Parameters
    ----------
    evaluation : Evaluation
        Its ``attribution`` subgroup gives the centres (empty without that column).
    oof : polars.DataFrame or pandas.DataFrame, optional
        The evaluated lesions with ``target``, ``score`` and ``attribution``; adds,
        per centre, the sensitivity and the referrals per 1,000 lesions at the
        overall 80 %-sensitivity threshold (one threshold for every centre, as a
        deployed model would use).

    Returns
    -------
    list of dict
        One row per centre: ``centre``, ``n``, ``n_malignant``, ``prevalence``,
        ``pauc``, ``pauc_ci``, ``auc``, ``weakest`` and, with ``oof``,
        ``sensitivity_at_80`` and ``referrals_per_1000_at_80``.
    """
    levels = evaluation.subgroups.get("attribution", [])
    rows = [
        {
            "centre": level["level"],
            "n": level["n"],
            "n_malignant": level["n_malignant"],
            "prevalence": level["n_malignant"] / level["n"] if level["n"] else None,
            "pauc": level["pauc"],
            "pauc_ci": level["pauc_ci"],
            "auc": level["auc"],
            "weakest": level["weakest"],
        }
        for level in levels
    ]
    if oof is None or not rows:
        return rows
    frame = _scores_of(oof, evaluation)
    if "attribution" not in frame.columns:
        return rows
    point = next((p for p in evaluation.operating_points
                  if abs(p["target_sensitivity"] - 0.8) < 1e-9), None)
    if point is None:
        return rows
    centre = frame.get_column("attribution").cast(pl.String).fill_null("unknown").to_numpy()
    target = frame.get_column("target").to_numpy().astype(int)
    flagged = frame.get_column("score").to_numpy() >= point["threshold"]
    for row in rows:
        mask = centre == row["centre"]
        malignant = int(target[mask].sum())
        row["sensitivity_at_80"] = (
            float(target[mask & flagged].sum() / malignant) if malignant else None
        )
        row["referrals_per_1000_at_80"] = float(1000.0 * flagged[mask].sum() / max(1, mask.sum()))
    return rows


def _ci_text(interval: Sequence[float] | None) -> str:
    return "n/a" if interval is None else f"{interval[0]:.4f}-{interval[1]:.4f}"


def _limitations(evaluation: Evaluation, card: Mapping[str, Any]) -> list[str]:
    data, validation = card["data"], card["validation"]
    notes: list[str] = []
    simulated = data.get("simulated")
    if simulated:
        notes.append(
            "Simulated data: the lesions come from lesionboost's SLICE-3D simulator, so these "
            "figures describe the simulator, not patients, and support no clinical claim. "
            "Validate on real, independent data before any use."
        )
    elif simulated is None:
        notes.append(
            "Whether the data are real or simulated was not recorded; treat the figures as "
            "unverified until the data source is confirmed."
        )
    else:
        notes.append(
            "Retrospective data: the labels come from lesions that were biopsied or followed "
            "up; performance in prospective use has not been measured."
        )
    centres = [row["centre"] for row in card["centres"]]
    if centres:
        notes.append(
            f"Centres represented: {len(centres)} ({'; '.join(centres)}). Performance at "
            "other clinics, with other 3D-TBP devices, or in populations unlike these is "
            "unknown."
        )
    else:
        notes.append(
            "The centre of each lesion (attribution) was not available, so transfer between "
            "centres could not be assessed."
        )
    thin = [row["centre"] for row in card["centres"] if row["n_malignant"] < _FEW_MALIGNANT]
    if thin:
        notes.append(
            f"Centres with fewer than {_FEW_MALIGNANT} malignant lesions have no reliable "
            f"estimate of their own: {'; '.join(thin)}."
        )
    scheme = validation.get("scheme")
    if scheme == "patient":
        notes.append(
            "Internal validation by patient-grouped cross-validation: every centre is seen in "
            "training, so the figures are optimistic for a centre the model has not seen; a "
            "leave-one-centre-out validation (lesionboost cv --cv centre) measures that."
        )
    elif scheme == "centre":
        notes.append(
            "Leave-one-centre-out validation: each centre is scored by a model that never saw "
            "it; the pooled figures mix the models of every fold."
        )
    cal = evaluation.calibration
    if cal is not None:
        notes.append(
            "Scores estimate the probability of malignancy at the training prevalence "
            f"({cal['event_rate']:.3%} malignant here; mean score {cal['mean_score']:.3%}, "
            f"calibration slope {cal['slope']:.2f}): at a clinic with another prevalence or "
            "case mix the probabilities shift, so thresholds and calibration must be checked "
            "locally before use."
        )
    else:
        notes.append(
            "The scores are not probabilities (outside [0, 1]); they rank lesions but are not "
            "calibrated risks."
        )
    notes.append(
        f"Intervals are 95 % percentile intervals of a patient-level bootstrap "
        f"({evaluation.n_boot_used} of {evaluation.n_boot} replicates usable) on "
        f"{evaluation.n_malignant} malignant lesions; they do not include the variation "
        "between training runs, repeats or centres."
    )
    skin = evaluation.subgroups.get("skin_tone", [])
    dark = [lv["level"] for lv in skin if lv["level"] in ("brown", "dark")]
    if skin and sum(lv["n_malignant"] for lv in skin if lv["level"] in dark) < _FEW_MALIGNANT:
        notes.append(
            "Darker skin tones (brown, dark) hold fewer than "
            f"{_FEW_MALIGNANT} malignant lesions: performance on them is not established."
        )
    return notes


def model_card(
    evaluation: Evaluation,
    *,
    calibrated: Any = None,
    context: Mapping[str, Any] | None = None,
    title: str = "lesionboost malignancy triage model",
    oof: Any = None,
) -> dict[str, Any]:
    """A model card as JSON-ready data, in the spirit of the TRIPOD+AI reporting items.

    Parameters
    ----------
    evaluation : Evaluation
        The evaluation the card reports.
    calibrated : Evaluation or mapping, optional
        The evaluation (or calibration dict) of the same lesions after calibration.
    context : mapping, optional
        What the evaluation cannot know: ``data`` (``source``, ``simulated``),
        ``validation`` (``scheme`` -- ``"patient"``, ``"centre"`` or
        ``"external"`` -- and ``description``, ``n_splits``, ``n_repeats``,
        ``seed``, per-repeat results) and ``model`` (``name``,
        ``configuration``). Missing entries are reported as not stated.
    title : str
        Name of the model in the card.
    oof : DataFrame, optional
        The evaluated lesions (``target``, ``score``, ``attribution``); adds the
        per-centre operating points (:func:`centre_table`).

    Returns
    -------
    dict
        ``title``, ``intended_use``, ``model``, ``data``, ``centres``,
        ``validation``, ``performance``, ``calibration``, ``subgroups``,
        ``weakest_subgroup`` and ``limitations``.
    """
    context = dict(context or {})
    data_context = dict(context.get("data") or {})
    centres = centre_table(evaluation, oof=oof)
    performance = {
        "min_tpr": evaluation.min_tpr,
        "pauc": {"value": evaluation.pauc, "ci": evaluation.pauc_ci},
        "auc": {"value": evaluation.auc, "ci": evaluation.auc_ci},
        "top15_sensitivity": {"value": evaluation.top15_sensitivity,
                              "ci": evaluation.top15_sensitivity_ci},
        "lesions_per_cancer": {f"{k:.2f}": v for k, v in evaluation.lesions_per_cancer.items()},
        "operating_points": evaluation.operating_points,
        "bootstrap": {"n_boot": evaluation.n_boot, "n_boot_used": evaluation.n_boot_used,
                      "seed": evaluation.seed, "unit": "patient"},
    }
    calibration: dict[str, Any] = {"before": evaluation.calibration}
    after = _calibration_of(calibrated)
    if calibrated is not None:
        calibration["after"] = after
    card: dict[str, Any] = {
        "title": title,
        "lesionboost_version": __version__,
        "intended_use": INTENDED_USE,
        "model": dict(context.get("model") or {"name": "not stated"}),
        "data": {
            "source": data_context.get("source", "not stated"),
            "simulated": data_context.get("simulated"),
            "n_lesions": evaluation.n,
            "n_malignant": evaluation.n_malignant,
            "n_patients": evaluation.n_patients,
            "prevalence": evaluation.n_malignant / evaluation.n,
            "outcome": "malignant (1) or benign (0) per lesion, as in the SLICE-3D target",
        },
        "centres": centres,
        "validation": dict(context.get("validation") or {"description": "not stated"}),
        "performance": performance,
        "calibration": calibration,
        "subgroups": evaluation.subgroups,
        "weakest_subgroup": evaluation.weakest_subgroup,
    }
    card["limitations"] = _limitations(evaluation, card)
    plain: dict[str, Any] = json.loads(json.dumps(card, default=_json_value))
    return plain


def _json_value(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, (tuple, set, np.ndarray)):
        return list(value)
    return str(value)


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows)
    return lines


def _num(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def model_card_markdown(card: Mapping[str, Any]) -> str:
    """The Markdown text of a :func:`model_card`.

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> from lesionboost.evaluation import evaluate
    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random(400) < 0.1).astype(int)
    >>> s = np.clip(0.1 + 0.4 * y + rng.normal(0, 0.15, 400), 0, 1)
    >>> meta = pl.DataFrame({"patient_id": np.repeat([f"p{i}" for i in range(40)], 10)})
    >>> text = model_card_markdown(model_card(evaluate(y, s, meta, n_boot=50)))
    >>> text.splitlines()[0]
    '# Model card: lesionboost malignancy triage model'
    """
    perf = card["performance"]
    data = card["data"]
    use = card["intended_use"]
    out = [f"# Model card: {card['title']}", ""]
    out += [f"lesionboost {card.get('lesionboost_version', '')}".rstrip(), ""]
    out += ["## Intended use", "", use["purpose"], "", f"Users: {use['users']}", "",
            "Not for:", ""]
    out += [f"- {item}" for item in use["not_for"]]
    model = card["model"]
    out += ["", "## Model", "", f"{model.get('name', 'not stated')}"]
    if model.get("configuration"):
        out += ["", "```json", json.dumps(model["configuration"], indent=1, sort_keys=True),
                "```"]
    simulated = {True: "simulated", False: "real", None: "not stated"}[data.get("simulated")]
    out += ["", "## Data and centres", "",
            f"Source: {data['source']} ({simulated} data). {data['n_lesions']:,} lesions, "
            f"{data['n_malignant']} malignant ({data['prevalence']:.3%}), "
            f"{data['n_patients']} patients. Outcome: {data['outcome']}.", ""]
    if card["centres"]:
        header = ["centre", "lesions", "malignant", "prevalence", "pAUC", "95 % CI", "AUC"]
        with_points = "sensitivity_at_80" in card["centres"][0]
        if with_points:
            header += ["sensitivity at overall 80 % threshold", "referrals / 1,000"]
        rows = []
        for row in card["centres"]:
            cells = [row["centre"] + (" (weakest)" if row["weakest"] else ""), row["n"],
                     row["n_malignant"], f"{row['prevalence']:.3%}", _num(row["pauc"]),
                     _ci_text(row["pauc_ci"]), _num(row["auc"])]
            if with_points:
                cells += [_num(row.get("sensitivity_at_80"), 3),
                          _num(row.get("referrals_per_1000_at_80"), 1)]
            rows.append(cells)
        out += _md_table(header, rows)
    else:
        out.append("No centre (attribution) column: centres not reported.")
    validation = card["validation"]
    out += ["", "## Validation", "", str(validation.get("description", "not stated"))]
    details = {k: v for k, v in validation.items() if k not in ("description", "repeats")}
    if details:
        out += [""] + [f"- {k}: {v}" for k, v in details.items()]
    out += ["", "## Performance", ""]
    boot = perf["bootstrap"]
    out += _md_table(
        ["metric", "value", "95 % CI"],
        [
            [f"pAUC above {perf['min_tpr']:.0%} TPR", _num(perf["pauc"]["value"]),
             _ci_text(perf["pauc"]["ci"])],
            ["AUC", _num(perf["auc"]["value"]), _ci_text(perf["auc"]["ci"])],
            ["top-15 sensitivity", _num(perf["top15_sensitivity"]["value"]),
             _ci_text(perf["top15_sensitivity"]["ci"])],
        ],
    )
    out += ["", f"pAUC above {perf['min_tpr']:.0%} TPR: {_num(perf['pauc']['value'])} "
            f"(95 % CI {_ci_text(perf['pauc']['ci'])}); intervals from a patient-level "
            f"bootstrap, {boot['n_boot_used']} of {boot['n_boot']} replicates (seed "
            f"{boot['seed']}).", "", "Operating points:", ""]
    out += _md_table(
        ["target sensitivity", "sensitivity", "specificity", "referrals / 1,000 lesions",
         "referrals / patient", "lesions per cancer"],
        [
            [f"{p['target_sensitivity']:.0%}", _num(p["sensitivity"], 3),
             _num(p["specificity"], 3), _num(p["referrals_per_1000"], 1),
             _num(p["referrals_per_patient"], 2),
             _num(perf["lesions_per_cancer"].get(f"{p['target_sensitivity']:.2f}"), 1)]
            for p in perf["operating_points"]
        ],
    )
    out += ["", "## Calibration", ""]
    cal_rows = []
    for label, cal in card["calibration"].items():
        if cal is None:
            cal_rows.append([label, "n/a", "n/a", "n/a", "n/a", "n/a"])
        else:
            cal_rows.append([label, _num(cal.get("brier"), 5), _num(cal.get("intercept"), 3),
                             _num(cal.get("slope"), 3), _num(cal.get("mean_score"), 5),
                             _num(cal.get("event_rate"), 5)])
    names = {"before": "before calibration" if "after" in card["calibration"] else "scores",
             "after": "after calibration"}
    cal_rows = [[names.get(row[0], row[0]), *row[1:]] for row in cal_rows]
    out += _md_table(["scores", "Brier", "intercept", "slope", "mean score", "event rate"],
                     cal_rows)
    out += ["", "## Subgroups", ""]
    weak = card["weakest_subgroup"]
    if weak is not None:
        out += [f"Weakest subgroup: {weak['subgroup']} = {weak['level']} (pAUC "
                f"{_num(weak['pauc'])}, {weak['n_malignant']} malignant).", ""]
    else:
        out += ["Weakest subgroup: none flagged (no level has enough malignant lesions).", ""]
    for name, levels in card["subgroups"].items():
        out += [f"### {name}", ""]
        out += _md_table(
            ["level", "lesions", "malignant", "pAUC", "95 % CI", "AUC"],
            [[str(lv["level"]) + (" (weakest)" if lv["weakest"] else ""), lv["n"],
              lv["n_malignant"], _num(lv["pauc"]), _ci_text(lv["pauc_ci"]), _num(lv["auc"])]
             for lv in levels],
        )
        out.append("")
    out += ["## Limitations", ""]
    out += [f"- {note}" for note in card["limitations"]]
    return "\n".join(out) + "\n"


def _evaluation_page(title: str, evaluation: Evaluation, card: Mapping[str, Any],
                     images: Mapping[str, bytes]) -> str:
    weak = evaluation.weakest_subgroup
    point = evaluation.operating_points[0] if evaluation.operating_points else None
    summary = [
        ("lesions / malignant / patients",
         f"{evaluation.n} / {evaluation.n_malignant} / {evaluation.n_patients}"),
        (f"pAUC above {evaluation.min_tpr:.0%} TPR (95 % CI)",
         f"{_num(evaluation.pauc)} ({_ci_text(evaluation.pauc_ci)})"),
        ("AUC (95 % CI)", f"{_num(evaluation.auc)} ({_ci_text(evaluation.auc_ci)})"),
        ("top-15 sensitivity (95 % CI)",
         f"{_num(evaluation.top15_sensitivity)} ({_ci_text(evaluation.top15_sensitivity_ci)})"),
        ("referrals per 1,000 at 80 % sensitivity",
         "n/a" if point is None else f"{point['referrals_per_1000']:.1f}"),
        ("weakest subgroup", "none flagged" if weak is None else
         f"{weak['subgroup']} = {weak['level']} (pAUC {_num(weak['pauc'])})"),
        ("validation", card["validation"].get("description", "not stated")),
    ]
    figures = "".join(
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(images[name]).decode("ascii")}"><figcaption>'
        f"{html.escape(caption)}</figcaption></figure>"
        for name, caption in EVALUATION_PLOT_FILES.items()
        if name in images
    )
    limitations = "".join(f"<li>{html.escape(note)}</li>" for note in card["limitations"])
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;"
        "text-align:left;font-size:0.9em}th{background:#f4f4f4}figure{display:inline-block;"
        "margin:0.5em}img{max-width:520px}figcaption{text-align:center;font-size:0.9em}"
    )
    return (
        f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{style}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(INTENDED_USE['purpose'])} Not a "
        'diagnosis. See the <a href="model_card.md">model card</a>.</p>'
        f"<h2>Summary</h2>{_html_table(summary)}<h2>Plots</h2>{figures}"
        f"<h2>Limitations</h2><ul>{limitations}</ul>{evaluation.to_html()}</body></html>\n"
    )


def write_evaluation_report(
    evaluation: Evaluation,
    out_dir: str | os.PathLike[str],
    *,
    oof: Any = None,
    calibrated: Any = None,
    context: Mapping[str, Any] | None = None,
    title: str = "lesionboost malignancy triage model",
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Draw the clinical evaluation report and write the model card.

    Parameters
    ----------
    evaluation : Evaluation
        From :func:`lesionboost.evaluation.evaluate`.
    out_dir : str or path-like
        The report folder: new, empty or an earlier report (``written_by="lesionboost
        report"``); written atomically, an existing report is replaced only once the
        new one is complete.
    oof : polars.DataFrame or pandas.DataFrame, optional
        The evaluated lesions with ``target`` and ``score`` (and ``attribution``);
        draws the whole sensitivity-referral curve and adds per-centre operating
        points.
    calibrated : Evaluation or mapping, optional
        The same lesions after calibration: an :class:`Evaluation` of the calibrated
        scores, its ``to_dict()``, or a calibration dict (``reliability`` with
        ``mean_predicted`` and ``fraction_malignant``, optionally ``brier``,
        ``slope``, ...). Its reliability curve is drawn next to the uncalibrated one
        and the card reports both.
    context : mapping, optional
        Data source, validation scheme and model configuration for the card (see
        :func:`model_card`).
    title : str
        Title of the page and the card.
    inputs : sequence of paths
        Files the report is drawn from; none may lie in ``out_dir``.

    Returns
    -------
    pathlib.Path
        The folder, holding ``operating_points.png``, ``reliability.png``,
        ``subgroups.png``, ``centres.csv``, ``model_card.md``, ``model_card.json``
        and ``index.html`` (plots embedded).

    Raises
    ------
    OutputError
        ``out_dir`` holds files lesionboost did not write or another command's output.
    OptionalDependencyError
        matplotlib is not installed (``pip install "lesionboost[report]"``).

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> from lesionboost.evaluation import evaluate
    >>> rng = np.random.default_rng(0)
    >>> y = (rng.random(400) < 0.1).astype(int)
    >>> s = np.clip(0.1 + 0.4 * y + rng.normal(0, 0.15, 400), 0, 1)
    >>> meta = pl.DataFrame({"patient_id": np.repeat([f"p{i}" for i in range(40)], 10)})
    >>> out = write_evaluation_report(evaluate(y, s, meta, n_boot=50), "evaluation")
    >>> sorted(p.name for p in out.iterdir() if not p.name.startswith("."))[:3]
    ['centres.csv', 'index.html', 'model_card.json']
    """
    target = Path(out_dir)
    check_folder_output(target, written_by=WRITTEN_BY, option="the report folder",
                        replace=True, inputs=list(inputs))
    import_optional("matplotlib", purpose="drawing the evaluation report")
    frame = None if oof is None else _scores_of(oof, evaluation)
    curves = {"before calibration" if calibrated is not None else "scores":
              evaluation.calibration}
    if calibrated is not None:
        curves["after calibration"] = _calibration_of(calibrated)
    card = model_card(evaluation, calibrated=calibrated, context=context, title=title, oof=frame)
    y = None if frame is None else frame.get_column("target").to_numpy()
    s = None if frame is None else frame.get_column("score").to_numpy()
    figures = {
        "operating_points.png": lambda: plot_operating_points(evaluation, y_true=y, y_score=s),
        "reliability.png": lambda: plot_reliability(curves, n=evaluation.n),
        "subgroups.png": lambda: plot_subgroups(evaluation),
    }
    images: dict[str, bytes] = {}
    names = [*figures, "centres.csv", "model_card.md", "model_card.json", "index.html"]
    with atomic_directory(target) as tmp:
        for name, draw in figures.items():
            _save(draw(), tmp / name)
            images[name] = (tmp / name).read_bytes()
        centres = [
            {**row, "pauc_ci_low": None if row["pauc_ci"] is None else row["pauc_ci"][0],
             "pauc_ci_high": None if row["pauc_ci"] is None else row["pauc_ci"][1]}
            for row in card["centres"]
        ]
        table = pl.DataFrame(
            [{k: v for k, v in row.items() if k != "pauc_ci"} for row in centres],
            infer_schema_length=None,
        ) if centres else pl.DataFrame({"centre": []}, schema={"centre": pl.String})
        table.write_csv(tmp / "centres.csv")
        (tmp / "model_card.md").write_text(model_card_markdown(card), encoding="utf-8")
        (tmp / "model_card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        (tmp / "index.html").write_text(_evaluation_page(title, evaluation, card, images),
                                        encoding="utf-8")
        claim(tmp, names, written_by=WRITTEN_BY)
    logger.info("wrote the evaluation report and model card to %s", target)
    return target

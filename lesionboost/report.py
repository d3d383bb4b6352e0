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
from ._utils._outputs import check_folder_output, claim
from ._utils._imports import import_optional
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

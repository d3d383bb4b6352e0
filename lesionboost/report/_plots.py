"""The plots of both reports, as matplotlib figures built without ``pyplot``.

The five plots of a tuning run (:func:`plot_roc`, :func:`plot_fold_scores`,
:func:`plot_history`, :func:`plot_importances`, :func:`plot_calibration`) and the
three of a clinical evaluation (:func:`plot_operating_points`,
:func:`plot_reliability`, :func:`plot_subgroups`) each return a
:class:`matplotlib.figure.Figure` built without ``pyplot``: no global state and no GUI
backend, so reports can be drawn from worker threads and on machines without a
display (figures are rendered by the Agg canvas). matplotlib is an optional
dependency (``pip install "lesionboost[report]"``), imported only when a plot is
drawn, so importing this module does not need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score, roc_curve

from .._utils._imports import import_optional
from ..evaluation import Evaluation
from ..metrics import pauc_above_tpr

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "plot_roc",
    "plot_fold_scores",
    "plot_history",
    "plot_importances",
    "plot_calibration",
    "plot_operating_points",
    "plot_reliability",
    "plot_subgroups",
]

# width of a level name in the forest plot
_LABEL_WIDTH = 38


def _figure(width: float = 6.4, height: float = 4.8) -> Figure:
    import_optional("matplotlib", purpose="drawing report plots")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, format="png")  # Figure.savefig renders with the Agg canvas


# ------------------------------------------------------------------ tuning run plots


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
        ax.step(
            numbers,
            np.maximum.accumulate(values),
            where="post",
            color="tab:red",
            label="best so far",
        )
        defaults = [t for t in done if t.get("defaults")]
        if defaults:
            ax.scatter(
                [t["number"] for t in defaults],
                [t["value"] for t in defaults],
                s=80,
                facecolors="none",
                edgecolors="black",
                label="defaults",
                zorder=4,
            )
    if pruned:
        ax.scatter(
            [t["number"] for t in pruned],
            [t["value"] for t in pruned],
            marker="x",
            color="grey",
            label="pruned (partial folds)",
            zorder=2,
        )
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
        ax.text(
            0.5,
            0.5,
            "the model exposes no importances",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("share of the mean |SHAP contribution| (final model)")
    ax.set_title(f"Top {len(items)} features")
    return fig


def plot_calibration(
    y_true: Any, y_score: Any, *, n_bins: int = 10, calibrated: Any = None
) -> Figure:
    """Reliability diagram in quantile bins of the score, on log axes.

    ``calibrated`` (the same lesions' calibrated probabilities) adds a second
    curve, so the plot shows the reliability before and after calibration.

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
    ax.plot(
        predicted,
        np.maximum(observed, floor),
        "o-",
        color="tab:purple",
        label=f"{'before calibration' if calibrated is not None else 'observed rate'} "
        f"({bins} quantile bins)",
    )
    low = max(min(float(predicted.min()), floor), 1e-6)
    if calibrated is not None:
        after = np.asarray(calibrated, dtype=float)
        seen, mean = calibration_curve(y, after, n_bins=bins, strategy="quantile")
        ax.plot(mean, np.maximum(seen, floor), "s-", color="tab:green", label="after calibration")
        low = max(min(low, float(mean.min())), 1e-6)
    ax.plot([low, 1], [low, 1], color="grey", ls=":", label="perfectly calibrated")
    ax.axhline(y.mean(), color="tab:orange", ls="--", lw=1, label=f"prevalence {y.mean():.4%}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("mean score in bin")
    ax.set_ylabel("fraction malignant in bin")
    ax.set_title("Calibration of out-of-fold scores")
    ax.legend(loc="upper left", fontsize=8)
    return fig


# --------------------------------------------------------- clinical evaluation plots


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
        ax.step(
            1000.0 * flagged[keep] / y.size,
            tpr[keep],
            where="post",
            color="tab:blue",
            lw=1.6,
            label="all thresholds",
        )
    points = evaluation.operating_points
    x = [p["referrals_per_1000"] for p in points]
    ax.plot(
        x,
        [p["sensitivity"] for p in points],
        "o",
        color="tab:red",
        zorder=3,
        label="operating points",
    )
    for point in points:
        ax.annotate(
            f"{point['target_sensitivity']:.0%}: {point['referrals_per_1000']:.1f} / 1,000",
            (point["referrals_per_1000"], point["sensitivity"]),
            textcoords="offset points",
            xytext=(6, -12),
            fontsize=8,
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


def plot_reliability(
    curves: Mapping[str, Mapping[str, Any] | None], *, n: int | None = None
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
        ax.plot(
            np.maximum(predicted, floor),
            np.maximum(observed, floor),
            "o-",
            color=colour,
            label=text,
        )
        lows.append(float(np.maximum(predicted, floor).min()))
        drawn += 1
    if drawn:
        low = max(min(lows), 1e-6)
        ax.plot([low, 1], [low, 1], color="grey", ls=":", label="perfectly calibrated")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(loc="upper left", fontsize=8)
    else:
        ax.text(
            0.5,
            0.5,
            "scores are not probabilities in [0, 1]: no reliability curve",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
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
            weakest is not None
            and weakest["subgroup"] == name
            and weakest["level"] == level["level"]
        )
        if level["pauc"] is None:
            text += "  n/a"
        else:
            colour = "tab:red" if level["weakest"] else "tab:blue"
            if level["pauc_ci"] is not None:
                low, high = level["pauc_ci"]
                ax.plot([low, high], [y, y], color=colour, lw=1.4)
            ax.plot(
                [level["pauc"]],
                [y],
                "D" if overall_weakest else "o",
                color=colour,
                markersize=7 if overall_weakest else 5,
            )
            if level["weakest"]:
                text += "  (weakest)"
        labels.append((y, text))
    if labels:
        ax.set_yticks([y for y, _ in labels], [t for _, t in labels], fontsize=7)
    ax.axvline(
        evaluation.pauc, color="tab:green", ls="--", lw=1, label=f"overall {evaluation.pauc:.4f}"
    )
    ax.axvline(0.02, color="grey", ls=":", lw=1, label="constant score (0.02)")
    ax.set_xlim(0, 0.205)
    if rows:
        ax.set_ylim(-0.8, len(rows) - 0.2)
    else:
        ax.text(0.1, 0.5, "no subgroup columns in the metadata", ha="center", va="center")
    ax.set_xlabel(f"pAUC above {evaluation.min_tpr:.0%} TPR (95 % patient-bootstrap CI)")
    ax.set_title("pAUC per level (malignant/lesions); red: weakest of its subgroup", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    return fig

"""The clinical evaluation report: plots, per-centre table, model card and one HTML page.

:func:`write_evaluation_report` draws the clinical side of an
:class:`~lesionboost.evaluation.Evaluation` (``lesionboost cv`` and ``lesionboost
evaluate --report`` call it): sensitivity against referrals per 1,000 lesions,
reliability curves (before and after calibration when both are given), a forest plot
of pAUC per subgroup with the weakest level flagged, a per-centre table, and the model
card in Markdown and JSON (:mod:`._card`), with a self-contained ``index.html``.
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from .._utils._atomic import atomic_directory
from .._utils._imports import import_optional
from .._utils._outputs import check_folder_output, claim
from ..evaluation import Evaluation
from ._card import (
    INTENDED_USE,
    _calibration_of,
    _ci_text,
    _num,
    _scores_of,
    model_card,
    model_card_markdown,
)
from ._page import (
    _STYLE,
    EVALUATION_WRITTEN_BY,
    _html_figures,
    _html_table,
    evaluation_report_markers,
)
from ._plots import _save, plot_operating_points, plot_reliability, plot_subgroups

__all__ = ["write_evaluation_report", "EVALUATION_PLOT_FILES"]

logger = logging.getLogger("lesionboost.report")  # the package's logger, as before the split

#: file name -> title of every plot :func:`write_evaluation_report` draws, in page order.
EVALUATION_PLOT_FILES = {
    "operating_points.png": "Sensitivity against referrals per 1,000 lesions",
    "reliability.png": "Reliability curve",
    "subgroups.png": "pAUC per subgroup level (95 % CI)",
}


def _evaluation_page(
    title: str, evaluation: Evaluation, card: Mapping[str, Any], images: Mapping[str, bytes]
) -> str:
    weak = evaluation.weakest_subgroup
    point = evaluation.operating_points[0] if evaluation.operating_points else None
    summary = [
        (
            "lesions / malignant / patients",
            f"{evaluation.n} / {evaluation.n_malignant} / {evaluation.n_patients}",
        ),
        (
            f"pAUC above {evaluation.min_tpr:.0%} TPR (95 % CI)",
            f"{_num(evaluation.pauc)} ({_ci_text(evaluation.pauc_ci)})",
        ),
        ("AUC (95 % CI)", f"{_num(evaluation.auc)} ({_ci_text(evaluation.auc_ci)})"),
        (
            "top-15 sensitivity (95 % CI)",
            f"{_num(evaluation.top15_sensitivity)} ({_ci_text(evaluation.top15_sensitivity_ci)})",
        ),
        (
            "referrals per 1,000 at 80 % sensitivity",
            "n/a" if point is None else f"{point['referrals_per_1000']:.1f}",
        ),
        (
            "weakest subgroup",
            "none flagged"
            if weak is None
            else f"{weak['subgroup']} = {weak['level']} (pAUC {_num(weak['pauc'])})",
        ),
        ("validation", card["validation"].get("description", "not stated")),
    ]
    figures = _html_figures(EVALUATION_PLOT_FILES, images)
    limitations = "".join(f"<li>{html.escape(note)}</li>" for note in card["limitations"])
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
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
        The report folder: new, empty or an earlier evaluation report (claimed by
        ``EVALUATION_WRITTEN_BY``); written atomically, an existing report is replaced
        only once the new one is complete.
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
    check_folder_output(
        target,
        written_by=EVALUATION_WRITTEN_BY,
        option="the report folder",
        replace=True,
        inputs=list(inputs),
        also_written_by=evaluation_report_markers(target),
    )
    import_optional("matplotlib", purpose="drawing the evaluation report")
    frame = None if oof is None else _scores_of(oof, evaluation)
    curves = {"before calibration" if calibrated is not None else "scores": evaluation.calibration}
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
            {
                **row,
                "pauc_ci_low": None if row["pauc_ci"] is None else row["pauc_ci"][0],
                "pauc_ci_high": None if row["pauc_ci"] is None else row["pauc_ci"][1],
            }
            for row in card["centres"]
        ]
        table = (
            pl.DataFrame(
                [{k: v for k, v in row.items() if k != "pauc_ci"} for row in centres],
                infer_schema_length=None,
            )
            if centres
            else pl.DataFrame({"centre": []}, schema={"centre": pl.String})
        )
        table.write_csv(tmp / "centres.csv")
        (tmp / "model_card.md").write_text(model_card_markdown(card), encoding="utf-8")
        (tmp / "model_card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        (tmp / "index.html").write_text(
            _evaluation_page(title, evaluation, card, images), encoding="utf-8"
        )
        claim(tmp, names, written_by=EVALUATION_WRITTEN_BY)
    logger.info("wrote the evaluation report and model card to %s", target)
    return target

"""Plots, self-contained HTML pages and model cards of lesionboost runs.

- ``_run.py`` -- :func:`write_report`: the plots and page of a ``lesionboost tune`` run;
- ``_evaluation.py`` -- :func:`write_evaluation_report`: the clinical report of an
  :class:`~lesionboost.evaluation.Evaluation` (``lesionboost cv``, ``evaluate --report``);
- ``_card.py`` -- :func:`model_card`, :func:`model_card_markdown`, :func:`centre_table`;
- ``_plots.py`` -- every ``plot_*`` function: matplotlib figures built without ``pyplot``;
- ``_page.py`` -- the folder marker and the HTML pieces both pages share.

matplotlib is optional (``pip install "lesionboost[report]"``) and imported only
when a plot is drawn: importing this package does not need it.
"""

from ._card import INTENDED_USE, centre_table, model_card, model_card_markdown
from ._evaluation import EVALUATION_PLOT_FILES, write_evaluation_report
from ._page import (
    CV_REPORT_ALSO_WRITTEN_BY,
    CV_RUN_WRITTEN_BY,
    EVALUATION_WRITTEN_BY,
    WRITTEN_BY,
    evaluation_report_markers,
)
from ._plots import (
    plot_calibration,
    plot_fold_scores,
    plot_history,
    plot_importances,
    plot_operating_points,
    plot_reliability,
    plot_roc,
    plot_subgroups,
)
from ._run import PLOT_FILES, write_report

__all__ = [
    "plot_roc",
    "plot_fold_scores",
    "plot_history",
    "plot_importances",
    "plot_calibration",
    "write_report",
    "PLOT_FILES",
    "WRITTEN_BY",
    "EVALUATION_WRITTEN_BY",
    "CV_REPORT_ALSO_WRITTEN_BY",
    "CV_RUN_WRITTEN_BY",
    "evaluation_report_markers",
    "plot_operating_points",
    "plot_reliability",
    "plot_subgroups",
    "centre_table",
    "model_card",
    "model_card_markdown",
    "write_evaluation_report",
    "EVALUATION_PLOT_FILES",
    "INTENDED_USE",
]

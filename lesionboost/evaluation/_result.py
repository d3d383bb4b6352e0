"""The :class:`Evaluation` result and its JSON and HTML forms."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._bootstrap import Interval

#: Target sensitivities of the operating points and of lesions per cancer.
SENSITIVITIES: tuple[float, ...] = (0.80, 0.90, 0.95)
#: Lesions per patient examined by the top-k sensitivity.
TOP_K = 15


@dataclass(frozen=True)
class Evaluation:
    """The result of :func:`evaluate`.

    Attributes
    ----------
    n, n_malignant, n_patients : int
        Lesions, malignant lesions and patients scored.
    min_tpr : float
        TPR above which the pAUC is measured.
    n_boot, seed : int
        Bootstrap replicates drawn and their seed.
    n_boot_used : int
        Replicates with both classes, from which the intervals are computed.
    pauc, auc, top15_sensitivity : float
        Point estimates on all lesions.
    pauc_ci, auc_ci, top15_sensitivity_ci : tuple of float or None
        95 % percentile bootstrap intervals (None without usable replicates).
    lesions_per_cancer : dict of float to float
        Lesions flagged per malignant lesion flagged, keyed by target sensitivity.
    operating_points : list of dict
        Per target sensitivity: ``threshold``, ``sensitivity``, ``specificity``,
        ``n_flagged``, ``referrals_per_1000`` (lesions) and ``referrals_per_patient``.
    calibration : dict or None
        ``brier``, ``intercept`` and ``slope`` (logistic regression of the label on
        ``logit(score)``), ``calibration_in_the_large`` (intercept with the slope
        fixed at 1), ``mean_score``, ``event_rate``, ``converged`` and
        ``reliability`` (``mean_predicted`` and ``fraction_malignant`` per quantile
        bin). None when a score lies outside ``[0, 1]`` (not a probability).
    subgroups : dict of str to list of dict
        Per subgroup, one dict per level: ``level``, ``n``, ``n_malignant``,
        ``pauc`` (None with a single class), ``pauc_ci``, ``auc`` and ``weakest``
        (True on the level with the lowest pAUC among those with at least
        ``MIN_MALIGNANT_FOR_WEAKEST`` malignant lesions).
    weakest_subgroup : dict or None
        ``subgroup``, ``level``, ``pauc`` and ``n_malignant`` of the weakest level
        over all subgroups.
    """

    n: int
    n_malignant: int
    n_patients: int
    min_tpr: float
    n_boot: int
    seed: int
    n_boot_used: int
    pauc: float
    pauc_ci: Interval | None
    auc: float
    auc_ci: Interval | None
    top15_sensitivity: float
    top15_sensitivity_ci: Interval | None
    lesions_per_cancer: dict[float, float]
    operating_points: list[dict[str, float]] = field(repr=False)
    calibration: dict[str, Any] | None = field(repr=False)
    subgroups: dict[str, list[dict[str, Any]]] = field(repr=False)
    weakest_subgroup: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain Python: lists, dicts, str, int, float, bool and None only.

        Intervals become two-element lists and the sensitivities keying
        ``lesions_per_cancer`` become strings such as ``"0.80"``.

        Returns
        -------
        dict
        """
        out: dict[str, Any] = {
            "n": self.n,
            "n_malignant": self.n_malignant,
            "n_patients": self.n_patients,
            "min_tpr": self.min_tpr,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "n_boot_used": self.n_boot_used,
            "pauc": self.pauc,
            "pauc_ci": self.pauc_ci,
            "auc": self.auc,
            "auc_ci": self.auc_ci,
            "top15_sensitivity": self.top15_sensitivity,
            "top15_sensitivity_ci": self.top15_sensitivity_ci,
            "lesions_per_cancer": {
                f"{level:.2f}": value for level, value in self.lesions_per_cancer.items()
            },
            "operating_points": self.operating_points,
            "calibration": self.calibration,
            "subgroups": self.subgroups,
            "weakest_subgroup": self.weakest_subgroup,
        }
        result: dict[str, Any] = _plain(out)
        return result

    def to_html(self) -> str:
        """A self-contained HTML fragment (a ``<section>`` of tables, no scripts or images).

        Returns
        -------
        str
        """
        parts = ['<section class="lesionboost-evaluation">', "<h2>Evaluation</h2>"]
        parts.append(
            _table(
                ["metric", "value", "95 % CI"],
                [
                    ["lesions", str(self.n), ""],
                    ["malignant lesions", str(self.n_malignant), ""],
                    ["patients", str(self.n_patients), ""],
                    [f"pAUC above {self.min_tpr:.0%} TPR", _fmt(self.pauc), _fmt_ci(self.pauc_ci)],
                    ["AUC", _fmt(self.auc), _fmt_ci(self.auc_ci)],
                    [
                        f"top-{TOP_K} sensitivity",
                        _fmt(self.top15_sensitivity),
                        _fmt_ci(self.top15_sensitivity_ci),
                    ],
                ],
                caption=(
                    f"Patient-level bootstrap: {self.n_boot_used} of {self.n_boot} replicates "
                    f"with both classes (seed {self.seed})."
                ),
            )
        )
        parts.append("<h3>Operating points</h3>")
        parts.append(
            _table(
                [
                    "target sensitivity",
                    "threshold",
                    "sensitivity",
                    "specificity",
                    "referrals / 1,000 lesions",
                    "referrals / patient",
                    "lesions per cancer",
                ],
                [
                    [
                        f"{point['target_sensitivity']:.0%}",
                        _fmt(point["threshold"], 6),
                        _fmt(point["sensitivity"]),
                        _fmt(point["specificity"]),
                        _fmt(point["referrals_per_1000"], 1),
                        _fmt(point["referrals_per_patient"], 2),
                        _fmt(self.lesions_per_cancer.get(point["target_sensitivity"]), 1),
                    ]
                    for point in self.operating_points
                ],
            )
        )
        parts.append("<h3>Calibration</h3>")
        if self.calibration is None:
            parts.append("<p>Scores are not probabilities in [0, 1]; no calibration.</p>")
        else:
            cal = self.calibration
            parts.append(
                _table(
                    [
                        "Brier score",
                        "intercept",
                        "slope",
                        "calibration in the large",
                        "mean score",
                        "event rate",
                    ],
                    [
                        [
                            _fmt(cal["brier"], 5),
                            _fmt(cal["intercept"], 3),
                            _fmt(cal["slope"], 3),
                            _fmt(cal["calibration_in_the_large"], 3),
                            _fmt(cal["mean_score"], 5),
                            _fmt(cal["event_rate"], 5),
                        ]
                    ],
                )
            )
            rel = cal["reliability"]
            parts.append(
                _table(
                    ["bin", "mean predicted", "fraction malignant"],
                    [
                        [str(i + 1), _fmt(p, 5), _fmt(f, 5)]
                        for i, (p, f) in enumerate(
                            zip(rel["mean_predicted"], rel["fraction_malignant"], strict=True)
                        )
                    ],
                    caption="Reliability curve (quantile bins).",
                )
            )
        parts.append("<h3>Subgroups</h3>")
        for name, levels in self.subgroups.items():
            rows = [
                [
                    ("<strong>" + html.escape(str(lv["level"])) + "</strong> (weakest)")
                    if lv["weakest"]
                    else html.escape(str(lv["level"])),
                    str(lv["n"]),
                    str(lv["n_malignant"]),
                    _fmt(lv["pauc"]),
                    _fmt_ci(lv["pauc_ci"]),
                    _fmt(lv["auc"]),
                ]
                for lv in levels
            ]
            parts.append(f"<h4>{html.escape(name)}</h4>")
            parts.append(
                _table(
                    ["level", "lesions", "malignant", "pAUC", "95 % CI", "AUC"], rows, escape=False
                )
            )
        if self.weakest_subgroup is not None:
            weak = self.weakest_subgroup
            parts.append(
                f"<p>Weakest subgroup: {html.escape(weak['subgroup'])} = "
                f"{html.escape(str(weak['level']))} (pAUC {_fmt(weak['pauc'])}, "
                f"{weak['n_malignant']} malignant).</p>"
            )
        parts.append("</section>")
        return "\n".join(parts)


# ---------------------------------------------------------------------- output
def _plain(value: Any) -> Any:
    """Recursively turn numpy scalars, tuples and non-finite floats into JSON-ready Python."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _fmt_ci(interval: Interval | None) -> str:
    if interval is None:
        return "n/a"
    return f"{interval[0]:.4f} - {interval[1]:.4f}"


def _table(
    header: list[str], rows: list[list[str]], *, caption: str | None = None, escape: bool = True
) -> str:
    def cell(text: str) -> str:
        return html.escape(text) if escape else text

    out = ["<table>"]
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append(
        "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>"
    )
    out.append("<tbody>")
    out.extend("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    out.append("</tbody></table>")
    return "\n".join(out)

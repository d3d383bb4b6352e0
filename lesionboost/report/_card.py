"""The model card of a clinical evaluation, as JSON-ready data and as Markdown.

:func:`model_card` describes an :class:`~lesionboost.evaluation.Evaluation` in the
spirit of TRIPOD+AI: intended use (:data:`INTENDED_USE`), model, data and centres
(:func:`centre_table`), validation scheme, performance with intervals, calibration,
subgroups and the limitations that follow from them; :func:`model_card_markdown`
renders it as text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from .._version import __version__
from ..evaluation import MIN_MALIGNANT_FOR_WEAKEST, Evaluation

__all__ = ["INTENDED_USE", "centre_table", "model_card", "model_card_markdown"]

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
    from .._utils._frame import to_polars

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
    point = next(
        (p for p in evaluation.operating_points if abs(p["target_sensitivity"] - 0.8) < 1e-9), None
    )
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
    elif scheme == "in-sample":
        notes.append(
            "In-sample: the model scored the lesions it was fitted on, so these figures are "
            "far above what new patients would see; they describe the fit, not the model's "
            "performance."
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
        ``validation`` (``scheme`` -- ``"patient"``, ``"centre"``,
        ``"external"`` or ``"in-sample"`` -- and ``description``, ``n_splits``, ``n_repeats``,
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
        "top15_sensitivity": {
            "value": evaluation.top15_sensitivity,
            "ci": evaluation.top15_sensitivity_ci,
        },
        "lesions_per_cancer": {f"{k:.2f}": v for k, v in evaluation.lesions_per_cancer.items()},
        "operating_points": evaluation.operating_points,
        "bootstrap": {
            "n_boot": evaluation.n_boot,
            "n_boot_used": evaluation.n_boot_used,
            "seed": evaluation.seed,
            "unit": "patient",
        },
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
    out += ["## Intended use", "", use["purpose"], "", f"Users: {use['users']}", "", "Not for:", ""]
    out += [f"- {item}" for item in use["not_for"]]
    model = card["model"]
    out += ["", "## Model", "", f"{model.get('name', 'not stated')}"]
    if model.get("configuration"):
        out += ["", "```json", json.dumps(model["configuration"], indent=1, sort_keys=True), "```"]
    simulated = {True: "simulated", False: "real", None: "not stated"}[data.get("simulated")]
    out += [
        "",
        "## Data and centres",
        "",
        f"Source: {data['source']} ({simulated} data). {data['n_lesions']:,} lesions, "
        f"{data['n_malignant']} malignant ({data['prevalence']:.3%}), "
        f"{data['n_patients']} patients. Outcome: {data['outcome']}.",
        "",
    ]
    if card["centres"]:
        header = ["centre", "lesions", "malignant", "prevalence", "pAUC", "95 % CI", "AUC"]
        with_points = "sensitivity_at_80" in card["centres"][0]
        if with_points:
            header += ["sensitivity at overall 80 % threshold", "referrals / 1,000"]
        rows = []
        for row in card["centres"]:
            cells = [
                row["centre"] + (" (weakest)" if row["weakest"] else ""),
                row["n"],
                row["n_malignant"],
                f"{row['prevalence']:.3%}",
                _num(row["pauc"]),
                _ci_text(row["pauc_ci"]),
                _num(row["auc"]),
            ]
            if with_points:
                cells += [
                    _num(row.get("sensitivity_at_80"), 3),
                    _num(row.get("referrals_per_1000_at_80"), 1),
                ]
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
            [
                f"pAUC above {perf['min_tpr']:.0%} TPR",
                _num(perf["pauc"]["value"]),
                _ci_text(perf["pauc"]["ci"]),
            ],
            ["AUC", _num(perf["auc"]["value"]), _ci_text(perf["auc"]["ci"])],
            [
                "top-15 sensitivity",
                _num(perf["top15_sensitivity"]["value"]),
                _ci_text(perf["top15_sensitivity"]["ci"]),
            ],
        ],
    )
    out += [
        "",
        f"pAUC above {perf['min_tpr']:.0%} TPR: {_num(perf['pauc']['value'])} "
        f"(95 % CI {_ci_text(perf['pauc']['ci'])}); intervals from a patient-level "
        f"bootstrap, {boot['n_boot_used']} of {boot['n_boot']} replicates (seed "
        f"{boot['seed']}).",
        "",
        "Operating points:",
        "",
    ]
    out += _md_table(
        [
            "target sensitivity",
            "sensitivity",
            "specificity",
            "referrals / 1,000 lesions",
            "referrals / patient",
            "lesions per cancer",
        ],
        [
            [
                f"{p['target_sensitivity']:.0%}",
                _num(p["sensitivity"], 3),
                _num(p["specificity"], 3),
                _num(p["referrals_per_1000"], 1),
                _num(p["referrals_per_patient"], 2),
                _num(perf["lesions_per_cancer"].get(f"{p['target_sensitivity']:.2f}"), 1),
            ]
            for p in perf["operating_points"]
        ],
    )
    out += ["", "## Calibration", ""]
    cal_rows = []
    for label, cal in card["calibration"].items():
        if cal is None:
            cal_rows.append([label, "n/a", "n/a", "n/a", "n/a", "n/a"])
        else:
            cal_rows.append(
                [
                    label,
                    _num(cal.get("brier"), 5),
                    _num(cal.get("intercept"), 3),
                    _num(cal.get("slope"), 3),
                    _num(cal.get("mean_score"), 5),
                    _num(cal.get("event_rate"), 5),
                ]
            )
    names = {
        "before": "before calibration" if "after" in card["calibration"] else "scores",
        "after": "after calibration",
    }
    cal_rows = [[names.get(row[0], row[0]), *row[1:]] for row in cal_rows]
    out += _md_table(
        ["scores", "Brier", "intercept", "slope", "mean score", "event rate"], cal_rows
    )
    out += ["", "## Subgroups", ""]
    weak = card["weakest_subgroup"]
    if weak is not None:
        out += [
            f"Weakest subgroup: {weak['subgroup']} = {weak['level']} (pAUC "
            f"{_num(weak['pauc'])}, {weak['n_malignant']} malignant).",
            "",
        ]
    else:
        out += ["Weakest subgroup: none flagged (no level has enough malignant lesions).", ""]
    for name, levels in card["subgroups"].items():
        out += [f"### {name}", ""]
        out += _md_table(
            ["level", "lesions", "malignant", "pAUC", "95 % CI", "AUC"],
            [
                [
                    str(lv["level"]) + (" (weakest)" if lv["weakest"] else ""),
                    lv["n"],
                    lv["n_malignant"],
                    _num(lv["pauc"]),
                    _ci_text(lv["pauc_ci"]),
                    _num(lv["auc"]),
                ]
                for lv in levels
            ],
        )
        out.append("")
    out += ["## Limitations", ""]
    out += [f"- {note}" for note in card["limitations"]]
    return "\n".join(out) + "\n"

"""The offline calibration of the SLICE-3D simulator: fit the tables from a real sample.

The simulator runs without real data; this module (never imported by the
simulator) fits the numbers it loads from ``_tables.json`` (see
:mod:`lesionboost.simulate._tables`) from the benign rows of a real SLICE-3D
file, and the risk coefficients with :mod:`lesionboost.simulate._riskfit`::

    python -m lesionboost.simulate._calibrate --refit --fit-risk \
        --sample path/to/train-metadata.csv

How the lesion columns are modelled (all on benign rows): every *free* column
(the ones the exact relations of the data do not fix, e.g. ``Lext`` and
``deltaL`` but not ``L = Lext + deltaL``) is mapped to a normal score through its
empirical distribution. The scores are regressed on tile type, body site, centre,
age and sex (ridge); the residuals are split into a patient random effect and a
lesion-level part with the classical one-way MANOVA moment estimators. The
simulator reverses the chain: Gaussian draws -> normal scores -> empirical
quantiles -> derived columns.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from ._fidelity import univariate_aucs
from ._tables import (
    _FORWARD,
    _PROBS,
    CENTRES,
    FREE_COLUMNS,
    FREE_NAMES,
    SITES,
    TABLES_PATH,
    ZERO_INFLATED,
    design_matrix,
    followup_design,
    load_tables,
)

__all__ = ["fit_tables", "save_tables", "main"]

logger = logging.getLogger(__name__)


_POSITION_LEVELS = 41
_MIN_ROWS_PER_LOCATION = 40
_FOLLOWUP_C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
_RIDGE = 8.0  # prior strength in rows: small centres borrow from the pooled mean


# --------------------------------------------------------------------------- design


# --------------------------------------------------------------------------- lookups


def _table(values: np.ndarray, transform: str, probs: np.ndarray = _PROBS) -> dict[str, Any]:
    moved = _FORWARD[transform](np.asarray(values, dtype=float))
    table: dict[str, Any] = {
        "transform": transform,
        "values": [float(f"{v:.6g}") for v in np.quantile(moved, probs)],
    }
    if probs is not _PROBS:  # the default grid is implied, which keeps the file small
        table["probs"] = [round(float(p), 6) for p in probs]
    return table


def _normal_scores(values: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Normal scores of ``values`` on the empirical distribution of ``reference``.

    Mid-ranks, ``ndtri((rank - 0.5) / n)``; ``reference`` defaults to ``values``
    itself, and rows outside it (malignant lesions scored on the benign scale) get
    the rank they would take among the reference rows.
    """
    ordered = np.sort(values if reference is None else reference)
    below = np.searchsorted(ordered, values, side="left")
    at_most = np.searchsorted(ordered, values, side="right")
    n = len(ordered)
    return stats.norm.ppf(np.clip((below + at_most) / 2, 0.5, n - 0.5) / n)


def _nearest_psd(matrix: np.ndarray, floor: float = 0.0) -> np.ndarray:
    sym = (matrix + matrix.T) / 2
    values, vectors = np.linalg.eigh(sym)
    return (vectors * np.clip(values, floor, None)) @ vectors.T


# --------------------------------------------------------------------------- fit
def _free_frame(benign: pl.DataFrame) -> pl.DataFrame:
    size, minor = pl.col("clin_size_long_diam_mm"), pl.col("tbp_lv_minorAxisMM")
    return benign.with_columns(
        minor_ratio=minor / size,
        area_ratio=pl.col("tbp_lv_areaMM2") / (math.pi / 4 * size * minor),
        deltaLB_excess=pl.col("tbp_lv_deltaLB")
        - (pl.col("tbp_lv_deltaL") ** 2 + pl.col("tbp_lv_deltaB") ** 2).sqrt(),
    )


def _covariates(frame: pl.DataFrame) -> dict[str, np.ndarray]:
    centre_index = {name: k for k, (name, *_rest) in enumerate(CENTRES)}
    site_index = {name: k for k, name in enumerate(SITES)}
    sex = frame.get_column("sex").to_list()
    return {
        "white": (frame.get_column("tbp_tile_type") == "3D: white").to_numpy().astype(float),
        "site": np.array([site_index[s] for s in frame.get_column("anatom_site_general")]),
        "centre": np.array([centre_index[c] for c in frame.get_column("attribution")]),
        "age": frame.get_column("age_approx").fill_null(np.nan).to_numpy(),
        "male": np.array([0.5 if s is None else float(s == "male") for s in sex]),
    }


def _manova(residual: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Between- and within-group covariance by the one-way MANOVA moment estimators."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    n, k = residual.shape
    p = len(counts)
    sums = np.zeros((p, k))
    np.add.at(sums, inverse, residual)
    means = sums / counts[:, None]
    within = residual - means[inverse]
    ms_within = within.T @ within / (n - p)
    centred = means - residual.mean(axis=0)
    ms_between = (centred * counts[:, None]).T @ centred / (p - 1)
    n0 = (n - (counts**2).sum() / n) / (p - 1)
    between = _nearest_psd((ms_between - ms_within) / n0)
    return between, _nearest_psd(ms_within, floor=1e-4)


def _position_tables(benign: pl.DataFrame) -> dict[str, Any]:
    from ..schema import LOCATION_TO_SIMPLE

    probs = np.linspace(0, 1, _POSITION_LEVELS)
    out: dict[str, Any] = {}
    keep = benign.filter(pl.col("tbp_lv_y") > 0)  # the rare shifted body frames are simulated apart
    for location, simple in LOCATION_TO_SIMPLE.items():
        rows = keep.filter(pl.col("tbp_lv_location") == location)
        if rows.height < _MIN_ROWS_PER_LOCATION:
            rows = keep.filter(pl.col("tbp_lv_location_simple") == simple)
        if rows.height < _MIN_ROWS_PER_LOCATION:
            rows = keep
        xyz = rows.select("tbp_lv_x", "tbp_lv_y", "tbp_lv_z").to_numpy()
        scores = np.column_stack([_normal_scores(xyz[:, j]) for j in range(3)])
        out[location] = {
            "n": rows.height,
            "quantiles": [
                [float(f"{v:.6g}") for v in np.quantile(xyz[:, j], probs)] for j in range(3)
            ],
            "corr": np.round(np.corrcoef(scores, rowvar=False), 4).tolist(),
        }
    out["_probs"] = probs.round(6).tolist()
    return out


def _missingness(sample: pl.DataFrame) -> dict[str, Any]:
    """Per-centre missing rates, rescaled so the overall rates match the full file."""
    overall = {"sex": 0.0287, "age_approx": 0.0070, "anatom_site_general": 0.0144}
    row_share = np.array([rows for _, rows, *_ in CENTRES], dtype=float)
    row_share /= row_share.sum()
    out: dict[str, Any] = {}
    for column, target in overall.items():
        rates = []
        for name, *_ in CENTRES:
            rows = sample.filter(pl.col("attribution") == name)
            rates.append(rows.get_column(column).null_count() / max(rows.height, 1))
        rates_arr = np.asarray(rates)
        scale = target / max(float(row_share @ rates_arr), 1e-12)
        out[column] = [round(float(r), 5) for r in np.clip(rates_arr * scale, 0, 0.5)]
    return out


def _leak_tables(sample: pl.DataFrame) -> dict[str, Any]:
    malignant = sample.filter(pl.col("target") == 1)
    benign = sample.filter(pl.col("target") == 0)
    iddx = (
        sample.group_by("target", "iddx_full")
        .len()
        .sort("target", "len", "iddx_full", descending=True)
    )
    mitotic = malignant.get_column("mel_mitotic_index").drop_nulls().value_counts(sort=True)
    thickness = malignant.get_column("mel_thick_mm").drop_nulls().to_numpy()
    dnn_probs = np.linspace(0, 1, 201)
    return {
        "iddx_full": [
            [int(t), name, int(n)] for t, name, n in iddx.iter_rows() if name is not None
        ],
        "mel_mitotic_index": [[v, int(n)] for v, n in mitotic.iter_rows()],
        "mel_thick_mm": _table(thickness, "log", np.linspace(0, 1, 41)),
        "dnn_benign": _table(
            benign.get_column("tbp_lv_dnn_lesion_confidence").to_numpy(), "identity", dnn_probs
        ),
        "dnn_malignant": _table(
            malignant.get_column("tbp_lv_dnn_lesion_confidence").to_numpy(), "identity", dnn_probs
        ),
        "lesion_id_benign_rate": round(
            float(benign.get_column("lesion_id").is_not_null().to_numpy().mean()), 5
        ),
    }


def _followup_model(design: np.ndarray, followed: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Logistic model of "this benign lesion has a ``lesion_id``" on :func:`followup_design`.

    Clinics give a ``lesion_id`` to the lesions they follow up. On the real sample
    that choice is far from random: this model's patient-grouped CV AUC is ~0.88,
    driven by border and symmetry, colour variation (``norm_color`` against
    ``color_std_mean``), ``deltaL``, age and the Frazer Institute. So the simulator
    draws ``lesion_id`` from it rather than from the malignancy risk. The L2
    strength is the best of a small grid by patient-grouped 5-fold CV AUC (so the
    stored ``cv_auc`` is slightly optimistic).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict

    cv = GroupKFold(n_splits=5)
    best_auc, best_c = -1.0, 1.0
    for strength in _FOLLOWUP_C_GRID:
        model = LogisticRegression(C=strength, max_iter=5000)
        margin = cross_val_predict(
            model, design, followed, groups=groups, cv=cv, method="decision_function"
        )
        auc = float(roc_auc_score(followed, margin))
        if auc > best_auc:
            best_auc, best_c = auc, strength
    model = LogisticRegression(C=best_c, max_iter=5000).fit(design, followed)
    # The simulator solves its own intercept for the benign rate: only the slopes are kept.
    return {"coef": np.round(model.coef_[0], 5).tolist(), "C": best_c, "cv_auc": round(best_auc, 4)}


def fit_tables(sample_path: str | Path) -> dict[str, Any]:
    """Fit every population table from the benign rows of a real SLICE-3D sample.

    Parameters
    ----------
    sample_path : str or path-like
        A real ``train-metadata`` file (the shared 3,449-row sample or the full file).

    Returns
    -------
    dict
        JSON-ready tables (see the module docstring); the ``risk`` entry is left to
        :func:`lesionboost.simulate._riskfit.fit_risk`.
    """
    from ..io import read_metadata

    sample = read_metadata(sample_path, kind="train")
    benign = _free_frame(sample.filter(pl.col("target") == 0))
    n = benign.height
    covariates = _covariates(benign)
    design = design_matrix(**covariates)
    scores = np.empty((n, len(FREE_COLUMNS)))
    quantiles: dict[str, Any] = {}
    zero_mass: dict[str, float] = {}
    for k, (name, transform, zero_inflated) in enumerate(FREE_COLUMNS):
        values = benign.get_column(name).to_numpy().astype(float)
        scores[:, k] = _normal_scores(values)
        if zero_inflated:
            zero_mass[name] = float(np.mean(values == 0))
            values = values[values > 0]
        quantiles[name] = _table(values, transform)

    # Ridge regression of the normal scores on the covariates (intercept unpenalised).
    penalty = np.full(design.shape[1], _RIDGE)
    penalty[0] = 0.0
    gram = design.T @ design + np.diag(penalty)
    beta = np.linalg.solve(gram, design.T @ scores)
    residual = scores - design @ beta
    between, within = _manova(residual, benign.get_column("patient_id").to_numpy())
    fitted = design @ beta
    total_sd = np.sqrt(fitted.var(axis=0) + np.diag(between) + np.diag(within))

    angles = (
        benign.get_column("tbp_lv_symm_2axis_angle").value_counts().sort("tbp_lv_symm_2axis_angle")
    )
    angle_counts = dict(angles.iter_rows())
    tables: dict[str, Any] = {
        "version": 1,
        "source": Path(sample_path).name,
        "n_benign_rows": n,
        "n_patients": int(benign.get_column("patient_id").n_unique()),
        "free_columns": list(FREE_NAMES),
        "quantiles": quantiles,
        "zero_mass": zero_mass,
        "beta": np.round(beta, 5).tolist(),
        "total_sd": np.round(total_sd, 5).tolist(),
        "sigma_between": np.round(between, 5).tolist(),
        "sigma_within": np.round(within, 5).tolist(),
        "angle_probs": [angle_counts.get(a, 0) / n for a in range(0, 180, 5)],
        "position": _position_tables(benign),
        "missing": _missingness(sample),
        "leak": _leak_tables(sample),
        "followup": _followup_model(
            followup_design(
                scores, {name: benign.get_column(name).to_numpy() for name in ZERO_INFLATED}, design
            ),
            benign.get_column("lesion_id").is_not_null().to_numpy().astype(int),
            benign.get_column("patient_id").to_numpy(),
        ),
        "real_auc": univariate_aucs(sample, digits=4),
    }
    tables["followup"].update(_followup_risk_targets(sample, tables["followup"]["coef"]))
    return tables


def _followup_risk_targets(sample: pl.DataFrame, coef: list[float]) -> dict[str, float]:
    """How the real sample's follow-up score relates to malignancy.

    The benign mean and SD of the score (the risk term standardises it with them) and
    its malignant-vs-benign AUC, every row scored on the benign scale: clinics follow
    up lesions that look like cancers, and the risk fit makes the simulator agree.
    """
    from sklearn.metrics import roc_auc_score

    frame = _free_frame(sample)
    benign = (frame.get_column("target") == 0).to_numpy()
    scores = np.column_stack([
        _normal_scores(values, values[benign])
        for values in (frame.get_column(name).to_numpy().astype(float) for name in FREE_NAMES)
    ])  # fmt: skip
    columns = {name: frame.get_column(name).to_numpy() for name in ZERO_INFLATED}
    design = followup_design(scores, columns, design_matrix(**_covariates(frame)))
    score = design @ np.asarray(coef, dtype=float)
    return {
        "benign_mean": round(float(score[benign].mean()), 5),
        "benign_sd": round(float(score[benign].std()), 5),
        "malignant_auc": round(float(roc_auc_score(~benign, score)), 4),
    }


# --------------------------------------------------------------------------- load/save


def save_tables(tables: dict[str, Any], path: str | Path = TABLES_PATH) -> Path:
    """Write ``tables`` as compact JSON atomically."""
    from .._utils._atomic import atomic_path

    def plain(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            return value.tolist()
        raise TypeError(f"cannot store {type(value).__name__} in the calibration tables")

    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(tables, separators=(",", ":"), default=plain), encoding="utf8")
        tmp.chmod(0o644)  # package data: readable by everyone, like the modules
    load_tables.cache_clear()
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lesionboost.simulate._calibrate --refit --sample FILE``."""
    parser = argparse.ArgumentParser(prog="python -m lesionboost.simulate._calibrate")
    parser.add_argument("--refit", action="store_true", help="refit the population tables")
    parser.add_argument("--fit-risk", action="store_true", help="refit the risk coefficients")
    parser.add_argument(
        "--sample", type=Path, help="real train-metadata CSV (benign rows are used)"
    )
    parser.add_argument("--out", type=Path, default=TABLES_PATH, help="where to write the tables")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (args.refit or args.fit_risk):
        parser.error("pass --refit and/or --fit-risk")
    if args.refit:
        if args.sample is None:
            parser.error("--refit needs --sample PATH")
        tables = fit_tables(args.sample)
        previous = json.loads(TABLES_PATH.read_text("utf8")) if TABLES_PATH.exists() else {}
        if "risk" in previous:
            tables["risk"] = previous["risk"]
        save_tables(tables, args.out)
        logger.info("wrote population tables to %s", args.out)
    if args.fit_risk:
        from ._riskfit import fit_risk

        tables = json.loads(Path(args.out).read_text("utf8"))
        tables["risk"] = fit_risk()
        save_tables(tables, args.out)
        logger.info("wrote risk coefficients to %s", args.out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

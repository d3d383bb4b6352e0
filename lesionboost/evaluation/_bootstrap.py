"""The patient-level bootstrap: patients are drawn with replacement, their lesions follow.

Each replicate is a vector of how often every patient was drawn; the ROC curves of
all replicates are built in batches from weighted cumulative sums, so a replicate
equals the metric on the resampled lesions without copying them.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ..exceptions import SchemaError

#: A 95 % percentile interval, (low, high).
Interval = tuple[float, float]
# bootstrap replicates x lesions held in memory at once
_BATCH_CELLS = 2_000_000


def _patient_codes(frame: pl.DataFrame) -> tuple[np.ndarray, int]:
    """Patient code per lesion, numbered by first appearance, and the number of patients."""
    if "patient_id" not in frame.columns:
        raise SchemaError(
            "evaluate: metadata has no 'patient_id' column; the bootstrap resamples patients, "
            "so pass the metadata of the scored lesions with their patient ids."
        )
    ids = frame.get_column("patient_id")
    if ids.null_count():
        rows = np.flatnonzero(ids.is_null().to_numpy())
        raise SchemaError(
            f"evaluate: 'patient_id' is missing at row(s) {rows[:5].tolist()}"
            f"{' ...' if rows.size > 5 else ''}; fill in the patient of every lesion or drop "
            "those rows (with their labels and scores)."
        )
    _, first, inverse = np.unique(
        ids.cast(pl.String).to_numpy(), return_index=True, return_inverse=True
    )
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.ravel()], int(first.size)


def _patient_draws(n_patients: int, n_boot: int, seed: int) -> np.ndarray:
    """How often each patient is drawn in each replicate, shape (n_boot, n_patients)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n_patients, size=(n_boot, n_patients))
    offsets = picks + (np.arange(n_boot) * n_patients)[:, None]
    flat = np.bincount(offsets.ravel(), minlength=n_boot * n_patients)
    return flat.reshape(n_boot, n_patients).astype(np.int64)


def _area_below(fpr: np.ndarray, tpr: np.ndarray, limit: float) -> np.ndarray:
    """Per row, the area under the piecewise-linear curve (fpr, tpr) from 0 to ``limit``."""
    x0, x1 = fpr[:, :-1], fpr[:, 1:]
    y0, y1 = tpr[:, :-1], tpr[:, 1:]
    right = np.minimum(x1, limit)
    width = np.clip(right - x0, 0.0, None)
    step = x1 - x0
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(step > 0, (right - x0) / step, 0.0)
    y_right = y0 + (y1 - y0) * share
    area: np.ndarray = np.sum(width * (y0 + y_right) / 2.0, axis=1)
    return area


def _bootstrap_roc(
    truth: np.ndarray, score: np.ndarray, codes: np.ndarray, counts: np.ndarray, min_tpr: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pAUC and AUC of every bootstrap replicate, and which replicates hold both classes.

    A replicate weighs each lesion by how often its patient was drawn. The ROC
    curve is built as :func:`~lesionboost.metrics.pauc_above_tpr` builds it --
    benign as the positive class, negated scores, one vertex per distinct score --
    so a replicate equals the metric on the resampled lesions.
    """
    n_boot = counts.shape[0]
    pauc = np.full(n_boot, np.nan)
    auc = np.full(n_boot, np.nan)
    both = np.zeros(n_boot, dtype=bool)
    if n_boot == 0:
        return pauc, auc, both
    order = np.argsort(score, kind="stable")  # descending negated score
    ordered = score[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ordered) != 0), ordered.size - 1]
    benign = (truth[order] == 0).astype(np.int64)
    malignant = 1 - benign
    lesion_codes = codes[order]
    batch = max(1, _BATCH_CELLS // max(1, ordered.size))
    for start in range(0, n_boot, batch):
        weights = counts[start : start + batch][:, lesion_codes]
        tp = np.cumsum(weights * benign, axis=1)[:, last_of_tie]
        fp = np.cumsum(weights * malignant, axis=1)[:, last_of_tie]
        total_tp, total_fp = tp[:, -1], fp[:, -1]
        ok = (total_tp > 0) & (total_fp > 0)
        if not ok.any():
            continue
        zeros = np.zeros((int(ok.sum()), 1))
        tpr = np.hstack([zeros, tp[ok] / total_tp[ok, None]])
        fpr = np.hstack([zeros, fp[ok] / total_fp[ok, None]])
        rows = np.arange(start, start + weights.shape[0])[ok]
        pauc[rows] = _area_below(fpr, tpr, 1.0 - min_tpr)
        auc[rows] = _area_below(fpr, tpr, 1.0)
        both[rows] = True
    return pauc, auc, both


def _bootstrap_top_k(found: np.ndarray, malignant: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Top-k sensitivity of every replicate: each drawn copy of a patient counts once."""
    has_cancer = malignant > 0
    shares = found[has_cancer] / malignant[has_cancer]
    drawn = counts[:, has_cancer].astype(np.float64)
    total = drawn.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        value: np.ndarray = np.where(total > 0, (drawn @ shares) / total, np.nan)
    return value


def _percentile_interval(values: np.ndarray) -> Interval | None:
    if values.size == 0:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)

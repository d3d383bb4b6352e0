"""Statistics that compare a simulated cohort with real data (used by the calibration and the
fidelity benchmark)."""

from __future__ import annotations

import numpy as np
import polars as pl

__all__ = ["univariate_aucs"]


def univariate_aucs(frame: pl.DataFrame, digits: int | None = None) -> dict[str, float]:
    """Malignant-vs-benign AUC of every numeric column, over the rows where it is present.

    Parameters
    ----------
    frame : polars.DataFrame
        Train metadata with ``target`` and every column of ``NUMERIC_COLUMNS``, holding
        both classes (real or simulated).
    digits : int, optional
        Round each AUC to this many decimals (the stored risk-fit targets use 4).

    Returns
    -------
    dict of str to float
        Column name -> AUC, in ``NUMERIC_COLUMNS`` order.

    Examples
    --------
    >>> from lesionboost.simulate import simulate_slice3d
    >>> aucs = univariate_aucs(simulate_slice3d(60, seed=0).train, digits=3)
    >>> 0.0 <= aucs["clin_size_long_diam_mm"] <= 1.0
    True
    """
    from sklearn.metrics import roc_auc_score

    from ..schema import NUMERIC_COLUMNS

    target = frame.get_column("target").to_numpy()
    out = {}
    for name in NUMERIC_COLUMNS:
        values = frame.get_column(name).to_numpy().astype(float)
        keep = ~np.isnan(values)
        auc = float(roc_auc_score(target[keep], values[keep]))
        out[name] = auc if digits is None else round(auc, digits)
    return out

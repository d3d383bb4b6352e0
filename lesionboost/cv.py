"""Patient-grouped, stratified, reproducible cross-validation folds.

A patient never straddles training and validation: lesions of one person are
correlated (skin type, camera, centre) and "ugly duckling" features use the
other lesions of the same patient, so row-level splits leak. Folds are drawn
with scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold`
(groups = patients, stratified on the label) and are fully determined by the
seed.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import polars as pl
from sklearn.model_selection import StratifiedGroupKFold

from ._errors import DataWarning, SchemaError
from ._frame import to_polars

__all__ = ["patient_folds"]


def patient_folds(
    metadata: Any,
    y: Any = None,
    *,
    n_splits: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Assign every lesion to a fold, grouped by patient and stratified on the label.

    Parameters
    ----------
    metadata : polars.DataFrame or pandas.DataFrame
        Must hold ``patient_id``, and ``target`` unless ``y`` is given.
    y : array-like, optional
        Labels; defaults to ``metadata["target"]``.
    n_splits : int, default=5
        Number of folds.
    seed : int, default=0
        Shuffling seed; the same seed and data give the same folds.

    Returns
    -------
    numpy.ndarray of int8, shape (n_rows,)
        Fold id in ``[0, n_splits)`` for every row.

    Examples
    --------
    >>> import polars as pl
    >>> meta = pl.DataFrame({"patient_id": ["a", "a", "b", "c", "d", "d"],
    ...                      "target": [0, 1, 0, 0, 1, 0]})
    >>> folds = patient_folds(meta, n_splits=2, seed=0)
    >>> sorted(set(folds.tolist()))
    [0, 1]
    """
    frame = to_polars(metadata, what="metadata")
    if "patient_id" not in frame.columns:
        raise SchemaError(
            "patient_folds needs a 'patient_id' column to group lesions by patient."
        )
    if y is None:
        if "target" not in frame.columns:
            raise SchemaError("patient_folds needs labels: pass y= or a frame with 'target'.")
        labels = frame.get_column("target").to_numpy()
    else:
        labels = np.asarray(y).ravel()
        if labels.shape[0] != frame.height:
            raise ValueError(
                f"y has {labels.shape[0]} labels but metadata has {frame.height} rows."
            )
    _check_labels(labels, "target" if y is None else "y")
    groups = frame.get_column("patient_id")
    if groups.null_count():
        raise SchemaError("patient_folds: 'patient_id' has empty values; fill or drop those rows.")
    n_patients = groups.n_unique()
    if not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise ValueError(f"n_splits must be an integer >= 2, got {n_splits!r}.")
    if n_patients < n_splits:
        raise ValueError(
            f"Cannot make {n_splits} patient-grouped folds from {n_patients} patient(s); "
            "use fewer folds or more patients."
        )
    positive_patients = frame.filter(pl.Series(labels == 1)).get_column("patient_id").n_unique()
    if positive_patients < n_splits:
        warnings.warn(
            f"Only {positive_patients} patient(s) have a malignant lesion, fewer than "
            f"{n_splits} folds: some validation folds will have no positives and no pAUC.",
            DataWarning,
            stacklevel=2,
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    folds = np.full(frame.height, -1, dtype=np.int8)
    codes = _first_appearance_codes(groups)
    with warnings.catch_warnings():
        # sklearn warns when a class has fewer members than folds; we warned above.
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, valid) in enumerate(
            splitter.split(np.zeros(frame.height), labels, groups=codes)
        ):
            folds[valid] = fold
    return folds


def _check_labels(labels: np.ndarray, name: str) -> None:
    """0/1 labels without gaps, or an error naming the rows (strings "0"/"1" included)."""
    if labels.dtype.kind in "biuf":  # numbers: NaN and other values are bad
        bad = ~np.isin(labels, (0, 1))
    else:  # objects or text ("1" is not 1): check each value
        bad = np.array([isinstance(v, str) or v is None or v not in (0, 1)
                        for v in labels.tolist()], dtype=bool)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"patient_folds: {name} must hold 0 (benign) or 1 (malignant) for every lesion, "
            f"got {sorted({repr(v) for v in labels[rows[:20]].tolist()})[:5]} at row(s) "
            f"{rows[:5].tolist()}{' ...' if rows.size > 5 else ''}. Map the labels to 0/1 "
            "and drop unlabelled lesions first."
        )


def _first_appearance_codes(groups: pl.Series) -> np.ndarray:
    """Integer patient codes numbered by first appearance in the frame.

    A function of the frame alone -- unlike polars' categorical codes, which
    depend on the strings the process has cast before -- so the folds are a
    function of the data and the seed. Integer ids are compared as text.
    """
    _, first, inverse = np.unique(
        groups.cast(pl.String).to_numpy(), return_index=True, return_inverse=True
    )
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.ravel()]


def patients_in_several_folds(patient_id: Any, folds: Any) -> list[Any]:
    """Patients whose lesions sit in more than one fold (empty for patient-grouped folds).

    A model scoring such a patient's held-out lesions has seen the same patient in
    training, which makes out-of-fold scores optimistic; the cross-validation
    helpers refuse these folds.

    Parameters
    ----------
    patient_id : array-like of shape (n_lesions,)
    folds : array-like of shape (n_lesions,)
        Fold id per lesion.

    Returns
    -------
    list
        The offending patient ids, in order of first appearance.

    Examples
    --------
    >>> patients_in_several_folds(["a", "a", "b", "b"], [0, 1, 1, 1])
    ['a']
    """
    frame = pl.DataFrame({"patient_id": pl.Series(patient_id), "fold": np.asarray(folds)})
    spread = frame.group_by("patient_id", maintain_order=True).agg(
        pl.col("fold").n_unique().alias("n")
    )
    return spread.filter(pl.col("n") > 1).get_column("patient_id").to_list()

"""Patient-grouped, stratified, reproducible cross-validation folds.

A patient never straddles training and validation: lesions of one person are
correlated (skin type, camera, centre) and "ugly duckling" features use the
other lesions of the same patient, so row-level splits leak. Folds are drawn
with scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold`
(groups = patients, stratified on the label) and are fully determined by the
seed. :func:`repeated_patient_folds` draws several such splits with consecutive
seeds, and :func:`centre_folds` holds out one centre (``attribution``) per fold
to measure how a model transfers to a clinic it has not seen.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import polars as pl
from sklearn.model_selection import StratifiedGroupKFold

from ._utils._frame import to_polars
from .exceptions import DataWarning, SchemaError

__all__ = ["patient_folds", "repeated_patient_folds", "centre_folds", "check_patient_folds"]


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
    labels, codes = _fold_inputs(metadata, y, n_splits, "patient_folds")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    folds = np.full(codes.size, -1, dtype=np.int8)
    with warnings.catch_warnings():
        # sklearn warns when a class has fewer members than folds; we warned above.
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, valid) in enumerate(
            splitter.split(np.zeros(codes.size), labels, groups=codes)
        ):
            folds[valid] = fold
    return folds


def _fold_inputs(metadata: Any, y: Any, n_splits: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked 0/1 labels and first-appearance patient codes for a patient-grouped split.

    Warns (:class:`DataWarning`) when fewer patients than folds have a malignant lesion.
    """
    frame = to_polars(metadata, what="metadata")
    if "patient_id" not in frame.columns:
        raise SchemaError(f"{what} needs a 'patient_id' column to group lesions by patient.")
    if y is None:
        if "target" not in frame.columns:
            raise SchemaError(f"{what} needs labels: pass y= or a frame with 'target'.")
        labels = frame.get_column("target").to_numpy()
    else:
        labels = np.asarray(y).ravel()
        if labels.shape[0] != frame.height:
            raise ValueError(
                f"y has {labels.shape[0]} labels but metadata has {frame.height} rows."
            )
    _check_labels(labels, "target" if y is None else "y", what=what)
    groups = frame.get_column("patient_id")
    if groups.null_count():
        raise SchemaError(f"{what}: 'patient_id' has empty values; fill or drop those rows.")
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
            stacklevel=3,
        )
    return labels, _first_appearance_codes(groups)


def repeated_patient_folds(
    metadata: Any,
    n_splits: int = 5,
    n_repeats: int = 3,
    seed: int = 0,
    *,
    y: Any = None,
) -> list[np.ndarray]:
    """Several different patient-grouped, stratified splits, one per seed ``seed, seed + 1, ...``.

    Averaging a score over repeats reduces the variance that comes from which
    patients happen to share a fold. Each repeat is a seeded random assignment:
    patients are visited in a random order (those with more malignant lesions
    first), a patient with a malignant lesion goes to the fold with the fewest
    malignant lesions so far and any other patient to the fold with the fewest
    lesions (ties: the fold with fewer lesions, then the lower fold id). Malignant
    lesions and lesion counts are thus balanced across folds, and different
    seeds give different splits. (:func:`patient_folds` is not repeated with new
    seeds: scikit-learn's ``StratifiedGroupKFold`` uses its seed only to break
    ties between patients with the same label counts, so on real data every
    seed gives the same folds.)

    Parameters
    ----------
    metadata : polars.DataFrame or pandas.DataFrame
        Must hold ``patient_id``, and ``target`` unless ``y`` is given.
    n_splits : int, default=5
        Folds per repeat.
    n_repeats : int, default=3
        Number of splits.
    seed : int, default=0
        Seed of the first repeat (``numpy.random.default_rng``); repeat ``r`` uses
        ``seed + r``.
    y : array-like, optional
        Labels; defaults to ``metadata["target"]``.

    Returns
    -------
    list of numpy.ndarray of int8, shape (n_rows,)
        One fold array per repeat, fold ids in ``[0, n_splits)``; no patient is in
        two folds.

    Raises
    ------
    SchemaError
        ``patient_id`` (or ``target`` without ``y``) is missing or has empty values.
    ValueError
        Labels are not 0/1, fewer patients than folds, or ``n_repeats < 1``.

    Examples
    --------
    >>> import polars as pl
    >>> meta = pl.DataFrame({"patient_id": list("aabcddefgh"),
    ...                      "target": [0, 1, 0, 1, 1, 0, 0, 1, 0, 1]})
    >>> splits = repeated_patient_folds(meta, n_splits=2, n_repeats=3, seed=0)
    >>> len(splits), splits[0].shape, sorted(set(splits[0].tolist()))
    (3, (10,), [0, 1])
    """
    valid_repeats = isinstance(n_repeats, (int, np.integer)) and not isinstance(n_repeats, bool)
    if not valid_repeats or n_repeats < 1:
        raise ValueError(f"n_repeats must be an integer >= 1, got {n_repeats!r}.")
    labels, codes = _fold_inputs(metadata, y, n_splits, "repeated_patient_folds")
    lesions = np.bincount(codes)
    malignant = np.bincount(codes, weights=labels.astype(np.float64)).astype(np.int64)
    splits = []
    for repeat in range(int(n_repeats)):
        rng = np.random.default_rng(int(seed) + repeat)
        order = rng.permutation(lesions.size)
        order = order[np.argsort(-malignant[order], kind="stable")]
        fold_of_patient = np.empty(lesions.size, dtype=np.int64)
        fold_malignant = np.zeros(n_splits, dtype=np.int64)
        fold_lesions = np.zeros(n_splits, dtype=np.int64)
        for patient in order.tolist():
            if malignant[patient]:
                # lexsort: last key is primary -> fewest malignant, then fewest lesions
                fold = int(np.lexsort((fold_lesions, fold_malignant))[0])
            else:
                fold = int(np.argmin(fold_lesions))
            fold_of_patient[patient] = fold
            fold_malignant[fold] += malignant[patient]
            fold_lesions[fold] += lesions[patient]
        splits.append(fold_of_patient[codes].astype(np.int8))
    return splits


def centre_folds(metadata: Any) -> np.ndarray:
    """Leave-one-centre-out folds: every validation fold is exactly one ``attribution``.

    Parameters
    ----------
    metadata : polars.DataFrame or pandas.DataFrame
        Must hold ``attribution`` (the contributing centre, no missing values) and
        ``patient_id``; every patient must belong to a single centre.

    Returns
    -------
    numpy.ndarray of int8, shape (n_rows,)
        Fold id in ``[0, n_centres)`` for every row; centres are numbered in order
        of first appearance (int32 when there are more than 127 centres).

    Raises
    ------
    SchemaError
        A column is missing, ``attribution`` or ``patient_id`` has missing values,
        or a patient appears under two centres (a fold would split the patient).
    ValueError
        Fewer than two centres.

    Examples
    --------
    >>> import polars as pl
    >>> meta = pl.DataFrame({"patient_id": ["a", "a", "b", "c"],
    ...                      "attribution": ["Basel", "Basel", "MSKCC", "Basel"]})
    >>> centre_folds(meta).tolist()
    [0, 0, 1, 0]
    """
    frame = to_polars(metadata, what="metadata")
    missing = [c for c in ("attribution", "patient_id") if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"centre_folds needs the column(s) {missing}: 'attribution' names the centre of "
            "every lesion and 'patient_id' keeps each patient in one fold."
        )
    for name in ("attribution", "patient_id"):
        column = frame.get_column(name)
        if column.null_count():
            rows = np.flatnonzero(column.is_null().to_numpy())
            raise SchemaError(
                f"centre_folds: '{name}' is missing at {rows.size} row(s) "
                f"{rows[:5].tolist()}{' ...' if rows.size > 5 else ''}; fill in the "
                f"{'centre' if name == 'attribution' else 'patient'} of those lesions or drop "
                "them before splitting by centre."
            )
    centres = frame.get_column("attribution").cast(pl.String)
    per_patient = (
        pl.DataFrame({"patient_id": frame.get_column("patient_id"), "centre": centres})
        .group_by("patient_id", maintain_order=True)
        .agg(pl.col("centre").unique(maintain_order=True))
        .filter(pl.col("centre").list.len() > 1)
    )
    if per_patient.height:
        examples = [f"{pid!r} in {list(c)}" for pid, c in per_patient.head(3).iter_rows()]
        raise SchemaError(
            f"centre_folds: {per_patient.height} patient(s) appear under more than one "
            f"attribution ({'; '.join(examples)}), so a centre fold would split them. Give "
            "each patient a single centre, or use patient_folds()."
        )
    codes = _first_appearance_codes(centres)
    n_centres = int(codes.max()) + 1 if codes.size else 0
    if n_centres < 2:
        raise ValueError(
            f"centre_folds needs at least two centres in 'attribution', got {n_centres}; "
            "use patient_folds() for data from a single centre."
        )
    return codes.astype(np.int8 if n_centres <= 127 else np.int32)


def _check_labels(labels: np.ndarray, name: str, *, what: str = "patient_folds") -> None:
    """0/1 labels without gaps, or an error naming the rows (strings "0"/"1" included)."""
    if labels.dtype.kind in "biuf":  # numbers: NaN and other values are bad
        bad = ~np.isin(labels, (0, 1))
    else:  # objects or text ("1" is not 1): check each value
        bad = np.array(
            [isinstance(v, str) or v is None or v not in (0, 1) for v in labels.tolist()],
            dtype=bool,
        )
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{what}: {name} must hold 0 (benign) or 1 (malignant) for every lesion, "
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


def check_patient_folds(patient_id: Any, folds: Any, *, what: str = "these folds") -> None:
    """Raise when a patient's lesions sit in more than one fold.

    Every API that takes folds (``cross_val_oof``, ``tune``, ``train_embedder``)
    checks them with this function, so a split that leaks a patient into its own
    validation fold is refused the same way everywhere.

    Parameters
    ----------
    patient_id : array-like of shape (n_lesions,)
    folds : array-like of shape (n_lesions,)
        Fold id per lesion.
    what : str, default="these folds"
        What the folds are for, named in the message.

    Raises
    ------
    ValueError
        The lengths differ, or a patient is in several folds (the message names
        up to three of them).

    Examples
    --------
    >>> check_patient_folds(["a", "a", "b"], [0, 0, 1])
    >>> check_patient_folds(["a", "a", "b"], [0, 1, 1])
    Traceback (most recent call last):
    ...
    ValueError: 1 patient(s) appear in more than one fold of these folds (e.g. ['a']); ...
    """
    ids = np.asarray(patient_id)
    fold_ids = np.asarray(folds)
    if ids.shape[0] != fold_ids.shape[0]:
        raise ValueError(
            f"{what}: {fold_ids.shape[0]} fold ids for {ids.shape[0]} lesions; pass one fold "
            "id per lesion, e.g. from lesionboost.patient_folds()."
        )
    spread = patients_in_several_folds(ids, fold_ids)
    if spread:
        raise ValueError(
            f"{len(spread)} patient(s) appear in more than one fold of {what} (e.g. "
            f"{spread[:3]}); their lesions would be scored by a model that saw them. Use "
            "lesionboost.patient_folds() or lesionboost.centre_folds()."
        )

""":func:`cross_val_oof`: out-of-fold scores of a patient-grouped cross-validation."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.utils.validation import has_fit_parameter
from tqdm.auto import tqdm

from ..exceptions import DataWarning
from ..metrics import pauc_above_tpr
from ..model_selection import check_patient_folds, patient_folds
from ._classifier import _frame_and_labels, _without_leaks

__all__ = ["OOFResult", "cross_val_oof"]

logger = logging.getLogger("lesionboost.estimator")


@dataclass
class OOFResult:
    """Out-of-fold scores of a patient-grouped cross-validation.

    Attributes
    ----------
    oof : ndarray of shape (n_samples,)
        Malignancy probability of every lesion from the model that did not see
        its patient.
    folds : ndarray of shape (n_samples,)
        Fold id of every lesion.
    fold_scores : ndarray of shape (n_folds,)
        pAUC above 80 % TPR per validation fold (NaN for a fold with one class).
    pauc : float
        pAUC of all out-of-fold scores together.
    fit_seconds : ndarray of shape (n_folds,)
        Wall time of each fold's fit.
    """

    oof: np.ndarray
    folds: np.ndarray
    fold_scores: np.ndarray
    pauc: float
    fit_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def mean_fold_score(self) -> float:
        """Mean pAUC over the folds that have both classes."""
        return float(np.nanmean(self.fold_scores))

    @property
    def std_fold_score(self) -> float:
        """Standard deviation of the per-fold pAUC."""
        return float(np.nanstd(self.fold_scores))

    def to_dict(self, *, include_oof: bool = False) -> dict[str, Any]:
        """JSON-ready summary (per-row scores only with ``include_oof=True``)."""
        out: dict[str, Any] = {
            "pauc": float(self.pauc),
            "fold_scores": [None if np.isnan(s) else float(s) for s in self.fold_scores],
            "mean_fold_score": self.mean_fold_score,
            "std_fold_score": self.std_fold_score,
            "fit_seconds": [float(s) for s in self.fit_seconds],
            "n_folds": int(len(self.fold_scores)),
        }
        if include_oof:
            out["oof"] = self.oof.tolist()
            out["folds"] = self.folds.tolist()
        return out


def cross_val_oof(
    estimator: Any,
    metadata: Any,
    folds: Any,
    *,
    y: Any = None,
    sample_weight: Any = None,
    progress: bool = True,
    n_jobs: int | None = None,
) -> OOFResult:
    """Out-of-fold malignancy scores: fit a clone per fold, score the held-out patients.

    With a ``lesion_id`` column in ``metadata`` and an estimator whose ``fit`` takes
    ``followed_up`` (:class:`LesionBoostClassifier`, for its follow-up score), each
    fold's fit also gets which of its training lesions were followed up; the held-out
    lesions' ``lesion_id`` is never passed.

    Parameters
    ----------
    estimator : classifier
        Typically a :class:`LesionBoostClassifier`; cloned for every fold.
    metadata : polars.DataFrame or pandas.DataFrame
        Training metadata with ``patient_id`` (and ``target`` unless ``y`` is given).
    folds : array-like of int of shape (n_samples,) or int
        Fold id per row (:func:`lesionboost.patient_folds`), or a number of
        folds to draw with ``patient_folds(metadata, y, n_splits=folds, seed=0)``.
        A patient may not appear in two folds.
    y : array-like, optional
        Labels; defaults to ``metadata["target"]``.
    sample_weight : array-like of shape (n_samples,), optional
        Row weights; each fold's fit gets those of its training rows (scores and
        pAUC are unweighted).
    progress : bool, default=True
        Show a progress bar (only when stderr is a terminal).
    n_jobs : int, optional
        Folds fitted at the same time through :class:`joblib.Parallel`; ``-1`` uses
        every worker of the active joblib backend, so that inside
        ``with joblib.parallel_backend("dask"):`` the folds run on a Dask cluster.
        ``None`` (the default) fits the folds one after the other in this process,
        as does a backend with a single worker (joblib then runs in the calling
        thread, e.g. on a Dask cluster with one worker thread).
        Every fold fits a clone of ``estimator`` and the results are gathered in
        fold order, so the scores equal a serial run's whenever the estimator
        itself is deterministic for its thread count (pin it, e.g.
        ``LesionBoostClassifier(n_jobs=1)``: joblib gives worker processes fewer
        threads than the main process).

    Returns
    -------
    OOFResult

    Examples
    --------
    >>> from lesionboost import LesionBoostClassifier, patient_folds, simulate_slice3d
    >>> train = simulate_slice3d(40, seed=0).train
    >>> folds = patient_folds(train, n_splits=3)
    >>> fast = LesionBoostClassifier(members=("lightgbm",), n_bags=1,
    ...                              lightgbm_params={"n_estimators": 20})
    >>> result = cross_val_oof(fast, train, folds, progress=False)
    >>> result.oof.shape == (train.height,) and len(result.fold_scores) == 3
    True
    """
    frame, labels = _frame_and_labels(metadata, y, what="cross_val_oof")
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0
    ):
        raise ValueError(
            f"n_jobs must be None or a non-zero integer (-1 = all workers), got {n_jobs!r}."
        )
    if isinstance(folds, (int, np.integer)):
        folds = patient_folds(frame, labels, n_splits=int(folds), seed=0)
    fold_ids = np.asarray(folds).ravel()
    if fold_ids.shape[0] != frame.height:
        raise ValueError(
            f"folds has {fold_ids.shape[0]} entries but metadata has {frame.height} rows; "
            "pass one fold id per lesion (lesionboost.patient_folds)."
        )
    if fold_ids.dtype.kind not in "iu" or (fold_ids < 0).any():
        raise ValueError("folds must hold non-negative integer fold ids, one per lesion.")
    weight = None
    if sample_weight is not None:
        if not has_fit_parameter(estimator, "sample_weight"):
            raise TypeError(
                f"{type(estimator).__name__}.fit takes no sample_weight; drop sample_weight or "
                "use an estimator that accepts it (LesionBoostClassifier, "
                "GBDTEnsembleClassifier)."
            )
        weight = np.asarray(sample_weight, dtype=np.float64)
        weight = np.full(frame.height, float(weight)) if weight.ndim == 0 else weight.ravel()
        if weight.shape[0] != frame.height:
            raise ValueError(
                f"sample_weight has {weight.shape[0]} entries but metadata has {frame.height} "
                "rows; pass one weight per lesion."
            )
    if "patient_id" in frame.columns:
        check_patient_folds(frame.get_column("patient_id"), fold_ids, what="cross_val_oof's folds")
    else:
        warnings.warn(
            "cross_val_oof: metadata has no 'patient_id', so it cannot check that no patient "
            "is split across folds (a leak: the model would have seen the patient's other "
            "lesions). Pass metadata with 'patient_id' and lesionboost.patient_folds().",
            DataWarning,
            stacklevel=2,
        )
    # Which lesions were followed up (``lesion_id`` set) goes, as a label of the training
    # rows only, to an estimator whose fit takes it (LesionBoostClassifier's follow-up
    # score); the column itself is dropped with the other train-only ones.
    followed = None
    if "lesion_id" in frame.columns and has_fit_parameter(estimator, "followed_up"):
        followed = frame.get_column("lesion_id").is_not_null().to_numpy()
    # Any estimator gets the metadata without the train-only columns, so none can
    # read the label (LesionBoostClassifier would drop them itself; others might not).
    frame = _without_leaks(frame)
    unique = np.unique(fold_ids)
    if unique.size < 2:
        raise ValueError("cross_val_oof needs at least two folds.")
    oof = np.full(frame.height, np.nan)
    scores = np.full(unique.size, np.nan)
    seconds = np.zeros(unique.size)
    masks = [fold_ids == fold for fold in unique]
    tasks = (
        (
            clone(estimator),
            frame.filter(pl.Series(~valid)),
            labels[~valid],
            None if weight is None else weight[~valid],
            frame.filter(pl.Series(valid)),
            None if followed is None else followed[~valid],
        )
        for valid in masks
    )
    if n_jobs is None:
        results: Any = (_fit_fold(*task) for task in tasks)
    else:
        # ordered generator: results arrive in fold order, whichever worker ran them
        results = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_fit_fold)(*task) for task in tasks
        )
    bar = tqdm(
        total=unique.size,
        desc="cross-validation",
        unit="fold",
        disable=None if progress else True,
        leave=False,
    )
    try:
        for position, (fold, valid, (fold_oof, fold_seconds)) in enumerate(
            zip(unique, masks, results, strict=True)
        ):
            seconds[position] = fold_seconds
            oof[valid] = fold_oof
            if np.unique(labels[valid]).size == 2:
                scores[position] = pauc_above_tpr(labels[valid], oof[valid])
            else:
                warnings.warn(
                    f"Fold {fold} has no malignant lesion (or no benign one), so it has no pAUC "
                    "of its own; its scores still count in the pooled OOF pAUC. Use fewer "
                    "folds or lesionboost.patient_folds() to spread the positives.",
                    DataWarning,
                    stacklevel=2,
                )
            logger.info(
                "fold %d/%d: pAUC %.4f, fit %.1f s",
                position + 1,
                unique.size,
                scores[position],
                seconds[position],
            )
            bar.update(1)
            bar.set_postfix(pauc=f"{scores[position]:.4f}")
    finally:
        bar.close()
    overall = pauc_above_tpr(labels, oof)  # both classes: checked by _frame_and_labels
    return OOFResult(oof=oof, folds=fold_ids, fold_scores=scores, pauc=overall, fit_seconds=seconds)


def _fit_fold(
    model: Any,
    train: pl.DataFrame,
    y_train: np.ndarray,
    weight: np.ndarray | None,
    valid: pl.DataFrame,
    followed: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Fit ``model`` (an unfitted clone) on one fold; malignancy scores of ``valid`` and fit time.

    Module level so that joblib's process and Dask backends can pickle it.
    """
    start = time.perf_counter()
    kwargs: dict[str, np.ndarray] = {}
    if weight is not None:
        kwargs["sample_weight"] = weight
    if followed is not None:
        kwargs["followed_up"] = followed
    model.fit(train, y_train, **kwargs)
    seconds = time.perf_counter() - start
    return np.asarray(model.predict_proba(valid))[:, 1], seconds

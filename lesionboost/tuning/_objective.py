"""The cross-validated objective of a tuning trial: fit every fold, report each fold's pAUC."""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import polars as pl
from sklearn.utils.validation import has_fit_parameter

from .._utils._atomic import atomic_path
from .._utils._frame import to_polars
from ..exceptions import DataWarning
from ..metrics import pauc_above_tpr
from ..model_selection import check_patient_folds
from ..schema import LEAK_COLUMNS
from ._space import SearchSpace, build_config
from ._storage import WORKER_ATTR, worker_identity

__all__ = ["PatientCVObjective", "check_training_data", "data_fingerprint"]

logger = logging.getLogger(__name__)


def _as_training_frame(metadata: Any) -> tuple[pl.DataFrame, np.ndarray, np.ndarray | None]:
    """``metadata`` without its train-only columns, the labels, and which lesions were
    followed up (``lesion_id`` set; None without that column)."""
    frame = to_polars(metadata, what="metadata")
    if "target" not in frame.columns:
        raise ValueError(
            "tune needs training metadata with a 'target' column (train-metadata.csv); "
            f"got columns {frame.columns[:5]}{'...' if frame.width > 5 else ''}."
        )
    if "patient_id" not in frame.columns:
        raise ValueError("tune needs a 'patient_id' column to build patient-grouped folds.")
    y = frame.get_column("target").cast(pl.Int64).to_numpy()
    followed = (
        frame.get_column("lesion_id").is_not_null().to_numpy()
        if "lesion_id" in frame.columns
        else None
    )
    X = frame.drop([c for c in LEAK_COLUMNS if c in frame.columns])
    return X, y, followed


def check_training_data(metadata: Any, folds: Any) -> tuple[pl.DataFrame, np.ndarray]:
    """Check tuning data and its folds before any study or file exists.

    Parameters
    ----------
    metadata : polars.DataFrame or pandas.DataFrame
        Training metadata with ``target`` and ``patient_id``.
    folds : array-like of shape (n_lesions,)
        Fold id per lesion.

    Returns
    -------
    X : polars.DataFrame
        ``metadata`` without its train-only columns.
    y : ndarray
        The labels.

    Raises
    ------
    ValueError
        No ``target``, a single class, folds that split a patient, or a fold
        whose training part holds no malignant lesion.
    """
    X, y, _ = _as_training_frame(metadata)
    positives = int(np.sum(y == 1))
    if positives == 0 or positives == len(y):
        raise ValueError(
            f"the training data holds {'no malignant' if positives == 0 else 'only malignant'} "
            f"lesions ({len(y)} rows, {positives} with target == 1); tuning needs both classes. "
            "Pass the full training file."
        )
    fold_ids = np.asarray(folds)
    if "patient_id" in X.columns:
        check_patient_folds(X.get_column("patient_id"), fold_ids, what="the tuning folds")
    elif fold_ids.shape[0] != len(y):
        raise ValueError(f"{fold_ids.shape[0]} fold ids for {len(y)} lesions; pass one per lesion.")
    n_folds = len(np.unique(fold_ids))
    for fold in np.unique(fold_ids):
        if not np.any(y[fold_ids != fold] == 1):
            positive = (
                X.filter(pl.Series(y == 1)).get_column("patient_id").n_unique()
                if "patient_id" in X.columns
                else int(np.sum(y == 1))
            )
            if n_folds < 2:
                hint = "use at least 2 folds"
            elif positive >= n_folds:
                hint = (
                    "use lesionboost.patient_folds() (stratified by patient), which puts "
                    "patients with a malignant lesion in every fold"
                )
            elif positive >= 2:
                hint = f"use at most {positive} folds: {positive} patients have a malignant lesion"
            else:
                hint = "add patients with a malignant lesion: 2 folds need at least 2 of them"
            raise ValueError(
                f"fold {fold}: every malignant lesion is in this fold, so its training part has "
                f"none; {hint}."
            )
    return X, y


def data_fingerprint(metadata: Any, folds: np.ndarray, sample_weight: Any = None) -> str:
    """SHA-256 prefix of the lesion ids, labels, fold ids and any weights: the tuning data.

    Without weights the hash covers the ids, labels and fold ids only, so a study
    fingerprinted without weights resumes with the same value.
    """
    frame = to_polars(metadata, what="metadata")
    digest = hashlib.sha256()
    ids = (
        frame.get_column("isic_id")
        if "isic_id" in frame.columns
        else pl.Series([], dtype=pl.String)
    )
    digest.update("\n".join(ids.cast(pl.String).to_list()).encode())
    if "target" in frame.columns:
        digest.update(frame.get_column("target").cast(pl.Int8).to_numpy().tobytes())
    digest.update(np.asarray(folds, dtype=np.int8).tobytes())
    if sample_weight is not None:
        # The ensemble trains on weights / their mean, so only relative weights
        # count: equal weights are no weights, and scaling them resumes the study.
        relative = np.asarray(sample_weight, dtype=np.float64)
        relative = relative / relative.mean()
        if not np.all(relative == 1.0):
            digest.update(b"sample_weight")
            digest.update(np.ascontiguousarray(relative).tobytes())
    return digest.hexdigest()[:16]


def _checked_tuning_weights(
    sample_weight: Any, y: np.ndarray, folds: np.ndarray
) -> np.ndarray | None:
    """``sample_weight`` as one finite, non-negative float per row, or None.

    Every training fold must keep some weight on both classes, else each trial
    would fail inside ``fit``.
    """
    if sample_weight is None:
        return None
    weight = np.asarray(sample_weight, dtype=np.float64)
    if weight.ndim != 1 or weight.shape[0] != y.shape[0]:
        raise ValueError(
            f"sample_weight has shape {weight.shape} but metadata has {y.shape[0]} rows; "
            "pass one weight per lesion (a 1-D array)."
        )
    if not np.isfinite(weight).all() or (weight < 0).any():
        raise ValueError(
            "sample_weight must be finite and non-negative; found "
            f"{int((~np.isfinite(weight) | (weight < 0)).sum())} bad value(s)."
        )
    for fold in np.unique(folds):
        train = folds != fold
        for label, name in ((1, "malignant"), (0, "benign")):
            if not weight[train & (y == label)].sum() > 0:
                raise ValueError(
                    f"sample_weight gives the {name} lesions outside fold {int(fold)} a total "
                    "weight of 0, so that fold's model could not be fitted; give them "
                    "positive weights."
                )
    return weight


class PatientCVObjective:
    """Optuna objective: pooled out-of-fold pAUC of one configuration on fixed folds.

    Parameters
    ----------
    metadata : polars.DataFrame or pandas.DataFrame
        Training metadata with ``target`` and ``patient_id``.
    folds : array-like of int
        Fold id per row (see :func:`~lesionboost.patient_folds`).
    space : SearchSpace
    fixed_params : dict, optional
        Keyword arguments of :class:`~lesionboost.LesionBoostClassifier` that
        are not tuned (``n_jobs``, ``device``, ``random_state``, ``images``...).
    rounds : int, optional
        Boosting rounds for every member (the estimator's default when None).
    oof_dir : path-like, optional
        Where a trial that beats the study's best so far saves its OOF scores
        (``trial-<number>.parquet``), so the run need not recompute them.
    sample_weight : array-like of shape (n_rows,), optional
        Row weights for fitting each fold's model (sliced per fold, as in
        :func:`~lesionboost.cross_val_oof`); the pAUC itself is unweighted.

    With a ``lesion_id`` column in ``metadata``, each fold's fit gets which of its
    training lesions were followed up (``followed_up``, for the follow-up score), as
    :func:`~lesionboost.cross_val_oof` passes it.
    """

    def __init__(
        self,
        metadata: Any,
        folds: Any,
        *,
        space: SearchSpace,
        fixed_params: Mapping[str, Any] | None = None,
        rounds: int | None = None,
        oof_dir: str | os.PathLike[str] | None = None,
        sample_weight: Any = None,
    ) -> None:
        self.X, self.y, self.followed = _as_training_frame(metadata)
        self.folds = np.asarray(folds)
        if self.folds.shape[0] != self.X.height:
            raise ValueError(
                f"folds has {self.folds.shape[0]} entries but metadata has {self.X.height} rows."
            )
        self.sample_weight = _checked_tuning_weights(sample_weight, self.y, self.folds)
        self.fold_ids = np.unique(self.folds)
        self.space = space
        self.fixed_params = dict(fixed_params or {})
        self.rounds = rounds
        self.oof_dir = Path(oof_dir) if oof_dir is not None else None

    def estimator(self, params: Mapping[str, Any]) -> Any:
        """The classifier a trial with flat parameters ``params`` evaluates."""
        from ..estimator import LesionBoostClassifier

        config = {**self.fixed_params, **build_config(self.space, params, self.rounds)}
        return LesionBoostClassifier(**config)

    def __call__(self, trial: optuna.Trial) -> float:
        # tune()'s sampler stamps trials already; this covers the objective run under any sampler
        trial.set_user_attr(WORKER_ATTR, worker_identity())
        params = self.space.suggest(trial)
        estimator = self.estimator(params)
        # Shuffled fold order per trial (WilcoxonPruner's advice): early folds do not
        # decide every prune, and the same fold id pairs the same patients across trials.
        order = np.random.default_rng(trial.number).permutation(self.fold_ids)
        oof = np.full(self.X.height, np.nan)
        fold_scores: dict[int, float] = {}
        start = time.perf_counter()
        for position, fold in enumerate(order):
            train, valid = self.folds != fold, self.folds == fold
            with warnings.catch_warnings():
                # Levels unseen in a training fold (a hospital whose patients all landed in
                # the validation fold) are expected in CV; the data was validated on read.
                warnings.simplefilter("ignore", DataWarning)
                # Passed only when given, so estimators without sample_weight still tune.
                fit_kwargs: dict[str, np.ndarray] = {}
                if self.sample_weight is not None:
                    fit_kwargs["sample_weight"] = self.sample_weight[train]
                if self.followed is not None and has_fit_parameter(estimator, "followed_up"):
                    fit_kwargs["followed_up"] = self.followed[train]
                model = _clone(estimator).fit(
                    self.X.filter(pl.Series(train)), self.y[train], **fit_kwargs
                )
                oof[valid] = model.predict_proba(self.X.filter(pl.Series(valid)))[:, 1]
            labels = self.y[valid]
            if 0 < labels.sum() < labels.size:
                score = pauc_above_tpr(labels, oof[valid])
                fold_scores[int(fold)] = score
                trial.report(score, step=int(fold))
                # After the last fold the trial is complete: nothing left to save.
                if position < len(order) - 1 and trial.should_prune():
                    partial = float(np.mean(list(fold_scores.values())))
                    trial.set_user_attr("partial_value", partial)
                    trial.set_user_attr("fold_scores", _ordered(fold_scores))
                    logger.debug(
                        "trial %d pruned after %d folds (mean pAUC %.4f)",
                        trial.number,
                        len(fold_scores),
                        partial,
                    )
                    raise optuna.TrialPruned()
        value = pauc_above_tpr(self.y, oof)
        trial.set_user_attr("fold_scores", _ordered(fold_scores))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
        self._maybe_save_oof(trial, oof, value)
        return value

    def _maybe_save_oof(self, trial: optuna.Trial, oof: np.ndarray, value: float) -> None:
        if self.oof_dir is None:
            return
        try:
            best = trial.study.best_value
        except ValueError:
            best = -np.inf
        if value < best:
            return
        self.oof_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.oof_dir / f"trial-{trial.number}.parquet") as tmp:
            pl.DataFrame({"score": oof, "fold": self.folds.astype(np.int8)}).write_parquet(tmp)


def _clone(estimator: Any) -> Any:
    from sklearn.base import clone

    return clone(estimator)


def _ordered(scores: Mapping[int, float]) -> list[float | None]:
    """Fold scores listed by fold id (None for a fold not scored)."""
    if not scores:
        return []
    return [scores.get(i) for i in range(max(scores) + 1)]


# --------------------------------------------------------------------------- study

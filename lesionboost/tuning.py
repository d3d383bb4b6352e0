"""Optuna tuning of :class:`~lesionboost.LesionBoostClassifier` on patient-grouped folds.

The objective
-------------
A trial builds a :class:`~lesionboost.LesionBoostClassifier` from its
parameters, fits it on the training part of every fold of one fixed split
(:func:`~lesionboost.patient_folds`, saved with a CLI run as
``folds.parquet``) and scores the held-out patients. The value is the pAUC
above 80 % TPR of the pooled out-of-fold scores -- the ISIC 2024 metric on
all lesions, each scored by a model that never saw its patient.

Pruning
-------
Every fold's pAUC is reported with ``trial.report(value, step=fold)`` (folds
in a per-trial shuffled order, as Optuna recommends), and
:class:`optuna.pruners.WilcoxonPruner` stops a trial once a one-sided Wilcoxon
signed-rank test on the paired fold scores says it is worse than the best
trial. With five folds the smallest possible p-value after three folds is
1/8, so the default ``p_threshold=0.2`` (Optuna's default is 0.1) lets a
trial that lost on its first three folds stop there instead of after four; a
pruned trial never becomes the best, so an occasional wrong prune only costs
exploration. Pruned trials keep the mean of the folds they reached as the user
attribute ``partial_value``.

Known-good defaults first
-------------------------
A new study's first trial is the estimator's defaults (enqueued with
``study.enqueue_trial``), so the best trial is never worse than the defaults
on these folds. Every range below is widened, if needed, to contain its
default value, so the defaults trial is an ordinary point of the space that
the sampler learns from.

Search space
------------
Ranges follow the 3rd-place ISIC 2024 Optuna space and the published tuned
values (FACTS.md 4.7); names are the libraries' native parameter names.

==========  ===========================  ==========================  ============
member      parameter                    range                       scale
==========  ===========================  ==========================  ============
lightgbm    learning_rate                0.01 -- 0.1                 log
lightgbm    num_leaves                   16 -- 256                   log
lightgbm    max_depth                    3 -- 8                      int
lightgbm    lambda_l1, lambda_l2         1e-3 -- 10                  log
lightgbm    feature_fraction             0.4 -- 1                    linear
lightgbm    feature_fraction_bynode      0.4 -- 1                    linear
lightgbm    bagging_fraction             0.4 -- 1                    linear
lightgbm    bagging_freq                 1 -- 7                      int
lightgbm    min_data_in_leaf             5 -- 100                    log
lightgbm    scale_pos_weight             0.8 -- 4                    log
xgboost     learning_rate                0.01 -- 0.1                 log
xgboost     max_depth                    3 -- 8                      int
xgboost     lambda, alpha                1e-3 -- 10                  log
xgboost     subsample                    0.4 -- 1                    linear
xgboost     colsample_bytree             0.4 -- 1                    linear
xgboost     colsample_bylevel            0.4 -- 1                    linear
xgboost     colsample_bynode             0.4 -- 1                    linear
xgboost     min_child_weight             0.5 -- 10                   log
xgboost     scale_pos_weight             0.8 -- 4                    log
catboost    learning_rate                0.01 -- 0.1                 log
catboost    depth                        4 -- 8                      int
catboost    l2_leaf_reg                  1e-2 -- 30                  log
catboost    subsample                    0.4 -- 1                    linear
catboost    colsample_bylevel            0.4 -- 1                    linear
catboost    min_data_in_leaf             5 -- 100                    log
catboost    random_strength              0.1 -- 10                   log
catboost    scale_pos_weight             0.8 -- 4                    log
ensemble    neg_ratio                    0.003 -- 0.05               log
ensemble    pos_oversample               1 -- 4                      linear
ensemble    n_bags                       1 -- 4                      int
ensemble    weight.<member>              0.05 -- 1 (normalised)      linear
features    region, outlier, counts      on / off                    categorical
==========  ===========================  ==========================  ============

CatBoost's ``l2_leaf_reg`` reaches 30 because the 1st and 2nd place tuned it
to 18 and 25.7. The number of boosting rounds is not searched (it trades off
against the learning rate and decides the cost of a trial); it stays at the
estimator's default unless ``rounds`` fixes it for every member. The raw
columns, the derived attributes and the patient-relative z-scores and ranks
are always used: they carry most of the signal (FACTS.md 8).

Storages and workers
--------------------
See :mod:`lesionboost._tuning_storage`: in memory (the default here), SQLite,
Optuna's journal file for several processes, any SQLAlchemy URL (PostgreSQL)
for several machines. ``n_trials`` counts the finished (complete or pruned)
trials *of the study*, so a killed run resumes with the same call and stops
at the same total; with ``n_workers > 1`` (or several machines) the total may
be exceeded by at most one trial per extra worker.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import optuna
import polars as pl
from optuna.trial import TrialState

from ._atomic import atomic_path
from ._errors import DataWarning
from ._frame import to_polars
from ._members import MEMBER_KINDS
from ._tuning_run import (
    TuningError,
    _finished,
    _optimize,
    _Progress,
    _run_workers,
    _sampler,
    _wilcoxon,
)
from ._tuning_space import SearchSpace, build_config
from ._tuning_storage import (
    WORKER_ATTR,
    StorageError,
    describe_storage,
    is_in_memory,
    is_sqlite,
    open_storage,
    recover_stale_trials,
    worker_identity,
)
from .metrics import pauc_above_tpr
from .schema import LEAK_COLUMNS

__all__ = [
    "tune",
    "TuneResult",
    "SearchSpace",
    "PatientCVObjective",
    "StorageError",
    "TuningError",
    "build_config",
    "open_study",
    "trial_history",
    "DEFAULTS_ATTR",
]

logger = logging.getLogger(__name__)

#: user attribute marking the enqueued known-good defaults trial.
DEFAULTS_ATTR = "lesionboost_defaults"
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# --------------------------------------------------------------------------- objective
def _as_training_frame(metadata: Any) -> tuple[pl.DataFrame, np.ndarray]:
    frame = to_polars(metadata, what="metadata")
    if "target" not in frame.columns:
        raise ValueError(
            "tune needs training metadata with a 'target' column (train-metadata.csv); "
            f"got columns {frame.columns[:5]}{'...' if frame.width > 5 else ''}."
        )
    if "patient_id" not in frame.columns:
        raise ValueError("tune needs a 'patient_id' column to build patient-grouped folds.")
    y = frame.get_column("target").cast(pl.Int64).to_numpy()
    X = frame.drop([c for c in LEAK_COLUMNS if c in frame.columns])
    return X, y


def data_fingerprint(metadata: Any, folds: np.ndarray, sample_weight: Any = None) -> str:
    """SHA-256 prefix of the lesion ids, labels, fold ids and any weights: the tuning data.

    Without weights the value is what it was before weights existed, so older
    studies resume.
    """
    frame = to_polars(metadata, what="metadata")
    digest = hashlib.sha256()
    ids = frame.get_column("isic_id") if "isic_id" in frame.columns else pl.Series([], dtype=str)
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
        self.X, self.y = _as_training_frame(metadata)
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
        from .estimator import LesionBoostClassifier

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
                fit_kwargs = ({} if self.sample_weight is None
                              else {"sample_weight": self.sample_weight[train]})
                model = _clone(estimator).fit(self.X.filter(pl.Series(train)), self.y[train],
                                              **fit_kwargs)
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
                    logger.debug("trial %d pruned after %d folds (mean pAUC %.4f)",
                                 trial.number, len(fold_scores), partial)
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
class TuneResult(NamedTuple):
    """What :func:`tune` returns: unpack as ``study, best_params = tune(...)``."""

    study: optuna.Study
    #: keyword arguments of :class:`~lesionboost.LesionBoostClassifier` of the best trial
    best_params: dict[str, Any]

    @property
    def best_value(self) -> float:
        """Pooled out-of-fold pAUC of the best trial."""
        return float(self.study.best_value)

    @property
    def defaults_value(self) -> float | None:
        """Pooled out-of-fold pAUC of the enqueued defaults trial (None if not finished)."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if trial.user_attrs.get(DEFAULTS_ATTR):
                return float(trial.value)  # type: ignore[arg-type]
        return None


def open_study(
    storage: str | None,
    study_name: str,
    *,
    fingerprint: str | None = None,
    settings: Mapping[str, Any] | None = None,
    space: SearchSpace | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> optuna.Study:
    """Create or load ``study_name`` in ``storage``; the creator enqueues the defaults.

    The study records the data fingerprint and the tuning settings as user
    attributes; loading it for other data or settings raises ``ValueError``
    naming both, so a resumed run can never mix trials from different folds.
    """
    backend = open_storage(storage)
    options = {"storage": backend, "study_name": study_name, "sampler": sampler,
               "pruner": pruner if pruner is not None else _wilcoxon(0.2)}
    try:
        # Creation is atomic in every storage: exactly one of several workers started
        # together creates the study, and only that one enqueues the defaults.
        study = optuna.create_study(direction="maximize", **options)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**options)
        created = False
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ValueError(f"Study {study_name!r} in {describe_storage(storage)} minimises; "
                         "lesionboost studies maximise pAUC. Choose another study name.")
    expected = {"data_fingerprint": fingerprint, **dict(settings or {})}
    recorded = study.user_attrs.get("lesionboost")
    if recorded is None:
        study.set_user_attr("lesionboost", expected)
    else:
        differ = [k for k in expected if k in recorded and recorded[k] != expected[k]]
        if differ:
            details = ", ".join(
                f"{k}: study {recorded[k]!r} vs now {expected[k]!r}" for k in differ
            )
            raise ValueError(
                f"Study {study_name!r} in {describe_storage(storage)} was tuned with other "
                f"data or settings ({details}). Resume with the same data and options, or "
                "choose another study name (--study)."
            )
    # Only the creator enqueues: a worker that loaded the study must not, even when it
    # sees no trial yet -- the creator may be about to enqueue them (a race seen in tests).
    if space is not None and created:
        study.enqueue_trial(space.defaults(), user_attrs={DEFAULTS_ATTR: True},
                            skip_if_exists=True)
    elif space is not None and _defaults_trial_failed(study):
        # Ctrl-C (or any error) in the defaults trial leaves it FAIL, and nothing else
        # would ever run the defaults again: queue them once more so the best trial is
        # still never worse than the defaults. Only after a *failed* defaults trial,
        # so a worker that loads a study its creator has not filled yet never enqueues.
        study.enqueue_trial(space.defaults(), user_attrs={DEFAULTS_ATTR: True})
    return study


def _defaults_trial_failed(study: optuna.Study) -> bool:
    """True when the defaults trial failed and no copy of it is queued, running or done."""
    defaults = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(DEFAULTS_ATTR)]
    return bool(defaults) and all(t.state == TrialState.FAIL for t in defaults)


def trial_history(study: optuna.Study) -> list[dict[str, Any]]:
    """One JSON-friendly record per trial (for ``best.json`` and the report)."""
    history = []
    for trial in study.get_trials(deepcopy=False):
        value = trial.value if trial.state == TrialState.COMPLETE else trial.user_attrs.get(
            "partial_value"
        )
        duration = trial.duration.total_seconds() if trial.duration is not None else None
        history.append({
            "number": trial.number,
            "state": trial.state.name,
            "value": value,
            "seconds": duration,
            "defaults": bool(trial.user_attrs.get(DEFAULTS_ATTR)),
            "folds_reached": len(trial.intermediate_values),
        })
    return history


def tune(
    metadata: Any,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str = "lesionboost",
    n_splits: int = 5,
    seed: int = 0,
    folds: Any = None,
    members: Sequence[str] = MEMBER_KINDS,
    search_space: SearchSpace | None = None,
    fixed_params: Mapping[str, Any] | None = None,
    rounds: int | None = None,
    n_workers: int = 1,
    p_threshold: float = 0.2,
    progress: bool = True,
    oof_dir: str | os.PathLike[str] | None = None,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
    sample_weight: Any = None,
) -> TuneResult:
    """Tune a :class:`~lesionboost.LesionBoostClassifier` by patient-grouped OOF pAUC.

    Parameters
    ----------
    metadata : polars.DataFrame or pandas.DataFrame
        Training metadata (``target``, ``patient_id``; leak columns are dropped).
    n_trials : int, optional
        Total finished (complete or pruned) trials the study should hold; a
        resumed study runs only the missing ones. When both ``n_trials`` and
        ``timeout`` are None, 20.
    timeout : float, optional
        Stop starting new trials after this many seconds (of this call).
    storage : str, optional
        None (in memory), a SQLite/PostgreSQL/any SQLAlchemy URL, or
        ``journal:PATH`` (see :mod:`lesionboost._tuning_storage`).
    study_name : str, default="lesionboost"
    n_splits, seed : int
        Folds from :func:`~lesionboost.patient_folds` when ``folds`` is None;
        ``seed`` also seeds the sampler.
    folds : array-like of int, optional
        Fixed fold id per row (e.g. read back from a run's ``folds.parquet``).
    members : sequence of str
        Ensemble members to use and tune.
    search_space : SearchSpace, optional
        Defaults to ``SearchSpace(members=members)``.
    fixed_params : dict, optional
        Untuned estimator arguments (``n_jobs``, ``device``, ``images``, ...).
    rounds : int, optional
        Boosting rounds of every member (the estimator's default when None).
    n_workers : int, default=1
        Worker processes sharing ``storage`` (which must then be a journal file
        or a database server; SQLite locks and memory is not shared).
    p_threshold : float, default=0.2
        WilcoxonPruner threshold (see the module documentation).
    progress : bool, default=True
        Show a progress bar (on terminals) with the best pAUC so far.
    oof_dir : path-like, optional
        Keep the OOF scores of the best trial there (see :class:`PatientCVObjective`).
    callbacks : sequence of callables, optional
        Extra ``study.optimize`` callbacks (single-process runs only).
    sample_weight : array-like of shape (n_rows,), optional
        Non-negative row weights every fold's model is fitted with (e.g. an
        extra weight on followed-up benign lesions, from the train-only
        ``lesion_id``); the pAUC is unweighted. Part of the study's data
        fingerprint: a study tuned with other weights (or none) is not resumed.

    Returns
    -------
    TuneResult
        ``(study, best_params)``; ``best_params`` are the estimator keyword
        arguments of the best trial (``fixed_params`` not included).

    Examples
    --------
    >>> from lesionboost import simulate_slice3d
    >>> sim = simulate_slice3d(60, seed=0)
    >>> study, best = tune(sim.train, n_trials=2, n_splits=3, members=("lightgbm",),
    ...                    rounds=20, progress=False)  # doctest: +SKIP
    >>> sorted(best)[:2]  # doctest: +SKIP
    ['feature_groups', 'lightgbm_params']
    """
    if n_trials is None and timeout is None:
        n_trials = 20
    if n_trials is not None and (not isinstance(n_trials, int) or n_trials < 1):
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}.")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    if not isinstance(n_workers, int) or n_workers < 1:
        raise ValueError(f"n_workers must be an integer >= 1, got {n_workers!r}.")
    if n_workers > 1 and (is_in_memory(storage) or is_sqlite(storage)):
        raise ValueError(
            f"n_workers={n_workers} needs a storage that several processes can share: "
            "a journal file (storage='journal:PATH') or a database server URL; "
            "in-memory storage is not shared and SQLite fails with 'database is locked'."
        )
    frame = to_polars(metadata, what="metadata")
    if folds is None:
        from .cv import patient_folds

        folds = patient_folds(frame, n_splits=n_splits, seed=seed)
    folds = np.asarray(folds, dtype=np.int8)
    weight = _checked_tuning_weights(sample_weight, _as_training_frame(frame)[1], folds)
    space = search_space if search_space is not None else SearchSpace(members=members)
    # Everything that changes what a trial measures: a worker started with other
    # images, device or search space must not add its trials to this study
    # (n_jobs only changes the speed). Keys an older study lacks are not compared.
    fixed_settings = {
        key: (value if isinstance(value, (str, int, float, bool, type(None))) else repr(value))
        for key, value in sorted((fixed_params or {}).items())
        if key != "n_jobs"
    }
    settings = {"members": list(space.members), "rounds": rounds,
                "n_folds": int(len(np.unique(folds))), "search_space": 1,
                "search_space_ensemble": bool(space.ensemble),
                "search_space_feature_groups": bool(space.feature_groups),
                "fixed_params": fixed_settings}
    pruner = _wilcoxon(p_threshold)
    study = open_study(storage, study_name, fingerprint=data_fingerprint(frame, folds, weight),
                       settings=settings, space=space, pruner=pruner)
    recover_stale_trials(study)
    before = _finished(study)
    logger.info("study %r in %s: %d finished trial(s) so far%s", study_name,
                describe_storage(storage), before,
                "" if n_trials is None else f", target {n_trials}")
    bar = _Progress(n_trials, before, progress)
    try:
        if n_workers == 1:
            # A SQLite file is the single-process storage (several processes get a journal
            # file or a server), so its runs are seeded reproducibly; other storages may be
            # shared with other machines running the same command, which must not propose
            # the same points.
            shared = storage is not None and not is_sqlite(storage)
            study.sampler = _sampler(seed, study, 0, n_trials, shared=shared)
            objective = PatientCVObjective(frame, folds, space=space, fixed_params=fixed_params,
                                           rounds=rounds, oof_dir=oof_dir, sample_weight=weight)
            _optimize(study, objective, n_trials=n_trials, timeout=timeout,
                      callbacks=[lambda s, t: bar.update(s), *callbacks])
        else:
            payload = {
                "study_name": study_name, "storage": storage, "p_threshold": p_threshold,
                "seed": seed, "n_trials": n_trials, "timeout": timeout, "metadata": frame,
                "folds": folds, "space": space, "fixed_params": dict(fixed_params or {}),
                "rounds": rounds, "oof_dir": None if oof_dir is None else str(oof_dir),
                "sample_weight": weight,
                "log_level": logging.getLogger("lesionboost").getEffectiveLevel(),
            }
            _run_workers(payload, n_workers, study, bar)
        bar.update(study)
    finally:
        bar.close()
    try:
        best = study.best_trial
    except ValueError:
        raise TuningError(
            f"No trial of study {study_name!r} finished; see the errors logged above."
        ) from None
    return TuneResult(study, build_config(space, best.params, rounds))

"""``tune()``: create or resume an Optuna study of :class:`~lesionboost.LesionBoostClassifier`
configurations on fixed patient-grouped folds, run it, and return the best configuration.

The objective, the pruning, the defaults trial and the search space are described
in ``docs/tuning.md``; resuming, several workers and several machines in
``docs/usage.md``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import optuna
from optuna.trial import TrialState

from .._utils._frame import to_polars
from ._objective import (
    PatientCVObjective,
    _checked_tuning_weights,
    check_training_data,
    data_fingerprint,
)
from ._runner import (
    TuningError,
    _finished,
    _optimize,
    _Progress,
    _run_workers,
    _sampler,
    _wilcoxon,
)
from ._space import TUNED_MEMBERS, SearchSpace, build_config
from ._storage import (
    StorageError,
    describe_storage,
    is_in_memory,
    is_sqlite,
    open_storage,
    recover_stale_trials,
)

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
    pruner = pruner if pruner is not None else _wilcoxon(0.2)
    try:
        # Creation is atomic in every storage: exactly one of several workers started
        # together creates the study, and only that one enqueues the defaults.
        study = optuna.create_study(
            direction="maximize",
            storage=backend,
            study_name=study_name,
            sampler=sampler,
            pruner=pruner,
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        if backend is None:  # a new in-memory storage holds no study to collide with
            raise
        study = optuna.load_study(
            storage=backend, study_name=study_name, sampler=sampler, pruner=pruner
        )
        created = False
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ValueError(
            f"Study {study_name!r} in {describe_storage(storage)} minimises; "
            "lesionboost studies maximise pAUC. Choose another study name."
        )
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
        study.enqueue_trial(space.defaults(), user_attrs={DEFAULTS_ATTR: True}, skip_if_exists=True)
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
        value = (
            trial.value
            if trial.state == TrialState.COMPLETE
            else trial.user_attrs.get("partial_value")
        )
        duration = trial.duration.total_seconds() if trial.duration is not None else None
        history.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "value": value,
                "seconds": duration,
                "defaults": bool(trial.user_attrs.get(DEFAULTS_ATTR)),
                "folds_reached": len(trial.intermediate_values),
            }
        )
    return history


def _check_fixed_not_searched(fixed: Mapping[str, Any], space: SearchSpace) -> None:
    """Refuse ``fixed_params`` that the search would overwrite, before any work."""
    searched = set(space.to_config(space.defaults()))
    if any(key.startswith("weight.") for key in space.distributions()):
        searched.add("weights")
    clash = sorted(searched & set(fixed))
    if clash:
        hint = (
            " (SearchSpace(followup=False) leaves followup and followup_offset out of the search)"
            if {"followup", "followup_offset"} & set(clash)
            else ""
        )
        raise ValueError(
            f"fixed_params sets {clash}, which the search space tunes; drop them from "
            f"fixed_params or pass a search_space that does not search them{hint}."
        )


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
    members: Sequence[str] = TUNED_MEMBERS,
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
        ``journal:PATH`` (see :mod:`lesionboost.tuning._storage`).
    study_name : str, default="lesionboost"
    n_splits, seed : int
        Folds from :func:`~lesionboost.patient_folds` when ``folds`` is None;
        ``seed`` also seeds the sampler.
    folds : array-like of int, optional
        Fixed fold id per row (e.g. read back from a run's ``folds.parquet``).
    members : sequence of str, default=("lightgbm", "catboost", "linear")
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
        Threshold of :class:`optuna.pruners.WilcoxonPruner`: a trial stops once a
        one-sided Wilcoxon signed-rank test on its fold scores, paired with the best
        trial's, gives a p-value below it (``docs/tuning.md`` says why 0.2 rather
        than Optuna's 0.1).
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
    ...                    rounds=20, progress=False)
    >>> len(study.trials), sorted(best)[:2]
    (2, ['feature_groups', 'followup'])
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
        from ..model_selection import patient_folds

        folds = patient_folds(frame, n_splits=n_splits, seed=seed)
    folds = np.asarray(folds, dtype=np.int8)
    _, labels = check_training_data(frame, folds)
    weight = _checked_tuning_weights(sample_weight, labels, folds)
    fixed = dict(fixed_params or {})
    if search_space is not None:
        space = search_space
    else:  # a fixed followup or followup_offset leaves both out of the search
        space = SearchSpace(
            members=members, followup=not {"followup", "followup_offset"} & set(fixed)
        )
    _check_fixed_not_searched(fixed, space)
    # Everything that changes what a trial measures: a worker started with other
    # images, device or search space must not add its trials to this study
    # (n_jobs only changes the speed). Keys a study does not record are not compared.
    fixed_settings = {
        key: (value if isinstance(value, (str, int, float, bool, type(None))) else repr(value))
        for key, value in sorted((fixed_params or {}).items())
        if key != "n_jobs"
    }
    settings = {
        "members": list(space.members),
        "rounds": rounds,
        "n_folds": int(len(np.unique(folds))),
        "search_space": 6,
        "search_space_ensemble": bool(space.ensemble),
        "search_space_feature_groups": bool(space.feature_groups),
        "search_space_followup": bool(space.feature_groups and space.followup),
        "fixed_params": fixed_settings,
    }
    pruner = _wilcoxon(p_threshold)
    study = open_study(
        storage,
        study_name,
        fingerprint=data_fingerprint(frame, folds, weight),
        settings=settings,
        space=space,
        pruner=pruner,
    )
    recover_stale_trials(study)
    before = _finished(study)
    logger.info(
        "study %r in %s: %d finished trial(s) so far%s",
        study_name,
        describe_storage(storage),
        before,
        "" if n_trials is None else f", target {n_trials}",
    )
    bar = _Progress(n_trials, before, progress)
    try:
        if n_workers == 1:
            # A SQLite file is the single-process storage (several processes get a journal
            # file or a server), so its runs are seeded reproducibly; other storages may be
            # shared with other machines running the same command, which must not propose
            # the same points.
            shared = storage is not None and not is_sqlite(storage)
            study.sampler = _sampler(seed, study, 0, n_trials, shared=shared)
            objective = PatientCVObjective(
                frame,
                folds,
                space=space,
                fixed_params=fixed_params,
                rounds=rounds,
                oof_dir=oof_dir,
                sample_weight=weight,
            )
            _optimize(
                study,
                objective,
                n_trials=n_trials,
                timeout=timeout,
                callbacks=[lambda s, t: bar.update(s), *callbacks],
            )
        else:
            payload = {
                "study_name": study_name,
                "storage": storage,
                "p_threshold": p_threshold,
                "seed": seed,
                "n_trials": n_trials,
                "timeout": timeout,
                "metadata": frame,
                "folds": folds,
                "space": space,
                "fixed_params": dict(fixed_params or {}),
                "rounds": rounds,
                "oof_dir": None if oof_dir is None else str(oof_dir),
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

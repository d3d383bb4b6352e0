"""Running studies for :mod:`lesionboost.tuning`: sampler, pruner, progress, worker processes."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from ..exceptions import TuningError
from ._objective import PatientCVObjective
from ._storage import WORKER_ATTR, open_storage, recover_stale_trials, worker_identity

__all__ = ["TuningError"]

logger = logging.getLogger("lesionboost.tuning")

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _wilcoxon(p_threshold: float) -> optuna.pruners.BasePruner:
    with warnings.catch_warnings():  # experimental in Optuna 5; its interface is what we use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.WilcoxonPruner(p_threshold=p_threshold)


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=_FINISHED))


class _StampingTPESampler(optuna.samplers.TPESampler):
    """TPE that stamps the worker's identity on a trial as soon as it is created.

    A worker killed after Optuna created its trial but before the objective ran
    would otherwise leave a RUNNING trial that names no process, which
    :func:`recover_stale_trials` cannot prove dead; stamping here, before any
    sampling, narrows that window to a storage round trip.
    """

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        study._storage.set_trial_user_attr(trial._trial_id, WORKER_ATTR, worker_identity())
        super().before_trial(study, trial)


def _sampler(
    seed: int, study: optuna.Study, worker: int, n_trials: int | None, *, shared: bool
) -> Any:
    """TPE with a seed that differs per worker, per resume and, on shared storages, per process.

    Equal seeds make two workers -- or a resumed run -- propose the very same points
    again: the seed mixes in the trials already in the study and the worker index,
    and, when the storage may be shared with other machines (anything but memory or
    a SQLite file, the single-process storage),
    the host and process id, because two machines started with the same command
    see the same study and the same worker index. Tuning through a shared storage
    is therefore not bit-reproducible (with parallel workers it never is).
    """
    parts = [seed, len(study.get_trials(deepcopy=False)), worker]
    if shared:
        identity = worker_identity()
        parts += [identity["host"], identity["pid"], identity["start"]]
    digest = hashlib.sha256(repr(parts).encode()).digest()
    startup = 10 if n_trials is None else int(min(10, max(3, n_trials // 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _StampingTPESampler(
            seed=int.from_bytes(digest[:4], "little") % 2**31,
            n_startup_trials=startup,
            multivariate=True,
            constant_liar=True,
        )


class _Progress:
    """tqdm bar over finished trials with the best pAUC so far (off when not a TTY)."""

    def __init__(self, total: int | None, initial: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total,
            initial=initial,
            desc="tuning",
            unit="trial",
            disable=None if enabled else True,
            dynamic_ncols=True,
        )

    def update(self, study: optuna.Study) -> None:
        done = _finished(study)
        self.bar.n = done
        try:
            self.bar.set_postfix_str(f"best pAUC {study.best_value:.4f}", refresh=False)
        except ValueError:
            pass
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _optimize(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    *,
    n_trials: int | None,
    timeout: float | None,
    callbacks: Sequence[Callable[..., None]] = (),
) -> None:
    remaining = None if n_trials is None else n_trials - _finished(study)
    if remaining is not None and remaining <= 0:
        return

    def recover(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        recover_stale_trials(study)

    all_callbacks: list[Callable[..., None]] = [recover, *callbacks]
    if n_trials is not None:
        all_callbacks.insert(0, optuna.study.MaxTrialsCallback(n_trials, states=_FINISHED))
    study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=all_callbacks)


def _worker_main(payload: dict[str, Any]) -> None:
    """Entry point of a worker process (spawned: no state inherited from the parent)."""
    logging.basicConfig(level=payload["log_level"], format="[lesionboost worker] %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ["TQDM_DISABLE"] = "1"
    storage = open_storage(payload["storage"])
    if storage is None:  # tune() starts workers only on a shared storage
        raise TuningError("worker processes need a shared storage (journal file or database).")
    study = optuna.load_study(
        study_name=payload["study_name"],
        storage=storage,
        pruner=_wilcoxon(payload["p_threshold"]),
    )
    study.sampler = _sampler(
        payload["seed"], study, payload["worker"], payload["n_trials"], shared=True
    )
    recover_stale_trials(study)
    objective = PatientCVObjective(
        payload["metadata"],
        payload["folds"],
        space=payload["space"],
        fixed_params=payload["fixed_params"],
        rounds=payload["rounds"],
        oof_dir=payload["oof_dir"],
        sample_weight=payload.get("sample_weight"),
    )
    try:
        _optimize(study, objective, n_trials=payload["n_trials"], timeout=payload["timeout"])
    except KeyboardInterrupt:  # Ctrl-C reaches every worker; the parent reports it once
        raise SystemExit(130) from None


def _run_workers(
    payload: dict[str, Any], n_workers: int, study: optuna.Study, progress: _Progress
) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_worker_main,
            args=({**payload, "worker": i + 1},),
            name=f"lesionboost-tune-{i + 1}",
        )
        for i in range(n_workers)
    ]
    # Each worker's polars thread pool gets its share of the cores too (the boosters get
    # theirs through n_jobs); polars reads the variable when a spawned worker imports it.
    threads = payload["fixed_params"].get("n_jobs")
    saved = os.environ.get("POLARS_MAX_THREADS")
    if threads is not None and threads > 0 and saved is None:
        os.environ["POLARS_MAX_THREADS"] = str(threads)
    try:
        for process in processes:
            process.start()
    finally:
        if saved is None:
            os.environ.pop("POLARS_MAX_THREADS", None)
    logger.info(
        "started %d worker processes (pids %s)", n_workers, ", ".join(str(p.pid) for p in processes)
    )
    try:
        while any(p.is_alive() for p in processes):
            for process in processes:
                process.join(timeout=1.0 / n_workers)
            progress.update(study)
    except BaseException:
        for process in processes:  # Ctrl-C reaches the workers too; give them a moment
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
        raise
    failed = [p for p in processes if p.exitcode != 0]
    if failed:
        raise TuningError(
            f"{len(failed)} of {n_workers} tuning worker(s) failed (exit codes "
            f"{[p.exitcode for p in failed]}); their errors are in the log above."
        )

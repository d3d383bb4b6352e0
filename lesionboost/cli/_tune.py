"""``lesionboost tune``: tune, fit and save the best configuration in a run folder.

A tune run directory (``--out RUN_DIR``)::

    RUN_DIR/run.json        the options the run was started with (a resume must match)
    RUN_DIR/study.db        default storage (SQLite); study.journal with --workers N > 1
    RUN_DIR/folds.parquet   isic_id, patient_id, fold: the fixed folds of every trial
    RUN_DIR/trials/         OOF scores of the best trial so far (avoids recomputing them)
    RUN_DIR/oof.parquet     isic_id, patient_id, fold, target, score of the best configuration
    RUN_DIR/best.json       best value and configuration, fold scores, trial history
    RUN_DIR/model/          the final model fitted on all data (lesionboost.save_model)
    RUN_DIR/report/         PNG plots and index.html (lesionboost report)

Every file is written atomically, so an interrupted run (Ctrl-C, SIGKILL) leaves
complete files or none; running the same command again resumes the study.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .._utils._atomic import atomic_path
from .._utils._outputs import MARKER, check_folder_output, claim, read_marker
from .._version import __version__
from ..tuning._storage import describe_storage, is_sqlite, open_storage, storage_file
from ._output import EXIT_OK, UsageError, check_positive, emit, quiet_libraries, write_json

logger = logging.getLogger("lesionboost")

#: The marker of a tune run folder.
WRITTEN_BY = "lesionboost tune"

#: Demo settings when ``tune`` runs without --data (sized for ~3 minutes on 2 cores).
DEMO: dict[str, Any] = {
    "patients": 150,
    "trials": 6,
    "folds": 3,
    "members": ("lightgbm",),
    "rounds": 60,
}
#: Defaults with real data.
REAL: dict[str, Any] = {"trials": 50, "folds": 5}

_RUN_FILES = (
    "run.json",
    "study.db",
    "study.db-journal",
    "study.journal",
    "study.journal.lock",
    "folds.parquet",
    "oof.parquet",
    "best.json",
)
_RUN_DIRS = ("model", "report", "trials")


# --------------------------------------------------------------------------- helpers


def _members(text: str | None, default: tuple[str, ...]) -> tuple[str, ...]:
    from ..ensemble import MEMBERS

    if text is None:
        return default
    members = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in members if m not in MEMBERS]
    if not members or unknown or len(set(members)) != len(members):
        raise UsageError(
            f"--members must be a comma-separated list of distinct names from "
            f"{','.join(MEMBERS)}, got {text!r}."
        )
    return members


def _is_in(path: Path | None, folder: Path) -> bool:
    return path is not None and path.resolve().is_relative_to(folder.resolve())


def _study_names(backend: Any) -> list[str]:
    import optuna  # the CLI imports Optuna only when it tunes

    return optuna.study.get_all_study_names(backend)


def _check_run_dir(
    run_dir: Path, settings: dict[str, Any], force: bool, inputs: list[Path]
) -> None:
    """Check, before any file exists, that RUN_DIR may hold this run (resume or --force)."""
    marker = run_dir / "run.json"
    if force:
        doomed = [run_dir / name for name in _owned_run_entries(run_dir)]
        for path in (p.resolve() for p in inputs):
            if any(path == d.resolve() or path.is_relative_to(d.resolve()) for d in doomed):
                raise UsageError(
                    f"--force would delete {path}, an input of this run; move it out of "
                    f"{run_dir} first."
                )
    elif marker.exists():
        try:
            recorded = json.loads(marker.read_text())["settings"]
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{marker} is damaged ({exc}); pass --force to start over.") from exc
        differ = sorted(
            k for k in set(recorded) | set(settings) if recorded.get(k) != settings.get(k)
        )
        if differ:
            details = "; ".join(
                f"{k}: was {recorded.get(k)!r}, now {settings.get(k)!r}" for k in differ[:4]
            )
            raise UsageError(
                f"{run_dir} holds a run started with other options ({details}). Repeat the "
                "original options to resume it, choose another --out, or add --force to "
                "start over."
            )
        logger.info("resuming the run in %s", run_dir)


def _owned_run_entries(run_dir: Path) -> list[str]:
    """The entries of RUN_DIR that an earlier run wrote (never the user's files)."""
    marker = read_marker(run_dir)
    owned = set(marker["entries"]) if marker else set()
    return [
        name for name in (*_RUN_FILES, *_RUN_DIRS) if name in owned and (run_dir / name).exists()
    ]


def _remove_run_entries(run_dir: Path) -> None:
    for name in _owned_run_entries(run_dir):
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _start_run_dir(run_dir: Path, settings: dict[str, Any], force: bool) -> bool:
    """Create (or, with --force, clear) RUN_DIR after the checks; True if the run is new."""
    if force and run_dir.exists():
        _remove_run_entries(run_dir)  # only lesionboost's own entries
        logger.info("--force: removed the previous run in %s", run_dir)
    new = not (run_dir / "run.json").exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    claim(run_dir, (*_RUN_FILES, *_RUN_DIRS), written_by=WRITTEN_BY)
    if new:
        write_json(
            run_dir / "run.json",
            {
                "lesionboost": __version__,
                "settings": settings,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
    return new


def _load_training_data(args: argparse.Namespace) -> tuple[pl.DataFrame, dict[str, Any]]:
    if args.data is not None:
        from ..io import read_metadata

        frame = read_metadata(args.data, kind="train")
        source = {"source": str(Path(args.data).resolve())}
    else:
        from ..simulate import simulate_slice3d

        patients = args.patients or DEMO["patients"]
        logger.info(
            "no --data: tuning on a simulated SLICE-3D cohort of %d patients (seed %d), demo "
            "settings: %s; pass --data train-metadata.csv for real data",
            patients,
            args.seed,
            ", ".join(f"{k}={v}" for k, v in _demo_choices(args).items()) or "as given",
        )
        frame = simulate_slice3d(patients, seed=args.seed).train
        source = {"source": f"simulated ({patients} patients, seed {args.seed})"}
    summary = {
        **source,
        "n_rows": frame.height,
        "n_patients": frame.get_column("patient_id").n_unique(),
        "n_positive": int(frame.get_column("target").sum()),
    }
    return frame, summary


def _demo_choices(args: argparse.Namespace) -> dict[str, Any]:
    """The options the demo picked because the user left them out."""
    picked = {}
    if args.trials is None and args.timeout is None:
        picked["trials"] = DEMO["trials"]
    for name in ("folds", "rounds"):
        if getattr(args, name) is None:
            picked[name] = DEMO[name]
    if args.members is None:
        picked["members"] = ",".join(DEMO["members"])
    return picked


def _run_folds(
    run_dir: Path, frame: pl.DataFrame, n_splits: int, seed: int, force: bool
) -> np.ndarray:
    """The run's folds: read back from folds.parquet when resuming, else drawn (not saved)."""
    path = run_dir / "folds.parquet"
    ids = frame.get_column("isic_id")
    if path.exists() and not force and "folds.parquet" in _owned_run_entries(run_dir):
        saved = pl.read_parquet(path)
        if saved.height != frame.height or not saved.get_column("isic_id").equals(ids):
            raise ValueError(
                f"{path} lists other lesions than the data ({saved.height} vs {frame.height} "
                "rows); the data changed since the run started. Pass --force to start over."
            )
        return saved.get_column("fold").to_numpy().astype(np.int8)
    from ..model_selection import patient_folds

    return patient_folds(frame, n_splits=n_splits, seed=seed)


def _save_folds(run_dir: Path, frame: pl.DataFrame, folds: np.ndarray) -> None:
    path = run_dir / "folds.parquet"
    if path.exists():
        return
    with atomic_path(path) as tmp:
        pl.DataFrame(
            {
                "isic_id": frame.get_column("isic_id"),
                "patient_id": frame.get_column("patient_id"),
                "fold": folds,
            }
        ).write_parquet(tmp)


# --------------------------------------------------------------------------- tune


def run_tune(args: argparse.Namespace) -> int:
    from ..tuning import DEFAULTS_ATTR, check_training_data, tune

    quiet_libraries(args)

    check_positive("--trials", args.trials)
    check_positive("--timeout", args.timeout)
    check_positive("--workers", args.workers)
    check_positive("--rounds", args.rounds)
    check_positive("--patients", args.patients)
    if args.folds is not None and args.folds < 2:
        raise UsageError(f"--folds must be >= 2, got {args.folds}.")
    if args.data is not None and args.patients is not None:
        raise UsageError("--patients sizes the simulated cohort; it cannot be used with --data.")
    if args.image_model is not None and args.images is None:
        raise UsageError("--image-model needs --images (the HDF5 crops of the training lesions).")
    if args.data is not None and not Path(args.data).exists():
        raise FileNotFoundError(
            f"--data {args.data} does not exist; pass train-metadata.csv, "
            "a Parquet copy, or the folder holding it."
        )
    if args.images is not None and not Path(args.images).exists():
        raise FileNotFoundError(f"--images {args.images} does not exist; pass train-image.hdf5.")
    if args.image_model is not None and not Path(args.image_model).exists():
        raise FileNotFoundError(
            f"--image-model {args.image_model} does not exist; pass an .onnx "
            "file, an embed Parquet file or a train_embedder folder."
        )
    if args.image_model is not None:
        from ..image import check_image_model

        try:
            check_image_model(args.image_model)
        except ValueError as exc:
            raise UsageError(f"--image-model: {exc}") from None
    demo = args.data is None
    defaults = DEMO if demo else REAL
    from ..tuning import TUNED_MEMBERS

    members = _members(args.members, DEMO["members"] if demo else TUNED_MEMBERS)
    n_splits = args.folds or defaults["folds"]
    rounds = args.rounds if args.rounds is not None else (DEMO["rounds"] if demo else None)
    n_trials = args.trials
    if n_trials is None and args.timeout is None:
        n_trials = defaults["trials"]
    run_dir = Path(args.out)
    inputs = [Path(p) for p in (args.data, args.images, args.image_model) if p is not None]
    # before any storage is opened: a SQLite file given inside RUN_DIR is created on open
    check_folder_output(run_dir, written_by=WRITTEN_BY, inputs=inputs)
    from ..persist import WRITTEN_BY as MODEL_WRITTEN_BY
    from ..report import WRITTEN_BY as REPORT_WRITTEN_BY

    # the run replaces its model/ and report/ whole (and --force deletes them first):
    # refused now, before any trial, if someone put a file of theirs inside
    for name, writer in (("model", MODEL_WRITTEN_BY), ("report", REPORT_WRITTEN_BY)):
        check_folder_output(
            run_dir / name, written_by=writer, option=f"the run's {name}/ folder", replace=True
        )
    storage = args.storage or os.environ.get("LESIONBOOST_STORAGE")
    if storage is None:
        storage = (
            f"sqlite:///{(run_dir / 'study.db').resolve()}"
            if args.workers == 1
            else f"journal:{(run_dir / 'study.journal').resolve()}"
        )
    elif args.workers > 1 and is_sqlite(storage):
        raise UsageError(
            f"--workers {args.workers} with a SQLite storage fails with 'database is locked'; "
            "use --storage journal:PATH (one machine) or a PostgreSQL URL (several machines)."
        )
    if args.storage or os.environ.get("LESIONBOOST_STORAGE"):
        backend = open_storage(storage)  # an unreachable server fails here, before any work
        if (
            args.force
            and args.study in _study_names(backend)
            and not _is_in(storage_file(storage), run_dir)
        ):
            # --force only clears RUN_DIR; a study in a storage outside it may be shared
            # with other workers or machines, so it is never deleted implicitly.
            raise UsageError(
                f"--force starts RUN_DIR over, but study {args.study!r} lives in "
                f"{describe_storage(storage)}, outside it, and would be resumed. Choose a new "
                "--study name, or delete that study yourself (optuna delete-study "
                f"--study-name {args.study} --storage URL) if no one else uses it."
            )
    settings = {
        "data": str(Path(args.data).resolve()) if args.data else None,
        "patients": None if args.data else (args.patients or DEMO["patients"]),
        "images": str(Path(args.images).resolve()) if args.images else None,
        "image_model": str(Path(args.image_model).resolve()) if args.image_model else None,
        "seed": args.seed,
        "folds": n_splits,
        "members": list(members),
        "rounds": rounds,
        "study": args.study,
        "storage": describe_storage(storage),
    }
    _check_run_dir(run_dir, settings, args.force, inputs)
    started = time.perf_counter()
    frame, data_summary = _load_training_data(args)
    folds = _run_folds(run_dir, frame, n_splits, args.seed, args.force)
    check_training_data(frame, folds)  # bad data fails here, before any file is written
    existed = run_dir.exists()
    new_run = _start_run_dir(run_dir, settings, args.force)
    _save_folds(run_dir, frame, folds)
    n_jobs = args.n_jobs
    if n_jobs is None and args.workers > 1:
        n_jobs = max(1, (os.cpu_count() or 1) // args.workers)  # workers share the cores
    fixed = {"random_state": args.seed, "device": args.device, "n_jobs": n_jobs}
    if args.images is not None:
        fixed.update(images=str(Path(args.images).resolve()), image_model=settings["image_model"])
    try:
        result = tune(
            frame,
            n_trials=n_trials,
            timeout=args.timeout,
            storage=storage,
            study_name=args.study,
            folds=folds,
            members=members,
            fixed_params=fixed,
            rounds=rounds,
            n_workers=args.workers,
            seed=args.seed,
            progress=not args.quiet,
            oof_dir=run_dir / "trials",
        )
    except Exception:
        if new_run and not _has_finished_trials(storage, args.study):
            _remove_run_entries(run_dir)  # nothing to resume: leave no half-started run
            if not existed:
                (run_dir / MARKER).unlink(missing_ok=True)
                run_dir.rmdir()
        raise
    tuning_seconds = time.perf_counter() - started
    study = result.study
    best = study.best_trial
    logger.info(
        "best trial %d: OOF pAUC %.4f (defaults %s)",
        best.number,
        best.value,
        "n/a" if result.defaults_value is None else f"{result.defaults_value:.4f}",
    )
    files = _finish_run(
        run_dir,
        frame,
        folds,
        result,
        fixed,
        data_summary,
        extra={
            "study_name": args.study,
            "storage": describe_storage(storage),
            "n_splits": n_splits,
            "seed": args.seed,
            "rounds": rounds,
            "tuning_seconds": round(tuning_seconds, 1),
        },
    )
    counts = _state_counts(study)
    summary = {
        "run_dir": str(run_dir),
        "study": args.study,
        "storage": describe_storage(storage),
        "trials": counts,
        "best_trial": best.number,
        "best_value": best.value,
        "defaults_value": result.defaults_value,
        "best_params": result.best_params,
        "defaults_is_best": bool(best.user_attrs.get(DEFAULTS_ATTR)),
        "files": files,
        "seconds": round(time.perf_counter() - started, 1),
    }
    emit(
        args,
        summary,
        f"best OOF pAUC {best.value:.4f} (defaults "
        f"{'n/a' if result.defaults_value is None else f'{result.defaults_value:.4f}'}) after "
        f"{counts.get('COMPLETE', 0)} complete and {counts.get('PRUNED', 0)} pruned trials; "
        f"model in {files['model']}, report {files.get('report', '(not drawn)')}",
    )
    return EXIT_OK


def _has_finished_trials(storage: str, study_name: str) -> bool:
    import optuna

    backend = open_storage(storage)
    if backend is None:
        return False
    try:
        study = optuna.load_study(study_name=study_name, storage=backend)
    except Exception:  # no study, or a storage that cannot be opened: nothing to keep
        return False
    return any(
        t.state.is_finished() and t.state.name != "FAIL" for t in study.get_trials(deepcopy=False)
    )


def _state_counts(study: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _best_oof(
    run_dir: Path, frame: pl.DataFrame, folds: np.ndarray, number: int, estimator: Any
) -> np.ndarray:
    """OOF scores of the best trial: saved by the trial itself, else recomputed."""
    path = run_dir / "trials" / f"trial-{number}.parquet"
    if path.exists():
        saved = pl.read_parquet(path)
        if saved.height == frame.height and np.array_equal(saved["fold"].to_numpy(), folds):
            return saved["score"].to_numpy()
    logger.info("recomputing the OOF scores of trial %d (it ran elsewhere)", number)
    import warnings

    from ..estimator import cross_val_oof
    from ..exceptions import DataWarning

    with warnings.catch_warnings():  # levels unseen in a training fold are expected in CV
        warnings.simplefilter("ignore", DataWarning)
        return cross_val_oof(estimator, frame, folds, progress=False).oof


def _importances(model: Any, frame: pl.DataFrame, rows: int = 2000) -> dict[str, float]:
    """Share of the mean |SHAP contribution| per feature, on a sample of whole patients."""
    take, total = [], 0
    counts = frame.group_by("patient_id", maintain_order=True).len()
    for pid, n in counts.iter_rows():  # whole patients keep the patient features honest
        take.append(pid)
        total += n
        if total >= rows:
            break
    sample = frame.filter(pl.col("patient_id").is_in(take))
    features = model.transform_features(sample)
    contributions = np.abs(model.ensemble_.feature_contributions(features)).mean(axis=0)
    share = contributions / max(float(contributions.sum()), 1e-12)
    order = np.argsort(-share)[:40]
    return {str(features.columns[i]): round(float(share[i]), 6) for i in order}


def _finish_run(
    run_dir: Path,
    frame: pl.DataFrame,
    folds: np.ndarray,
    result: Any,
    fixed: dict[str, Any],
    data_summary: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, str]:
    from ..calibration import ScoreCalibrator
    from ..estimator import LesionBoostClassifier
    from ..metrics import pauc_above_tpr
    from ..persist import save_model
    from ..tuning import trial_history

    study, config = result.study, result.best_params
    best = study.best_trial
    estimator = LesionBoostClassifier(**{**fixed, **config})
    oof = _best_oof(run_dir, frame, folds, best.number, estimator)
    y = frame.get_column("target").to_numpy()
    fold_scores = []
    for fold in np.unique(folds):
        part = folds == fold
        ok = 0 < y[part].sum() < part.sum()
        fold_scores.append(pauc_above_tpr(y[part], oof[part]) if ok else None)
    logger.info("fitting the final model on all %d lesions", frame.height)
    model = estimator.fit(frame)
    # the final model's probabilities are mapped to the risk its out-of-fold scores show
    try:
        calibrator = ScoreCalibrator.fit(y, oof)
    except ValueError as exc:  # scores that do not rank cancers higher cannot be mapped
        logger.warning("the model's probabilities are left uncalibrated: %s", exc)
        calibrated = oof
    else:
        model.calibrator_ = calibrator.to_dict()
        calibrated = calibrator.transform(oof)
    with atomic_path(run_dir / "oof.parquet") as tmp:
        pl.DataFrame(
            {
                "isic_id": frame.get_column("isic_id"),
                "patient_id": frame.get_column("patient_id"),
                "fold": folds,
                "target": y.astype(np.int8),
                "score": oof,
                "score_calibrated": calibrated,
            }
        ).write_parquet(tmp)
    finite = [s for s in fold_scores if s is not None]
    metrics = {
        "oof_pauc": pauc_above_tpr(y, oof),
        "fold_scores": fold_scores,
        "study": extra["study_name"],
        "trial": best.number,
    }
    save_model(model, run_dir / "model", metrics=metrics, training_data=frame, overwrite=True)
    best_json = {
        **extra,
        "lesionboost_version": __version__,
        "best_trial": best.number,
        "best_value": best.value,
        "defaults_value": result.defaults_value,
        "fold_scores": fold_scores,
        "fold_mean": float(np.mean(finite)) if finite else None,
        "fold_sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else None,
        "best_params": config,
        "calibration": getattr(model, "calibrator_", None),
        "fixed_params": fixed,
        "trial_params": best.params,
        "n_trials": _state_counts(study),
        "data": data_summary,
        "history": trial_history(study),
        "feature_importances": _importances(model, frame),
    }
    write_json(run_dir / "best.json", best_json)
    for stale in (run_dir / "trials").glob("trial-*.parquet"):
        if stale.name != f"trial-{best.number}.parquet":
            stale.unlink(missing_ok=True)
    files = {
        "model": str(run_dir / "model"),
        "best": str(run_dir / "best.json"),
        "folds": str(run_dir / "folds.parquet"),
        "oof": str(run_dir / "oof.parquet"),
    }
    try:
        from ..report import write_report

        files["report"] = str(write_report(run_dir) / "index.html")
    except ImportError as exc:  # the report extra is optional; the run itself succeeded
        logger.warning("no report drawn: %s", exc)
    return files


# --------------------------------------------------------------------------- predict


# --------------------------------------------------------------------------- report

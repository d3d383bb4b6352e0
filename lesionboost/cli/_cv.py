"""``lesionboost cv``: cross-validate one configuration (no tuning) and write a run folder.

:func:`run_cv` checks every input and computes everything before ``--out`` is
created: the estimator's configuration (the defaults or a tune run's ``--params``,
changed by ``--members`` and ``--rounds``), the data (``--data`` or a simulated
cohort), the folds (patient-grouped, repeated with ``--repeats``, or one per centre
with ``--cv centre``) and the out-of-fold scores of every repeat, on joblib or on a
Dask cluster (``--scheduler``). It then writes the run folder described in
``_runs.py``, every file atomically and ``cv.json`` last, with the evaluation of
repeat 0 and its report.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .._utils._atomic import atomic_path
from .._utils._imports import import_optional
from .._utils._outputs import check_folder_output, claim
from .._version import __version__
from ..calibration import ScoreCalibrator
from ..report import EVALUATION_WRITTEN_BY, evaluation_report_markers
from ._output import EXIT_OK, UsageError, check_positive, emit, quiet_libraries, write_json
from ._runs import (
    RUN_ENTRIES,
    SUBGROUP_COLUMNS,
    WRITTEN_BY,
    _fingerprint,
    _repeat_summary,
    _scheme_text,
    _simulated,
    _validation_context,
)

logger = logging.getLogger("lesionboost")

#: Settings of a cv without --data (the simulator), sized like the tune demo.
DEMO: dict[str, Any] = {"patients": 150, "folds": 3, "members": ("lightgbm",), "rounds": 60}
#: Patient-grouped folds with real data.
DEFAULT_FOLDS = 5
# Optional parameters a --params file may not set (cv has no image inputs).
_IMAGE_PARAMS = ("images", "image_model")


# ------------------------------------------------------------------------ cv: inputs


def _members(text: str | None) -> tuple[str, ...] | None:
    from ..ensemble import MEMBERS
    from ..estimator import MEMBER_VIEWS

    if text is None:
        return None
    members = tuple(m.strip() for m in text.split(",") if m.strip())
    known = [*MEMBERS, *(f"{k}:{v}" for v in MEMBER_VIEWS for k in MEMBERS)]
    unknown = [m for m in members if m not in known]
    if not members or unknown or len(set(members)) != len(members):
        raise UsageError(
            f"--members must be a comma-separated list of distinct names from "
            f"{','.join(known)}, got {text!r}."
        )
    return members


def _local_workers(address: str | None) -> int | None:
    """N of ``--scheduler local:N``; None for a scheduler address (or none)."""
    if address is None:
        return None
    if not address.startswith("local:"):
        if ":" not in address.rpartition("://")[2]:
            raise UsageError(
                f"--scheduler {address}: give a Dask scheduler's address with its port (e.g. "
                "tcp://host:8786), or local:N for N workers on this machine."
            )
        return None
    text = address.partition(":")[2]
    if not text.isdigit() or int(text) < 1:
        raise UsageError(
            f"--scheduler {address}: local:N starts N single-thread workers on this machine; "
            "N must be a positive integer (e.g. local:2)."
        )
    return int(text)


def _read_params(path: Path) -> dict[str, Any]:
    """The estimator parameters of ``--params``: a tune run's best.json or a plain object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(
            f"--params {path} is not valid JSON ({exc}); pass the best.json of a tune run."
        ) from exc
    params = data.get("best_params", data) if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise ValueError(
            f"--params {path} holds no configuration: pass the best.json of a `lesionboost "
            "tune` run (its best_params are used) or a JSON object of LesionBoostClassifier "
            "parameters."
        )
    from ..estimator import LesionBoostClassifier

    known = set(LesionBoostClassifier().get_params())
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(
            f"--params {path}: unknown LesionBoostClassifier parameter(s) {unknown[:5]}; "
            f"expected some of {sorted(known)}."
        )
    fixed = data.get("fixed_params") if isinstance(data, dict) else None
    fixed = fixed if isinstance(fixed, dict) else {}
    images = [
        name
        for name in _IMAGE_PARAMS
        if params.get(name) is not None or fixed.get(name) is not None
    ]
    if images:
        raise UsageError(
            f"--params {path} sets {images}: lesionboost cv has no image inputs; use a "
            "configuration without image features."
        )
    return {k: v for k, v in params.items() if k not in _IMAGE_PARAMS}


def _configuration(args: argparse.Namespace, demo: bool) -> tuple[dict[str, Any], str]:
    """Keyword arguments of the estimator and where they came from."""
    from ..ensemble import MEMBERS, member_kind
    from ..estimator import DEFAULT_MEMBERS

    params = _read_params(Path(args.params)) if args.params else {}
    source = f"--params {args.params}" if args.params else "LesionBoostClassifier defaults"
    members = _members(args.members)
    if members is None and demo and not args.params:
        members = DEMO["members"]
    if members is not None:
        params["members"] = list(members)
    rounds = args.rounds
    if rounds is None and demo and not args.params:
        rounds = DEMO["rounds"]
    if rounds is not None:
        for kind in dict.fromkeys(member_kind(m) for m in params.get("members", DEFAULT_MEMBERS)):
            if not MEMBERS[kind].round_keys:  # no boosting rounds (the linear member)
                continue
            key = f"{kind}_params"
            params[key] = {**(params.get(key) or {}), "n_estimators": int(rounds)}
    changed = ([f"members {','.join(members)}"] if members is not None else []) + (
        [f"{rounds} rounds"] if rounds is not None else []
    )
    if changed:
        source += " with " + ", ".join(changed)
    n_jobs = args.n_jobs
    workers = _local_workers(args.scheduler)
    if n_jobs is None and workers is not None:
        n_jobs = max(1, (os.cpu_count() or 1) // workers)  # the local workers share the cores
    params.update(random_state=args.seed, device=args.device, n_jobs=n_jobs)
    return params, source


def _training_data(args: argparse.Namespace) -> tuple[pl.DataFrame, dict[str, Any]]:
    if args.data is not None:
        from ..io import read_metadata, resolve_metadata_path

        path = Path(args.data)
        file = resolve_metadata_path(path, "train") if path.is_dir() else path
        frame = read_metadata(file, kind="train")
        summary: dict[str, Any] = {"source": str(file.resolve()), "simulated": _simulated(file)}
    else:
        from ..simulate import simulate_slice3d

        patients = args.patients or DEMO["patients"]
        logger.info(
            "no --data: cross-validating on a simulated SLICE-3D cohort of %d patients (seed "
            "%d); pass --data train-metadata.csv for real data",
            patients,
            args.seed,
        )
        frame = simulate_slice3d(patients, seed=args.seed).train
        summary = {
            "source": f"simulated ({patients} patients, seed {args.seed})",
            "simulated": True,
        }
    target = frame.get_column("target")
    positives = int(target.sum())
    if positives == 0:
        where = f"--data {args.data}" if args.data else "the simulated cohort"
        raise ValueError(
            f"{where} holds no malignant lesion ({frame.height} lesions, none with target == "
            "1); cross-validation measures how malignant lesions rank against benign ones, "
            "so pass training data that holds both."
        )
    summary.update(
        n_rows=frame.height,
        n_patients=frame.get_column("patient_id").n_unique(),
        n_positive=positives,
        n_centres=(
            frame.get_column("attribution").drop_nulls().n_unique()
            if "attribution" in frame.columns
            else 0
        ),
    )
    return frame, summary


def _folds(
    frame: pl.DataFrame, args: argparse.Namespace, n_splits: int
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The fold arrays of every repeat and the scheme that drew them."""
    from ..model_selection import centre_folds, patient_folds, repeated_patient_folds
    from ..tuning import check_training_data

    if args.cv == "centre":
        names = (
            frame.get_column("attribution")
            .drop_nulls()
            .cast(pl.String)
            .unique(maintain_order=True)
            .to_list()
            if "attribution" in frame.columns
            else []
        )
        if len(names) < 2:
            raise ValueError(
                f"--cv centre needs lesions from at least two centres (column attribution); "
                f"the data hold {len(names)}{': ' + names[0] if names else ''}. Use --cv "
                "patient for data from one centre."
            )
        splits = [centre_folds(frame)]
        scheme: dict[str, Any] = {
            "cv": "centre",
            "n_splits": len(names),
            "n_repeats": 1,
            "seed": args.seed,
            "seeds": [args.seed],
            "centres": names,
        }
    else:
        if args.repeats == 1:
            splits = [patient_folds(frame, n_splits=n_splits, seed=args.seed)]
        else:
            splits = repeated_patient_folds(frame, n_splits, n_repeats=args.repeats, seed=args.seed)
        scheme = {
            "cv": "patient",
            "n_splits": n_splits,
            "n_repeats": args.repeats,
            "seed": args.seed,
            "seeds": [args.seed + r for r in range(args.repeats)],
            "method": "patient_folds" if args.repeats == 1 else "repeated_patient_folds",
        }
    for split in splits:
        check_training_data(frame, split)
    return splits, scheme


@contextlib.contextmanager
def _fold_backend(address: str | None) -> Iterator[str | None]:
    """Run joblib on a Dask cluster (``local:N`` or a scheduler address) inside the block.

    ``local:N`` starts an in-process cluster of N single-thread workers: the boosters
    and polars release the GIL, so threads train in parallel, and the folds' frames
    reach the workers without being copied.
    """
    if address is None:
        yield None
        return
    distributed = import_optional("distributed", purpose="--scheduler (folds on a Dask cluster)")
    import joblib

    workers = _local_workers(address)
    with contextlib.ExitStack() as stack:
        if workers is not None:
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=False,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            )
            client = stack.enter_context(distributed.Client(cluster))
        else:
            try:
                client = stack.enter_context(distributed.Client(address, timeout=30))
            except (OSError, ValueError) as exc:
                raise OSError(
                    f"--scheduler {address}: no Dask scheduler answered ({exc}); start one "
                    "(dask scheduler) and its workers, or use local:N."
                ) from exc
        stack.enter_context(joblib.parallel_backend("dask"))
        threads = sum(client.nthreads().values())
        logger.info(
            "folds run on the Dask cluster %s (%d worker thread(s))",
            client.scheduler.address,
            threads,
        )
        yield str(client.scheduler.address)


def _run_repeats(
    estimator: Any,
    frame: pl.DataFrame,
    splits: list[np.ndarray],
    scheme: dict[str, Any],
    args: argparse.Namespace,
) -> list[Any]:
    from ..estimator import cross_val_oof
    from ..exceptions import DataWarning

    results = []
    with _fold_backend(args.scheduler) as cluster, warnings.catch_warnings():
        # levels unseen in a training fold are expected in CV; Dask's hint about large
        # task graphs is about how cross_val_oof ships each fold's frames, not the user's
        warnings.simplefilter("ignore", DataWarning)
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        for repeat, split in enumerate(splits):
            result = cross_val_oof(
                estimator,
                frame,
                split,
                progress=not args.quiet,
                n_jobs=None if cluster is None else -1,
            )
            empty = [
                int(f)
                for f, s in zip(np.unique(split), result.fold_scores, strict=True)
                if not np.isfinite(s)
            ]
            if empty:
                what = (
                    "centre(s) " + "; ".join(scheme["centres"][f] for f in empty)
                    if scheme["cv"] == "centre"
                    else f"fold(s) {empty}"
                )
                logger.warning(
                    "repeat %d: no malignant lesion in %s, so no pAUC of their own; "
                    "their lesions still count in the pooled pAUC",
                    repeat,
                    what,
                )
            logger.info(
                "repeat %d: pooled OOF pAUC %.4f (%d of %d repeats done)",
                repeat,
                result.pauc,
                repeat + 1,
                len(splits),
            )
            results.append(result)
    return results


# ------------------------------------------------------------------------ cv: outputs


def _write_frame(frame: pl.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)


def _write_report(
    evaluation: Any,
    out: Path,
    oof: pl.DataFrame,
    context: dict[str, Any],
    title: str,
    inputs: list[Path],
    calibrated: Any = None,
) -> Path | None:
    """The evaluation report, or None (logged) when matplotlib is missing."""
    from ..exceptions import OptionalDependencyError
    from ..report import write_evaluation_report

    try:
        return write_evaluation_report(
            evaluation,
            out,
            oof=oof,
            context=context,
            title=title,
            inputs=inputs,
            calibrated=calibrated,
        )
    except OptionalDependencyError as exc:
        logger.warning("no report drawn: %s", exc)
        return None


def run_cv(args: argparse.Namespace) -> int:
    from ..estimator import LesionBoostClassifier
    from ..evaluation import evaluate

    quiet_libraries(args)
    for name in ("--repeats", "--rounds", "--patients"):
        check_positive(name, getattr(args, name[2:]))
    if args.n_boot < 0:
        raise UsageError(f"--n-boot must be >= 0 (0: no intervals), got {args.n_boot}.")
    if args.cv == "centre" and args.repeats > 1:
        raise UsageError(
            "--cv centre has one fold per centre and nothing to reshuffle, so --repeats "
            f"{args.repeats} would repeat the same split; drop --repeats or use --cv patient."
        )
    if args.cv == "centre" and args.folds is not None:
        raise UsageError("--cv centre makes one fold per centre; drop --folds.")
    if args.folds is not None and args.folds < 2:
        raise UsageError(f"--folds must be >= 2, got {args.folds}.")
    if args.data is not None and args.patients is not None:
        raise UsageError("--patients sizes the simulated cohort; it cannot be used with --data.")
    _local_workers(args.scheduler)
    for option, value in (("--data", args.data), ("--params", args.params)):
        if value is not None and not Path(value).exists():
            raise FileNotFoundError(f"{option} {value} does not exist.")
    run_dir = Path(args.out)
    inputs = [Path(p) for p in (args.data, args.params) if p is not None]
    check_folder_output(
        run_dir, written_by=WRITTEN_BY, inputs=inputs, replace=args.force, replaces=RUN_ENTRIES
    )
    earlier = [n for n in RUN_ENTRIES if (run_dir / n).exists()]
    if earlier and not args.force:
        raise UsageError(
            f"{run_dir} holds an earlier cv run ({', '.join(earlier)}); pass --force to "
            "replace it, or choose another --out."
        )
    check_folder_output(
        run_dir / "report",
        written_by=EVALUATION_WRITTEN_BY,
        also_written_by=evaluation_report_markers(run_dir / "report"),
        option="the report folder",
        replace=True,
    )
    if args.scheduler is not None:
        import_optional("distributed", purpose="--scheduler (folds on a Dask cluster)")
    demo = args.data is None
    n_splits = args.folds or (DEMO["folds"] if demo else DEFAULT_FOLDS)
    config, config_source = _configuration(args, demo)
    estimator = LesionBoostClassifier(**config)
    started = time.perf_counter()
    frame, data_summary = _training_data(args)
    splits, scheme = _folds(frame, args, n_splits)  # bad data fails here, before any file
    results = _run_repeats(estimator, frame, splits, scheme, args)

    ids = frame.get_column("isic_id").cast(pl.String).to_list()
    target = frame.get_column("target").to_numpy()
    lead = ["isic_id", "patient_id"] + (["attribution"] if "attribution" in frame.columns else [])
    tail = [c for c in SUBGROUP_COLUMNS if c in frame.columns and c not in lead]
    oof = pl.concat(
        [
            frame.select(
                *lead,
                pl.lit(repeat, dtype=pl.Int16).alias("repeat"),
                pl.Series("fold", split, dtype=pl.Int32),
                pl.col("target").cast(pl.Int8),
                pl.Series("score", result.oof, dtype=pl.Float64),
                *tail,
            )
            for repeat, (split, result) in enumerate(zip(splits, results, strict=True))
        ]
    )
    first = oof.filter(pl.col("repeat") == 0)
    evaluation = evaluate(target, results[0].oof, first, n_boot=args.n_boot, seed=args.seed)
    # the risk a model calibrated on these out-of-fold scores would report (in-sample: the
    # map has two parameters, fitted on every lesion of repeat 0)
    try:
        calibrator = ScoreCalibrator.fit(target, results[0].oof)
    except ValueError as exc:
        logger.warning("no calibrated view: %s", exc)
        calibrated = None
    else:
        calibrated = evaluate(
            target, calibrator.transform(results[0].oof), first, n_boot=0, seed=args.seed
        ).calibration
    repeats = [_repeat_summary(r, scheme["seeds"][r], res) for r, res in enumerate(results)]
    pooled = np.array([r["pauc"] for r in repeats])
    context = {
        "data": {"source": data_summary["source"], "simulated": data_summary["simulated"]},
        "validation": _validation_context(scheme, repeats),
        "model": {"name": f"LesionBoostClassifier ({config_source})", "configuration": config},
    }

    run_dir.mkdir(parents=True, exist_ok=True)
    claim(run_dir, RUN_ENTRIES, written_by=WRITTEN_BY)
    _write_frame(oof.select("isic_id", "patient_id", "repeat", "fold"), run_dir / "folds.parquet")
    _write_frame(oof, run_dir / "oof.parquet")
    write_json(run_dir / "evaluation.json", evaluation.to_dict())
    report = _write_report(
        evaluation,
        run_dir / "report",
        first,
        context,
        f"lesionboost cv: {run_dir.resolve().name}",
        inputs,
        calibrated,
    )
    if report is None and (run_dir / "report").exists():
        import shutil

        shutil.rmtree(run_dir / "report")  # an earlier run's report would not match
    cv_json = {
        "lesionboost_version": __version__,
        "written_by": WRITTEN_BY,
        "scheme": scheme,
        "configuration": config,
        "configuration_source": config_source,
        "scheduler": args.scheduler,
        "data": data_summary,
        "fingerprint": _fingerprint(ids, splits),
        "lesions_fingerprint": _fingerprint(ids, target=target),
        "repeats": repeats,
        "report_context": context,
        "pauc_mean": float(pooled.mean()),
        "pauc_sd": float(pooled.std(ddof=1)) if pooled.size > 1 else None,
        "evaluation": {
            "repeat": 0,
            "n_boot": args.n_boot,
            "seed": args.seed,
            "pauc": evaluation.pauc,
            "pauc_ci": evaluation.pauc_ci,
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(run_dir / "cv.json", cv_json)
    summary = {
        "run_dir": str(run_dir),
        "scheme": _scheme_text(scheme),
        "pauc_per_repeat": [r["pauc"] for r in repeats],
        "pauc_mean": cv_json["pauc_mean"],
        "fold_scores": [r["fold_scores"] for r in repeats],
        "pauc_ci": evaluation.pauc_ci,
        "weakest_subgroup": evaluation.weakest_subgroup,
        "report": None if report is None else str(report / "index.html"),
        "seconds": cv_json["seconds"],
    }
    ci = evaluation.pauc_ci
    emit(
        args,
        summary,
        f"cv ({_scheme_text(scheme)}): pooled OOF pAUC {repeats[0]['pauc']:.4f}"
        + (f" (95 % CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else "")
        + (
            f", mean over {len(repeats)} repeats {cv_json['pauc_mean']:.4f}"
            if len(repeats) > 1
            else ""
        )
        + f"; run in {run_dir}"
        + (f", report {report / 'index.html'}" if report else ""),
    )
    return EXIT_OK

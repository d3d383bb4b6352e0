"""``lesionboost cv``, ``evaluate`` and ``compare``: a clinical evaluation from the command line.

``cv`` cross-validates one configuration (no tuning) and writes a run folder
(``--out RUN``)::

    RUN/folds.parquet     isic_id, patient_id, repeat, fold: the split of every repeat
    RUN/oof.parquet       isic_id, patient_id, attribution, repeat, fold, target, score and
                          the subgroup columns of evaluate() (sex, age_approx, ...)
    RUN/evaluation.json   evaluate() on repeat 0's out-of-fold scores (Evaluation.to_dict())
    RUN/report/           plots, per-centre table and model card (write_evaluation_report)
    RUN/cv.json           configuration, scheme, per-fold and pooled pAUC of every repeat,
                          seeds and fingerprints; written last, so it marks a finished run

Everything is checked and computed before RUN is created, and every file is
written atomically. ``evaluate`` re-runs :func:`~lesionboost.evaluation.evaluate`
on a run folder, on a saved model scoring a labelled file, or on a scores file
against a labelled file. ``compare`` tests two runs on the same folds fold by fold.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
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
from .._utils._outputs import check_folder_output, claim, read_marker
from .._version import __version__
from ._output import EXIT_OK, UsageError, check_positive, emit, quiet_libraries, write_json

logger = logging.getLogger("lesionboost")

#: The marker of a cv run folder.
WRITTEN_BY = "lesionboost cv"
#: The entries of a cv run folder, in the order they are written (cv.json last).
RUN_ENTRIES = ("folds.parquet", "oof.parquet", "evaluation.json", "report", "cv.json")
#: Metadata columns kept in oof.parquet: the subgroups of evaluate().
SUBGROUP_COLUMNS = (
    "attribution",
    "sex",
    "age_approx",
    "anatom_site_general",
    "tbp_tile_type",
    "tbp_lv_Lext",
    "tbp_lv_Bext",
)
#: Settings of a cv without --data (the simulator), sized like the tune demo.
DEMO: dict[str, Any] = {"patients": 150, "folds": 3, "members": ("lightgbm",), "rounds": 60}
#: Patient-grouped folds with real data.
DEFAULT_FOLDS = 5
#: Bootstrap replicates of the evaluation.
DEFAULT_N_BOOT = 1000
# Optional parameters a --params file may not set (cv has no image inputs).
_IMAGE_PARAMS = ("images", "image_model")


# ------------------------------------------------------------------------ cv: inputs


def _members(text: str | None) -> tuple[str, ...] | None:
    from ..ensemble import MEMBER_KINDS

    if text is None:
        return None
    members = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in members if m not in MEMBER_KINDS]
    if not members or unknown or len(set(members)) != len(members):
        raise UsageError(
            f"--members must be a comma-separated list of distinct names from "
            f"{','.join(MEMBER_KINDS)}, got {text!r}."
        )
    return members


def _local_workers(address: str | None) -> int | None:
    """N of ``--scheduler local:N``; None for a scheduler address (or none)."""
    if address is None or not address.startswith("local:"):
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
    images = [name for name in _IMAGE_PARAMS if params.get(name) is not None]
    if images:
        raise UsageError(
            f"--params {path} sets {images}: lesionboost cv has no image inputs; use a "
            "configuration without image features."
        )
    return {k: v for k, v in params.items() if k not in _IMAGE_PARAMS}


def _configuration(args: argparse.Namespace, demo: bool) -> tuple[dict[str, Any], str]:
    """Keyword arguments of the estimator and where they came from."""
    from ..ensemble import MEMBER_KINDS

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
        for member in params.get("members", MEMBER_KINDS):
            key = f"{member}_params"
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


def _simulated(path: Path) -> bool:
    """Whether ``path`` is a file that ``lesionboost simulate`` wrote."""
    marker = read_marker(path.parent)
    return bool(
        marker
        and marker.get("written_by") == "lesionboost simulate"
        and path.name in marker["entries"]
    )


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


def _fingerprint(
    ids: list[str], splits: list[np.ndarray] | None = None, target: np.ndarray | None = None
) -> str:
    digest = hashlib.sha256("\n".join(ids).encode())
    if target is not None:
        digest.update(np.asarray(target, dtype=np.int8).tobytes())
    for split in splits or []:
        digest.update(b"\0" + np.asarray(split, dtype=np.int32).tobytes())
    return digest.hexdigest()


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
            except OSError as exc:
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


def _repeat_summary(repeat: int, seed: int, result: Any) -> dict[str, Any]:
    finite = result.fold_scores[np.isfinite(result.fold_scores)]
    return {
        "repeat": repeat,
        "seed": seed,
        "pauc": float(result.pauc),
        "fold_scores": [None if not np.isfinite(s) else float(s) for s in result.fold_scores],
        "mean_fold_score": float(finite.mean()) if finite.size else None,
        "sd_fold_score": float(finite.std(ddof=1)) if finite.size > 1 else None,
        "fit_seconds": [round(float(s), 2) for s in result.fit_seconds],
    }


def _scheme_text(scheme: dict[str, Any]) -> str:
    if scheme["cv"] == "centre":
        return f"leave-one-centre-out over {scheme['n_splits']} centres"
    repeats = scheme["n_repeats"]
    return (
        f"{scheme['n_splits']}-fold patient-grouped"
        + (f" x {repeats} repeats" if repeats > 1 else "")
        + f", seed {scheme['seed']}"
    )


def _validation_context(scheme: dict[str, Any], repeats: list[dict[str, Any]]) -> dict[str, Any]:
    if scheme["cv"] == "centre":
        description = (
            f"Leave-one-centre-out cross-validation over {scheme['n_splits']} centres: each "
            "centre's lesions are scored by a model trained on the other centres only."
        )
    else:
        seeds = scheme["seeds"]
        description = (
            f"{scheme['n_splits']}-fold patient-grouped cross-validation stratified on the "
            "label: each lesion is scored by a model that never saw its patient"
            + (
                f"; {scheme['n_repeats']} repeats with seeds {seeds[0]}-{seeds[-1]}"
                if scheme["n_repeats"] > 1
                else f" (seed {seeds[0]})"
            )
            + ". The figures are the out-of-fold scores of repeat 0."
        )
    return {
        "scheme": scheme["cv"],
        "description": description,
        "n_splits": scheme["n_splits"],
        "n_repeats": scheme["n_repeats"],
        "seed": scheme["seed"],
        "pooled_pauc_per_repeat": [round(r["pauc"], 4) for r in repeats],
    }


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
) -> Path | None:
    """The evaluation report, or None (logged) when matplotlib is missing."""
    from ..exceptions import OptionalDependencyError
    from ..report import write_evaluation_report

    try:
        return write_evaluation_report(
            evaluation, out, oof=oof, context=context, title=title, inputs=inputs
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
    check_folder_output(run_dir, written_by=WRITTEN_BY, inputs=inputs, replace=args.force)
    earlier = [n for n in RUN_ENTRIES if (run_dir / n).exists()]
    if earlier and not args.force:
        raise UsageError(
            f"{run_dir} holds an earlier cv run ({', '.join(earlier)}); pass --force to "
            "replace it, or choose another --out."
        )
    check_folder_output(
        run_dir / "report",
        written_by="lesionboost report",
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


# ------------------------------------------------------------------------ evaluate


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); rerun {what}.") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object; rerun {what}.")
    return data


def _no_malignant(target: np.ndarray, where: str) -> None:
    if int(np.nansum(target)) == 0:
        raise ValueError(
            f"{where} holds no malignant lesion ({target.size} lesions, none with target == 1); "
            "the evaluation ranks malignant against benign lesions, so evaluate lesions of "
            "both kinds."
        )


def _run_scores(run_dir: Path, repeat: int) -> tuple[pl.DataFrame, dict[str, Any], dict[str, Any]]:
    """The scored lesions of one repeat of a cv run, its cv.json and the report context."""
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"{run_dir} is not a folder; pass the --out folder of a `lesionboost cv` run."
        )
    oof_path, cv_path, folds_path = (
        run_dir / n for n in ("oof.parquet", "cv.json", "folds.parquet")
    )
    for path in (cv_path, oof_path, folds_path):
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: {run_dir} is not a finished `lesionboost cv` run. Pass "
                "the --out folder of a cv run that completed (or rerun it)."
            )
    cv = _read_json(cv_path, "lesionboost cv")
    oof = pl.read_parquet(oof_path)
    missing = [
        c for c in ("isic_id", "patient_id", "repeat", "target", "score") if c not in oof.columns
    ]
    if missing:
        raise ValueError(f"{oof_path} lacks the column(s) {missing}; rerun `lesionboost cv`.")
    available = sorted(oof.get_column("repeat").unique().to_list())
    if repeat not in available:
        raise UsageError(f"--repeat {repeat}: {run_dir} holds repeats {available}.")
    part = oof.filter(pl.col("repeat") == repeat)
    if part.get_column("isic_id").is_duplicated().any():
        raise ValueError(
            f"{oof_path} scores a lesion more than once in repeat {repeat}; the file is "
            "damaged: rerun `lesionboost cv`."
        )
    expected = cv.get("data", {}).get("n_rows")
    if part.height != expected:
        raise ValueError(
            f"{oof_path} holds {part.height} scored lesions in repeat {repeat} but {cv_path} "
            f"records {expected} (mismatched lengths); rerun `lesionboost cv`."
        )
    folds = pl.read_parquet(folds_path, columns=["isic_id", "repeat"])
    listed = folds.filter(pl.col("repeat") == repeat).get_column("isic_id")
    unknown = part.filter(~pl.col("isic_id").is_in(listed.implode())).get_column("isic_id")
    if unknown.len():
        raise ValueError(
            f"{oof_path} scores {unknown.len()} isic_id(s) that {folds_path} does not list "
            f"(unknown ids, e.g. {unknown.head(3).to_list()}); rerun `lesionboost cv`."
        )
    _no_malignant(part.get_column("target").to_numpy(), str(oof_path))
    context = json.loads(json.dumps(cv.get("report_context", {})))
    validation = context.setdefault("validation", {})
    if repeat and "description" in validation:
        validation["description"] = validation["description"].replace(
            "repeat 0", f"repeat {repeat}"
        )
    return part, cv, context


def _labelled(path: Path) -> tuple[pl.DataFrame, Path]:
    from ..io import read_metadata, resolve_metadata_path

    file = resolve_metadata_path(path, "train") if path.is_dir() else path
    frame = read_metadata(file, kind="auto")
    if "target" not in frame.columns:
        raise ValueError(
            f"--data {path} has no 'target' column: evaluate needs labelled lesions (the "
            "train-metadata.csv layout). To score unlabelled lesions use lesionboost predict."
        )
    _no_malignant(frame.get_column("target").fill_null(0).to_numpy(), f"--data {path}")
    return frame, file


def _model_scores(args: argparse.Namespace) -> tuple[pl.DataFrame, dict[str, Any]]:
    from ..persist import load_model
    from ..schema import LEAK_COLUMNS

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before the boosters load OpenMP
    model = load_model(args.model)
    frame, file = _labelled(Path(args.data))
    has_images = getattr(model, "image_state_", None) is not None
    if args.images is not None and not has_images:
        raise UsageError(f"{args.model} was trained without image features; drop --images.")
    if args.images is not None:
        model.set_params(images=str(Path(args.images).resolve()))
    elif getattr(model, "images", None) is not None:
        raise UsageError(
            "this model was trained with image features: pass --images with the HDF5 crops "
            f"of the lesions in {args.data}."
        )
    scores = model.predict_proba(frame.drop([c for c in LEAK_COLUMNS if c in frame.columns]))
    frame = frame.with_columns(pl.Series("score", np.asarray(scores)[:, 1]))
    context = {
        "data": {
            "source": str(file.resolve()),
            "simulated": _simulated(file),
        },
        "validation": {
            "scheme": "external",
            "description": (
                f"The saved model {args.model} scored the labelled lesions of {args.data}; the "
                "figures are valid for new patients only if none of them was in the training data."
            ),
        },
        "model": {"name": f"{type(model).__name__} ({args.model})"},
    }
    return frame, context


def _file_scores(args: argparse.Namespace) -> tuple[pl.DataFrame, dict[str, Any]]:
    data, path = Path(args.data), Path(args.scores)
    frame, file = _labelled(data)
    try:
        table = (
            pl.read_parquet(path)
            if path.suffix == ".parquet"
            else pl.read_csv(path, schema_overrides={"isic_id": pl.String})
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise ValueError(f"--scores {path} could not be read as a table ({exc}).") from exc
    column = next((c for c in ("score", "target") if c in table.columns), None)
    if "isic_id" not in table.columns or column is None:
        raise ValueError(
            f"--scores {path} needs the columns isic_id and score (or target, as in a Kaggle "
            f"submission); it has {table.columns[:5]}."
        )
    table = table.select(pl.col("isic_id").cast(pl.String), pl.col(column).alias("score"))
    duplicated = table.filter(pl.col("isic_id").is_duplicated()).get_column("isic_id")
    if duplicated.len():
        raise ValueError(
            f"--scores {path} scores isic_id {duplicated[0]!r} more than once; "
            "pass one score per lesion."
        )
    ids = frame.get_column("isic_id").cast(pl.String)
    unknown = table.filter(~pl.col("isic_id").is_in(ids.implode())).get_column("isic_id")
    if unknown.len():
        raise ValueError(
            f"--scores {path} holds {unknown.len()} isic_id(s) that --data {data} does not "
            f"list (unknown ids, e.g. {unknown.head(3).to_list()}); score the lesions of the "
            "labelled file."
        )
    if table.height != frame.height:
        absent = ids.filter(~ids.is_in(table.get_column("isic_id").implode()))
        raise ValueError(
            f"--scores {path} has {table.height} rows but --data {data} has {frame.height} "
            f"lesions (mismatched lengths); every labelled lesion needs one score (missing "
            f"e.g. {absent.head(3).to_list()})."
        )
    frame = frame.with_columns(pl.col("isic_id").cast(pl.String)).join(
        table, on="isic_id", how="left", maintain_order="left"
    )
    context = {
        "data": {"source": str(file.resolve()), "simulated": _simulated(file)},
        "validation": {
            "scheme": "external",
            "description": f"The scores of {path} on the labelled lesions of {data}.",
        },
        "model": {"name": f"scores from {path}"},
    }
    return frame, context


def _ci(interval: Any) -> str:
    return "n/a" if interval is None else f"{interval[0]:.4f}-{interval[1]:.4f}"


def _summary_text(evaluation: Any, heading: str) -> str:
    """A short human summary of an :class:`~lesionboost.evaluation.Evaluation`."""
    pauc_label = f"pAUC above {evaluation.min_tpr:.0%} TPR"
    lines = [
        heading,
        f"  {'lesions':<20}{evaluation.n:,} ({evaluation.n_malignant} malignant, "
        f"{evaluation.n_patients} patients)",
        f"  {pauc_label:<20}{evaluation.pauc:.4f}  95 % CI {_ci(evaluation.pauc_ci)}  "
        f"({evaluation.n_boot_used} patient-level bootstrap replicates)",
        f"  {'AUC':<20}{evaluation.auc:.4f}  95 % CI {_ci(evaluation.auc_ci)}",
        f"  {'top-15 sensitivity':<20}{evaluation.top15_sensitivity:.4f}  95 % CI "
        f"{_ci(evaluation.top15_sensitivity_ci)}",
    ]
    point = next(
        (p for p in evaluation.operating_points if abs(p["target_sensitivity"] - 0.8) < 1e-9), None
    )
    per_cancer = evaluation.lesions_per_cancer.get(0.8)
    if point is not None and per_cancer is not None:
        lines.append(
            f"  {'at 80% sensitivity':<20}{per_cancer:.1f} lesions examined per cancer "
            f"found, {point['referrals_per_1000']:.1f} referrals per 1,000 lesions"
        )
    weak = evaluation.weakest_subgroup
    lines.append(
        f"  {'weakest subgroup':<20}"
        + (
            "none flagged (no level with enough malignant lesions)"
            if weak is None
            else f"{weak['subgroup']} = {weak['level']} (pAUC {weak['pauc']:.4f}, "
            f"{weak['n_malignant']} malignant)"
        )
    )
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate

    modes = [args.run_dir is not None, args.model is not None, args.scores is not None]
    if sum(modes) != 1:
        raise UsageError(
            "evaluate one thing: a cv run folder (lesionboost evaluate RUN), a saved model "
            "(--model DIR --data LABELLED.csv) or a scores file (--scores CSV --data "
            "LABELLED.csv)."
        )
    if args.run_dir is not None and (args.data or args.images):
        raise UsageError("a run folder holds its own lesions and scores; drop --data/--images.")
    if args.run_dir is None and args.data is None:
        raise UsageError(
            f"{'--model' if args.model else '--scores'} needs --data: the "
            "labelled lesions (train-metadata.csv layout)."
        )
    if args.images is not None and args.model is None:
        raise UsageError("--images gives the crops a --model scores; it needs --model.")
    if args.repeat is not None and args.run_dir is None:
        raise UsageError("--repeat chooses a repeat of a cv run folder; it needs RUN.")
    if args.n_boot is not None and args.n_boot < 0:
        raise UsageError(f"--n-boot must be >= 0 (0: no intervals), got {args.n_boot}.")
    for option, value in (
        ("RUN", args.run_dir),
        ("--model", args.model),
        ("--data", args.data),
        ("--images", args.images),
        ("--scores", args.scores),
    ):
        if value is not None and not Path(value).exists():
            raise FileNotFoundError(f"{option} {value} does not exist.")
    report_dir: Path | None = None
    if args.report is not None:
        if args.report:
            report_dir = Path(args.report)
        elif args.run_dir is not None:
            report_dir = Path(args.run_dir) / "report"
        else:
            raise UsageError("--report needs a folder (--report DIR) with --model or --scores.")
        inputs = [
            Path(p)
            for p in (
                args.run_dir and Path(args.run_dir) / "oof.parquet",
                args.model,
                args.data,
                args.images,
                args.scores,
            )
            if p
        ]
        check_folder_output(
            report_dir,
            written_by="lesionboost report",
            option="--report",
            replace=True,
            inputs=inputs,
        )
    n_boot, seed = args.n_boot, args.seed
    if args.run_dir is not None:
        run_dir = Path(args.run_dir)
        repeat = args.repeat or 0
        frame, cv, context = _run_scores(run_dir, repeat)
        recorded = cv.get("evaluation", {})
        n_boot = n_boot if n_boot is not None else recorded.get("n_boot", DEFAULT_N_BOOT)
        seed = seed if seed is not None else recorded.get("seed", 0)
        heading = f"evaluation of {run_dir} (repeat {repeat}, {_scheme_text(cv['scheme'])})"
        source: dict[str, Any] = {"run_dir": str(run_dir), "repeat": repeat}
    elif args.model is not None:
        frame, context = _model_scores(args)
        heading = f"evaluation of the model {args.model} on {args.data}"
        source = {"model": str(args.model), "data": str(args.data)}
    else:
        frame, context = _file_scores(args)
        heading = f"evaluation of the scores {args.scores} on {args.data}"
        source = {"scores": str(args.scores), "data": str(args.data)}
    n_boot = DEFAULT_N_BOOT if n_boot is None else n_boot
    seed = 0 if seed is None else seed
    target = frame.get_column("target").to_numpy()
    evaluation = evaluate(
        target, frame.get_column("score").to_numpy(), frame, n_boot=int(n_boot), seed=int(seed)
    )
    result = {**evaluation.to_dict(), "source": source}
    if report_dir is not None:
        from ..report import write_evaluation_report

        keep = [c for c in ("target", "score", "attribution") if c in frame.columns]
        title = (
            f"lesionboost cv: {Path(args.run_dir).resolve().name}"
            if args.run_dir
            else "lesionboost evaluation"
        )
        write_evaluation_report(
            evaluation, report_dir, oof=frame.select(keep), context=context, title=title
        )
        result["report"] = str(report_dir / "index.html")
    text = _summary_text(evaluation, heading)
    if report_dir is not None:
        text += f"\n  {'report':<20}{report_dir / 'index.html'}"
    emit(args, result, text)
    return EXIT_OK


# ------------------------------------------------------------------------ compare


def _compare_side(path: Path) -> tuple[dict[str, Any], pl.DataFrame]:
    cv_path = path / "cv.json"
    if not cv_path.exists():
        raise FileNotFoundError(
            f"{cv_path} does not exist: {path} is not a finished `lesionboost cv` run; compare "
            "takes two cv run folders."
        )
    cv = _read_json(cv_path, "lesionboost cv")
    folds_path = path / "folds.parquet"
    if not folds_path.exists():
        raise FileNotFoundError(f"{folds_path} does not exist; rerun `lesionboost cv`.")
    return cv, pl.read_parquet(folds_path, columns=["isic_id", "repeat", "fold"])


def _describe(cv: dict[str, Any]) -> str:
    scheme = cv.get("scheme", {})
    if scheme.get("cv") == "centre":
        return f"leave-one-centre-out, {scheme.get('n_splits')} centres"
    return (
        f"patient CV, {scheme.get('n_splits')} folds x {scheme.get('n_repeats')} "
        f"repeat(s), seed {scheme.get('seed')}"
    )


def _values(values: list[float]) -> str:
    return ", ".join(f"{v:.4f}" for v in values)


def run_compare(args: argparse.Namespace) -> int:
    from scipy.stats import wilcoxon

    path_a, path_b = Path(args.run_a), Path(args.run_b)
    for path in (path_a, path_b):
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is not a folder; pass two `lesionboost cv` runs.")
    if path_a.resolve() == path_b.resolve():
        raise UsageError(
            f"compare needs two different runs; both arguments name {path_a.resolve()}."
        )
    (cv_a, folds_a), (cv_b, folds_b) = _compare_side(path_a), _compare_side(path_b)
    if cv_a.get("lesions_fingerprint") != cv_b.get("lesions_fingerprint"):
        raise ValueError(
            f"{path_a} and {path_b} were cross-validated on different lesions or labels "
            f"({cv_a.get('data', {}).get('source')} vs {cv_b.get('data', {}).get('source')}); "
            "a paired comparison needs the same data and folds."
        )
    if cv_a.get("fingerprint") != cv_b.get("fingerprint") or not folds_a.equals(folds_b):
        raise ValueError(
            f"{path_a} and {path_b} were cross-validated on different folds ({_describe(cv_a)} "
            f"vs {_describe(cv_b)}); a paired comparison needs the same folds: rerun one with "
            "the other's --cv, --folds, --repeats and --seed."
        )
    pairs = []
    for rep_a, rep_b in zip(cv_a["repeats"], cv_b["repeats"], strict=True):
        for fold, (a, b) in enumerate(zip(rep_a["fold_scores"], rep_b["fold_scores"], strict=True)):
            if a is not None and b is not None:
                pairs.append(
                    {"repeat": rep_a["repeat"], "fold": fold, "a": a, "b": b, "difference": a - b}
                )
    if not pairs:
        raise ValueError("no fold has a pAUC in both runs (every fold lacks a malignant lesion).")
    diff = np.array([p["difference"] for p in pairs])
    nonzero = int(np.count_nonzero(diff))
    if nonzero == 0:
        statistic, p_value = 0.0, 1.0
    else:
        test = wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
        statistic, p_value = float(test.statistic), float(test.pvalue)
    mean = float(diff.mean())
    better = "A" if mean > 0 else "B" if mean < 0 else "neither"
    signs = {
        "a_better": int((diff > 0).sum()),
        "b_better": int((diff < 0).sum()),
        "ties": int((diff == 0).sum()),
    }
    smallest = 2.0 / 2**nonzero if nonzero else 1.0  # the exact two-sided test's floor
    summary: dict[str, Any] = {
        "run_a": str(path_a),
        "run_b": str(path_b),
        "scheme": _describe(cv_a),
        "n_pairs": len(pairs),
        "pairs": pairs,
        "mean_fold_pauc_a": float(np.mean([p["a"] for p in pairs])),
        "mean_fold_pauc_b": float(np.mean([p["b"] for p in pairs])),
        "pooled_pauc_a": [r["pauc"] for r in cv_a["repeats"]],
        "pooled_pauc_b": [r["pauc"] for r in cv_b["repeats"]],
        "mean_difference": mean,
        "sd_difference": float(diff.std(ddof=1)) if diff.size > 1 else None,
        "signs": signs,
        "wilcoxon": {
            "statistic": statistic,
            "p_value": p_value,
            "n_nonzero": nonzero,
            "alternative": "two-sided",
            "smallest_possible_p": min(1.0, smallest),
        },
        "better": better,
        "significant_at_0.05": p_value < 0.05,
    }
    verdict = (
        "neither: the fold pAUCs are identical"
        if better == "neither"
        else f"{better} by the mean difference ("
        f"{'significant' if p_value < 0.05 else 'not significant'} at the 5 % level)"
    )
    text = "\n".join(
        [
            f"A = {path_a}\nB = {path_b}",
            f"  paired folds        {len(pairs)} ({_describe(cv_a)})",
            f"  mean fold pAUC      A {summary['mean_fold_pauc_a']:.4f}   B "
            f"{summary['mean_fold_pauc_b']:.4f}",
            f"  pooled OOF pAUC     A {_values(summary['pooled_pauc_a'])}   B "
            f"{_values(summary['pooled_pauc_b'])} (per repeat)",
            f"  difference A - B    mean {mean:+.4f}"
            + (
                f" (SD {summary['sd_difference']:.4f})"
                if summary["sd_difference"] is not None
                else ""
            ),
            f"  signs               A better in {signs['a_better']} fold(s), B in "
            f"{signs['b_better']}, tied in {signs['ties']}",
            f"  Wilcoxon signed-rank p = {p_value:.4f} (two-sided, {nonzero} non-zero pair(s); "
            f"the smallest p possible is {min(1.0, smallest):.4f})",
            f"  better              {verdict}",
        ]
    )
    emit(args, summary, text)
    return EXIT_OK

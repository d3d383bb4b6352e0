"""Quality and speed of the default LesionBoostClassifier against baselines and the oracles.

For each simulator seed (full size: 1,042 patients, ~401k lesions) it reports
the patient-grouped 5-fold out-of-fold pAUC above 80 % TPR and the wall time of
the 5-fold run of:

- ``LightGBM (raw columns)``: the ensemble's LightGBM member alone (one bag,
  default parameters and downsampling) on the 34 raw numeric and 6 categorical
  columns -- no engineered or patient-relative features;
- ``HistGradientBoosting (raw columns)``: scikit-learn's
  ``HistGradientBoostingClassifier`` (200 iterations, native categoricals) on
  the same columns;
- ``LesionBoostClassifier (defaults)``: features + ensemble, tabular only;
- ``tabular oracle`` / ``full oracle``: the simulator's ``tabular_logit`` and
  ``logit`` scored directly (the best any metadata model / any model can do).

Then the same rows, oracles aside, on the real 3,449-row sample of the Kaggle
ISIC 2024 training file (``train-metadata-sample.csv`` in ``$LESIONBOOST_SHARED``;
every malignant lesion of a public extract plus a random draw of benign ones, so
per-patient lesion counts leak the label there and the default model runs without
its ``counts`` features), and the time to predict 500,000 lesions (features +
ensemble) with a model fitted on one full simulation.

Targets: the default model closes >= 90 % of the gap between raw-column LightGBM
and the tabular oracle; a default 5-fold run takes <= 180 s and predicting 500k
lesions <= 20 s on 2 cores.

Usage::

    python benchmarks/quality.py [--seeds 3] [--skip-real] [--out FILE.json]
    python benchmarks/quality.py --small      # seconds; what the test suite runs

A full run writes ``benchmarks/results/quality.json`` (tables ``quality/headline``,
``quality/models`` and ``quality/gap``). ``--small`` uses 20 patients, 3 folds,
small boosters and 20k prediction rows: it checks that the benchmark runs, not
the targets. ``--real-only`` scores the real sample alone and writes only where
``--out`` says.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier

import lesionboost as lb
from _common import NA, SHARED, Table, fmt, parser, write_results
from lesionboost.ensemble import GBDTEnsembleClassifier
from lesionboost.schema import CATEGORICAL_COLUMNS, CATEGORY_LEVELS, LEAK_COLUMNS, NUMERIC_COLUMNS

TARGETS = {"gap_closed": 0.90, "cv_seconds": 180.0, "predict_500k_seconds": 20.0}
RAW_COLUMNS = (*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS)
CAT_INDEX = [RAW_COLUMNS.index(c) for c in CATEGORICAL_COLUMNS]
#: The estimator's default feature groups without the counts, for the real sample.
NO_COUNTS = tuple(g for g in lb.LesionBoostClassifier().feature_groups if g != "counts")
RAW, OURS = "LightGBM (raw columns)", "LesionBoostClassifier (defaults)"
#: How the rows of the report are named in the tables.
LABELS = {
    RAW: "LightGBM (raw columns)",
    "HistGradientBoosting (raw columns)": "HistGradientBoosting (raw columns)",
    OURS: "`LesionBoostClassifier()` (defaults; real sample without the leaking counts)",
    "tabular oracle": "tabular oracle",
    "full oracle": "full oracle",
}


def _as_polars(X: Any) -> pl.DataFrame:
    """``X`` as a polars DataFrame (polars as it is, a lazy frame collected, pandas converted)."""
    if isinstance(X, pl.DataFrame):
        return X
    if isinstance(X, pl.LazyFrame):
        return X.collect()
    return pl.from_pandas(X)


def raw_matrix(X: Any) -> np.ndarray:
    """Raw SLICE-3D columns as float32; categories as fixed codes (0..k-1, k = unseen)."""
    frame = _as_polars(X)
    exprs = [pl.col(c).cast(pl.Float32) for c in NUMERIC_COLUMNS]
    for name in CATEGORICAL_COLUMNS:
        levels = {level: float(i) for i, level in enumerate(CATEGORY_LEVELS[name])}
        exprs.append(
            pl.col(name)
            .cast(pl.String)
            .replace_strict(levels, default=float(len(levels)), return_dtype=pl.Float32)
        )
    return frame.select(exprs).to_numpy()


class RawColumns(ClassifierMixin, BaseEstimator):
    """A classifier fitted on the raw columns of SLICE-3D metadata (the baselines)."""

    def __init__(self, estimator: Any = None) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any) -> RawColumns:
        self.estimator_ = clone(self.estimator).fit(raw_matrix(X), np.asarray(y))
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.estimator_.predict_proba(raw_matrix(X))


def models(small: bool, *, real: bool = False) -> dict[str, Callable[[], Any]]:
    """Name -> factory of the fitted-per-fold models.

    On the real sample (``real=True``) the estimator leaves out the ``counts``
    features: the sample keeps every malignant lesion of its patients and few
    benign ones, so lesion counts there encode the label.
    """
    rounds = 20 if small else None
    lgb_params = {"n_estimators": rounds} if small else None
    hgb_iter = 20 if small else 200
    tiny = {}
    if small:  # same code paths, toy sizes
        tiny = {
            "n_bags": 1,
            "lightgbm_params": {"n_estimators": rounds},
            "xgboost_params": {"n_estimators": rounds},
            "catboost_params": {
                "n_estimators": rounds,
                "depth": 4,
                "border_count": 16,
                "max_ctr_complexity": 1,
            },
        }
    return {
        RAW: lambda: RawColumns(
            GBDTEnsembleClassifier(
                members=("lightgbm",),
                n_bags=1,
                lightgbm_params=lgb_params,
                categorical_features=CAT_INDEX,
            )
        ),
        "HistGradientBoosting (raw columns)": lambda: RawColumns(
            HistGradientBoostingClassifier(
                max_iter=hgb_iter,
                learning_rate=0.05,
                categorical_features=CAT_INDEX,
                early_stopping=False,
                random_state=0,
            )
        ),
        OURS: lambda: lb.LesionBoostClassifier(
            **tiny, **({"feature_groups": NO_COUNTS} if real else {})
        ),
    }


def evaluate(
    frame: pl.DataFrame, n_splits: int, small: bool, *, real: bool = False
) -> dict[str, dict[str, Any]]:
    """OOF pAUC, fold scores and timings of every model on one data set."""
    folds = lb.patient_folds(frame, n_splits=n_splits, seed=0)
    out = {}
    for name, make in models(small, real=real).items():
        start, cpu = time.perf_counter(), time.process_time()
        result = lb.cross_val_oof(make(), frame, folds, progress=False)
        out[name] = {
            "pauc": result.pauc,
            "fold_scores": result.to_dict()["fold_scores"],
            "wall_seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu,
            "load_average": os.getloadavg()[0],
        }
        print(
            f"  {name:38s} pAUC {result.pauc:.4f}  {out[name]['wall_seconds']:7.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return out


def predict_timing(n_rows: int, n_patients: int, small: bool) -> dict[str, Any]:
    """Fit the default model on one simulation; time predicting ``n_rows`` new lesions."""
    sim = lb.simulate_slice3d(n_patients, seed=0)
    X, y = lb.split_xy(sim.train)
    model = models(small)[OURS]()
    start = time.perf_counter()
    model.fit(X, y)
    fit_seconds = time.perf_counter() - start
    pool, seed = [], 1000
    while sum(f.height for f in pool) < n_rows:  # whole new patients until n_rows
        pool.append(lb.simulate_slice3d(max(20, n_patients), seed=seed).train)
        seed += 1
    new = pl.concat(pool).drop([c for c in LEAK_COLUMNS if c in pool[0].columns]).head(n_rows)
    start, cpu = time.perf_counter(), time.process_time()
    scores = model.predict_proba(new)[:, 1]
    seconds = time.perf_counter() - start
    assert scores.shape == (n_rows,) and np.isfinite(scores).all()
    return {
        "rows": n_rows,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "rows_per_second": n_rows / seconds,
        "fit_seconds_full_data": fit_seconds,
        "fit_rows": sim.train.height,
        "load_average": os.getloadavg()[0],
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model: pAUC per seed, mean, SD and wall times; the share of the gap closed."""
    names = runs[0]["models"].keys()
    table: dict[str, Any] = {}
    for name in [*names, "tabular oracle", "full oracle"]:
        values = [
            r["models"][name]["pauc"] if name in r["models"] else r["oracles"][name] for r in runs
        ]
        walls = [r["models"][name]["wall_seconds"] for r in runs if name in r["models"]]
        table[name] = {
            "pauc": values,
            "mean": float(np.mean(values)),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "wall_seconds": walls,
        }
    table["gap_closed"] = gap_closed(runs, OURS)
    return table


def gap_closed(runs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Share of the gap between raw-column LightGBM and the tabular oracle that ``name`` closes."""
    closed = [
        (r["models"][name]["pauc"] - r["models"][RAW]["pauc"])
        / (r["oracles"]["tabular oracle"] - r["models"][RAW]["pauc"])
        for r in runs
    ]
    return {"per_seed": closed, "mean": float(np.mean(closed))}


def _pct(share: float | None) -> str:
    return fmt(None if share is None else 100 * share, ".0f", " %")


def _mean_sd(row: dict[str, Any]) -> str:
    return f"{row['mean']:.4f} ± {row['sd']:.4f}"


def tables(
    runs: list[dict[str, Any]],
    summary: dict[str, Any],
    real: dict[str, Any] | None,
    predict: dict[str, Any],
    *,
    n_patients: int,
    n_splits: int,
    small: bool,
) -> list[Table]:
    """``quality/headline``, ``quality/models`` and ``quality/gap`` from one run's figures."""
    n_seeds = len(runs)
    plural = "s" if n_seeds > 1 else ""
    seeds_text = "seed 0" if n_seeds == 1 else f"seeds 0-{n_seeds - 1}"
    rows = sum(r["rows"] for r in runs) / n_seeds
    positives = sum(r["positives"] for r in runs) / n_seeds
    where = (
        f"{n_patients:,} simulated patients (~{rows:,.0f} lesions, ~{positives:.0f} malignant), "
        f"{seeds_text}; patient-grouped {n_splits}-fold out-of-fold pAUC above 80 % TPR; "
        f"{os.cpu_count()} CPUs."
    )
    if small:
        where += " A --small run: it checks that the script works, not its figures."
    ours, gap = summary[OURS], summary["gap_closed"]
    walls = ours["wall_seconds"]
    real_ours = (real or {}).get(OURS)
    per_500k = predict["seconds"] * 500_000 / predict["rows"]
    predict_cell = (
        f"{predict['seconds']:.1f} s"
        if predict["rows"] == 500_000
        else f"{predict['seconds']:.2f} s for {predict['rows']:,} lesions "
        f"({per_500k:.1f} s per 500k)"
    )

    def verdict(met: bool) -> str:
        return "" if met else " (not met)"

    headline = Table(
        "quality/headline",
        ["what", "target", "measured"],
        [
            [
                f"default model, simulator, {n_seeds} seed{plural}: OOF pAUC",
                NA,
                f"{_mean_sd(ours)} (raw LightGBM {summary[RAW]['mean']:.4f}, "
                f"tabular oracle {summary['tabular oracle']['mean']:.4f})",
            ],
            [
                "share of the raw-LightGBM → tabular-oracle gap closed",
                f">= {_pct(TARGETS['gap_closed'])}",
                _pct(gap["mean"]) + verdict(gap["mean"] >= TARGETS["gap_closed"]),
            ],
            [
                "default model, real sample: OOF pAUC",
                NA,
                fmt(real_ours["pauc"]) if real_ours else NA,
            ],
            [
                f"default {n_splits}-fold run, {n_patients:,} patients",
                f"<= {TARGETS['cv_seconds']:.0f} s",
                f"{np.mean(walls):.0f} s (mean of {n_seeds} seeds; max {max(walls):.0f} s)"
                + verdict(max(walls) <= TARGETS["cv_seconds"]),
            ],
            [
                "predict 500k lesions (features + ensemble)",
                f"<= {TARGETS['predict_500k_seconds']:.0f} s",
                predict_cell + verdict(per_500k <= TARGETS["predict_500k_seconds"]),
            ],
        ],
        note=where,
    )
    model_rows = []
    for name, label in LABELS.items():
        row, real_row = summary[name], (real or {}).get(name)
        model_rows.append(
            [
                label,
                _mean_sd(row),
                fmt(np.mean(row["wall_seconds"]) if row["wall_seconds"] else None, ".1f"),
                fmt(real_row["pauc"]) if real_row else NA,
                fmt(real_row["wall_seconds"], ".1f") if real_row else NA,
            ]
        )
    real_note = (
        "The real sample is 3,449 rows of the Kaggle training file of 614 patients "
        f"(patient-grouped {n_splits}-fold)."
        if real
        else "The real sample was not scored (not found, or --skip-real)."
    )
    models_table = Table(
        "quality/models",
        [
            "model",
            f"simulator, {n_seeds} seed{plural} (mean ± sd)",
            f"{n_splits}-fold wall s",
            "real sample",
            f"real {n_splits}-fold wall s",
        ],
        model_rows,
        note=f"{where} {real_note}",
    )
    gap_rows = []
    for name in LABELS:
        if name in (RAW, "tabular oracle", "full oracle"):
            continue
        share = gap if name == OURS else gap_closed(runs, name)
        label = LABELS[name].split(" (defaults;")[0] + (" (defaults)" if name == OURS else "")
        gap_rows.append(
            [label, _pct(share["mean"]), " / ".join(_pct(v) for v in share["per_seed"])]
        )
    gap_table = Table(
        "quality/gap",
        ["model", "gap closed (mean)", "per seed"],
        gap_rows,
        note=f"(model - raw LightGBM) / (tabular oracle - raw LightGBM), per seed. {where}",
    )
    return [headline, models_table, gap_table]


def print_table(
    summary: dict[str, Any], real: dict[str, Any] | None, predict: dict[str, Any], n_seeds: int
) -> None:
    print(
        f"\n| model | simulated pAUC ({n_seeds} seeds, mean ± sd) | 5-fold wall s (mean) "
        "| real sample pAUC | real 5-fold wall s |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, row in summary.items():
        if name == "gap_closed":
            continue
        wall = f"{np.mean(row['wall_seconds']):.1f}" if row["wall_seconds"] else "-"
        real_row = (real or {}).get(name)
        real_text = (
            f"{real_row['pauc']:.4f} | {real_row['wall_seconds']:.1f}" if real_row else "- | -"
        )
        print(f"| {name} | {row['mean']:.4f} ± {row['sd']:.4f} | {wall} | {real_text} |")
    gap = summary["gap_closed"]
    print(
        f"\ngap closed (raw LightGBM -> tabular oracle): {gap['mean']:.1%} "
        f"(per seed: {', '.join(f'{v:.1%}' for v in gap['per_seed'])}; "
        f"target >= {TARGETS['gap_closed']:.0%})"
    )
    print(
        f"predict {predict['rows']:,} rows (features + ensemble): {predict['seconds']:.1f} s "
        f"({predict['rows_per_second']:,.0f} rows/s; target <= "
        f"{TARGETS['predict_500k_seconds']:.0f} s for 500k); final fit on "
        f"{predict['fit_rows']:,} rows: {predict['fit_seconds_full_data']:.1f} s"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__.splitlines()[0], name="quality")
    cli.add_argument("--seeds", type=int, default=3, help="simulator seeds")
    cli.add_argument("--skip-real", action="store_true", help="skip the real sample")
    cli.add_argument(
        "--real-only",
        action="store_true",
        help="only the real-sample rows (no simulator seeds, no predict timing, no tables); "
        "writes only where --out says",
    )
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = cli.parse_args(arguments)
    warnings.simplefilter("ignore", lb.DataWarning)
    n_patients, n_splits = (20, 3) if args.small else (1042, 5)
    predict_rows = 20_000 if args.small else 500_000

    sample = SHARED / "train-metadata-sample.csv"
    if args.real_only:
        if not sample.exists():
            cli.error(f"--real-only needs the real sample at {sample}")
        real = evaluate(lb.read_metadata(sample), n_splits, args.small, real=True)
        for name, row in real.items():
            print(f"| {name} | real sample {row['pauc']:.4f} | {row['wall_seconds']:.1f} s |")
        explicit = any(a == "--out" or a.startswith("--out=") for a in arguments)
        write_results(
            args.out if explicit else None, {"benchmark": "quality", "real_sample": real}, []
        )
        return {"real_sample": real}

    runs = []
    for seed in range(args.seeds):
        sim = lb.simulate_slice3d(n_patients, seed=seed)
        frame, oracle = sim.train, sim.train_oracle
        y = frame["target"].to_numpy()
        print(
            f"seed {seed}: {frame.height:,} lesions, {int(y.sum())} malignant",
            file=sys.stderr,
            flush=True,
        )
        runs.append(
            {
                "seed": seed,
                "rows": frame.height,
                "positives": int(y.sum()),
                "models": evaluate(frame, n_splits, args.small),
                "oracles": {
                    "tabular oracle": lb.pauc_above_tpr(y, oracle["tabular_logit"]),
                    "full oracle": lb.pauc_above_tpr(y, oracle["logit"]),
                },
            }
        )
    summary = summarise(runs)

    real = None
    if not args.skip_real and sample.exists():
        print("real sample:", file=sys.stderr, flush=True)
        real = evaluate(lb.read_metadata(sample), n_splits, args.small, real=True)
    predict = predict_timing(predict_rows, n_patients, args.small)

    lesionboost_walls = summary[OURS]["wall_seconds"]
    results = {
        "benchmark": "quality",
        "small": args.small,
        "n_patients": n_patients,
        "n_splits": n_splits,
        "seeds": args.seeds,
        "runs": runs,
        "summary": summary,
        "real_sample": real,
        "predict": predict,
        "targets": TARGETS,
        "met": {
            "gap_closed": summary["gap_closed"]["mean"] >= TARGETS["gap_closed"],
            "cv_seconds": max(lesionboost_walls) <= TARGETS["cv_seconds"],
            "predict_500k_seconds": predict["seconds"] * 500_000 / predict["rows"]
            <= TARGETS["predict_500k_seconds"],
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
    print_table(summary, real, predict, args.seeds)
    made = tables(
        runs,
        summary,
        real,
        predict,
        n_patients=n_patients,
        n_splits=n_splits,
        small=args.small,
    )
    written = write_results(args.out, results, made)
    if written is not None:
        print(f"wrote {written}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()

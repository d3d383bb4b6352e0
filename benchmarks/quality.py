"""Quality and speed of the default LesionBoostClassifier against baselines and the oracle.

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

Then the same rows, oracles aside, on the real 3,449-row sample
(``train-metadata-sample.csv``; positive-enriched, see FACTS.md), and the time
to predict 500,000 lesions (features + ensemble) with a model fitted on one
full simulation. Targets: the default model closes >= 90 % of the gap between
raw-column LightGBM and the tabular oracle; a default 5-fold run takes <= 180 s
and predicting 500k rows <= 20 s on 2 cores.

Usage::

    flock /tmp/lesionboost-heavy.lock python benchmarks/quality.py [--seeds 3] [--out quality.json]
    python benchmarks/quality.py --small      # seconds; what the test suite runs

``--small`` uses 20 patients, 3 folds, small boosters and 20k prediction rows:
it checks that the benchmark runs, not the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier

import lesionboost as lb
from lesionboost._frame import to_polars
from lesionboost.ensemble import GBDTEnsembleClassifier
from lesionboost.schema import CATEGORICAL_COLUMNS, CATEGORY_LEVELS, LEAK_COLUMNS, NUMERIC_COLUMNS

SHARED = Path(os.environ.get("LESIONBOOST_SHARED",
                             Path(__file__).resolve().parents[2] / "shared" / "slice3d"))
TARGETS = {"gap_closed": 0.90, "cv_seconds": 180.0, "predict_500k_seconds": 20.0}
RAW_COLUMNS = (*NUMERIC_COLUMNS, *CATEGORICAL_COLUMNS)
CAT_INDEX = [RAW_COLUMNS.index(c) for c in CATEGORICAL_COLUMNS]
#: The estimator's default feature groups without the counts, for the real sample.
NO_COUNTS = tuple(g for g in lb.LesionBoostClassifier().feature_groups if g != "counts")


def raw_matrix(X: Any) -> np.ndarray:
    """Raw SLICE-3D columns as float32; categories as fixed codes (0..k-1, k = unseen)."""
    frame = to_polars(X)
    exprs = [pl.col(c).cast(pl.Float32) for c in NUMERIC_COLUMNS]
    for name in CATEGORICAL_COLUMNS:
        levels = {level: float(i) for i, level in enumerate(CATEGORY_LEVELS[name])}
        exprs.append(pl.col(name).cast(pl.String)
                     .replace_strict(levels, default=float(len(levels)), return_dtype=pl.Float32))
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
    benign ones, so lesion counts there encode the label (FACTS.md).
    """
    rounds = 20 if small else None
    lgb_params = {"n_estimators": rounds} if small else None
    hgb_iter = 20 if small else 200
    tiny = {}
    if small:  # same code paths, toy sizes
        tiny = {"n_bags": 1, "lightgbm_params": {"n_estimators": rounds},
                "xgboost_params": {"n_estimators": rounds},
                "catboost_params": {"n_estimators": rounds, "depth": 4, "border_count": 16,
                                    "max_ctr_complexity": 1}}
    return {
        "LightGBM (raw columns)": lambda: RawColumns(GBDTEnsembleClassifier(
            members=("lightgbm",), n_bags=1, lightgbm_params=lgb_params,
            categorical_features=CAT_INDEX)),
        "HistGradientBoosting (raw columns)": lambda: RawColumns(HistGradientBoostingClassifier(
            max_iter=hgb_iter, learning_rate=0.05, categorical_features=CAT_INDEX,
            early_stopping=False, random_state=0)),
        "LesionBoostClassifier (defaults)": lambda: lb.LesionBoostClassifier(
            **tiny, **({"feature_groups": NO_COUNTS} if real else {})),
    }


def evaluate(
    frame: pl.DataFrame, n_splits: int, small: bool, *, real: bool = False
) -> dict[str, dict[str, Any]]:
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
        print(f"  {name:38s} pAUC {result.pauc:.4f}  {out[name]['wall_seconds']:7.1f} s",
              file=sys.stderr, flush=True)
    return out


def predict_timing(n_rows: int, n_patients: int, small: bool) -> dict[str, Any]:
    """Fit the default model on one simulation; time predicting ``n_rows`` new lesions."""
    sim = lb.simulate_slice3d(n_patients, seed=0)
    X, y = lb.split_xy(sim.train)
    model = models(small)["LesionBoostClassifier (defaults)"]()
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
    return {"rows": n_rows, "seconds": seconds, "cpu_seconds": time.process_time() - cpu,
            "rows_per_second": n_rows / seconds, "fit_seconds_full_data": fit_seconds,
            "fit_rows": sim.train.height, "load_average": os.getloadavg()[0]}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    names = runs[0]["models"].keys()
    table: dict[str, Any] = {}
    for name in [*names, "tabular oracle", "full oracle"]:
        values = [r["models"][name]["pauc"] if name in r["models"] else r["oracles"][name]
                  for r in runs]
        walls = [r["models"][name]["wall_seconds"] for r in runs if name in r["models"]]
        table[name] = {"pauc": values, "mean": float(np.mean(values)),
                       "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                       "wall_seconds": walls}
    raw, ours = "LightGBM (raw columns)", "LesionBoostClassifier (defaults)"
    closed = [
        (r["models"][ours]["pauc"] - r["models"][raw]["pauc"])
        / (r["oracles"]["tabular oracle"] - r["models"][raw]["pauc"])
        for r in runs
    ]
    table["gap_closed"] = {"per_seed": closed, "mean": float(np.mean(closed))}
    return table


def print_table(summary: dict[str, Any], real: dict[str, Any] | None,
                predict: dict[str, Any], n_seeds: int) -> None:
    print(f"\n| model | simulated pAUC ({n_seeds} seeds, mean ± sd) | 5-fold wall s (mean) "
          "| real sample pAUC | real 5-fold wall s |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in summary.items():
        if name == "gap_closed":
            continue
        wall = f"{np.mean(row['wall_seconds']):.1f}" if row["wall_seconds"] else "-"
        real_row = (real or {}).get(name)
        real_text = (f"{real_row['pauc']:.4f} | {real_row['wall_seconds']:.1f}"
                     if real_row else "- | -")
        print(f"| {name} | {row['mean']:.4f} ± {row['sd']:.4f} | {wall} | {real_text} |")
    gap = summary["gap_closed"]
    print(f"\ngap closed (raw LightGBM -> tabular oracle): {gap['mean']:.1%} "
          f"(per seed: {', '.join(f'{v:.1%}' for v in gap['per_seed'])}; "
          f"target >= {TARGETS['gap_closed']:.0%})")
    print(f"predict {predict['rows']:,} rows (features + ensemble): {predict['seconds']:.1f} s "
          f"({predict['rows_per_second']:,.0f} rows/s; target <= "
          f"{TARGETS['predict_500k_seconds']:.0f} s for 500k); final fit on "
          f"{predict['fit_rows']:,} rows: {predict['fit_seconds_full_data']:.1f} s")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--seeds", type=int, default=3, help="simulator seeds (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--skip-real", action="store_true", help="skip the real sample")
    parser.add_argument("--real-only", action="store_true",
                        help="only the real-sample rows (no simulator seeds, no predict timing)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", lb.DataWarning)
    n_patients, n_splits = (20, 3) if args.small else (1042, 5)
    predict_rows = 20_000 if args.small else 500_000

    sample = SHARED / "train-metadata-sample.csv"
    if args.real_only:
        if not sample.exists():
            parser.error(f"--real-only needs the real sample at {sample}")
        real = evaluate(lb.read_metadata(sample), n_splits, args.small, real=True)
        for name, row in real.items():
            print(f"| {name} | real sample {row['pauc']:.4f} | {row['wall_seconds']:.1f} s |")
        if args.out is not None:
            args.out.write_text(json.dumps({"benchmark": "quality", "real_sample": real}, indent=1))
        return {"real_sample": real}

    runs = []
    for seed in range(args.seeds):
        sim = lb.simulate_slice3d(n_patients, seed=seed)
        frame, oracle = sim.train, sim.train_oracle
        y = frame["target"].to_numpy()
        print(f"seed {seed}: {frame.height:,} lesions, {int(y.sum())} malignant",
              file=sys.stderr, flush=True)
        runs.append({
            "seed": seed, "rows": frame.height, "positives": int(y.sum()),
            "models": evaluate(frame, n_splits, args.small),
            "oracles": {"tabular oracle": lb.pauc_above_tpr(y, oracle["tabular_logit"]),
                        "full oracle": lb.pauc_above_tpr(y, oracle["logit"])},
        })
    summary = summarise(runs)

    real = None
    if not args.skip_real and sample.exists():
        print("real sample:", file=sys.stderr, flush=True)
        real = evaluate(lb.read_metadata(sample), n_splits, args.small, real=True)
    predict = predict_timing(predict_rows, n_patients, args.small)

    lesionboost_walls = summary["LesionBoostClassifier (defaults)"]["wall_seconds"]
    results = {
        "benchmark": "quality", "small": args.small, "n_patients": n_patients,
        "n_splits": n_splits, "seeds": args.seeds, "runs": runs, "summary": summary,
        "real_sample": real, "predict": predict, "targets": TARGETS,
        "met": {
            "gap_closed": summary["gap_closed"]["mean"] >= TARGETS["gap_closed"],
            "cv_seconds": max(lesionboost_walls) <= TARGETS["cv_seconds"],
            "predict_500k_seconds": predict["seconds"] * 500_000 / predict["rows"]
            <= TARGETS["predict_500k_seconds"],
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    print_table(summary, real, predict, args.seeds)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
        print(f"wrote {args.out}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()

"""What each LesionFeaturizer group is worth: patient-grouped out-of-fold pAUC.

For every feature configuration, a default LightGBM (``LGBMClassifier()``, only
``verbose=-1`` and the seed set; categorical codes declared categorical) is
cross-fitted on 5 patient-grouped folds (:func:`lesionboost.patient_folds`) and the
out-of-fold scores are scored with the official pAUC above 80 % TPR.

* Simulator (3 seeds, full size by default): every configuration of the tables
  below; training folds keep every positive and ``--neg-per-pos`` negatives per
  positive (default 50, i.e. 2 % of the negatives; the public recipe keeps 1:100,
  halved here to keep ~200 LightGBM fits on ~700 features affordable on 2 cores;
  validation folds are never touched).
* Real sample ``train-metadata-sample.csv`` (3,449 rows, 614 patients): the same
  configurations without the ``counts`` group, which leaks there (patients with a
  malignant lesion have more rows in the sample); no undersampling; 3 fold seeds.

Configurations: groups added one at a time (cumulative) and each group left out
of the full set -- these rows rank every column (``rank_columns="all"``, the full
public lineage) -- then the full set with ranks for the raw columns only, the 16
key columns only, or none (the library default), and the outlier score computed
as a per-patient LocalOutlierFactor instead of the distance to the patient mean
(``outlier_lof``). The outlier section also times the two outlier scores on the
whole cohort.

The outlier score's recipe (a per-patient LocalOutlierFactor) and the ranked and
region statistics are those of the public solution write-ups of the Kaggle ISIC 2024
competition (1st place and the public tabular notebooks).

Usage::

    python benchmarks/ablation.py [--seeds 0 1 2] [--patients N] [--neg-per-pos K]
                                  [--sample PATH] [--out FILE.json]
    python benchmarks/ablation.py --small     # what the test suite runs

A full run writes ``benchmarks/results/ablation.json`` (tables ``ablation/groups`` and
``ablation/outlier``). ``--small``: 80 simulated patients, one seed, 3 configurations,
20 trees.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from _common import NA, SHARED, Table, parser, write_results
from lesionboost import (
    DataWarning,
    LesionFeaturizer,
    patient_folds,
    pauc_above_tpr,
    read_metadata,
    simulate_slice3d,
    split_xy,
)
from lesionboost.features import GROUPS, OUTLIER_COLUMNS, output_names, z_name
from lesionboost.schema import CATEGORICAL_COLUMNS

DEFAULT_SAMPLE = SHARED / "train-metadata-sample.csv"

#: How the configurations are named in the table (others keep their own name).
LABELS = {
    "raw": "raw columns + codes",
    "all, ranks raw only": "all, ranks for raw columns only",
    "all, ranks key only": f"all, ranks for the {len(OUTLIER_COLUMNS)} key columns",
    "all, no ranks": "all, no ranks (the default)",
    "all, outlier_lof": "all, outlier score = per-patient LOF",
}


def configurations(groups: tuple[str, ...], small: bool = False) -> dict[str, dict[str, Any]]:
    """Name -> {"groups", "rank_columns", "outlier"} for the ablation tables."""
    configs: dict[str, dict[str, Any]] = {}

    def add(
        name: str, chosen: tuple[str, ...], rank: str = "all", outlier: str = "distance"
    ) -> None:
        configs[name] = {"groups": chosen, "rank_columns": rank, "outlier": outlier}

    add("raw", ())
    active: list[str] = []
    for group in groups:
        active.append(group)
        add("+" + group, tuple(active))
    if small:
        add("all, outlier_lof", groups, outlier="lof")
        return {k: configs[k] for k in ("raw", "+derived", "all, outlier_lof")}
    for group in groups:
        if group != groups[-1]:  # "all minus the last group" is the previous cumulative row
            add(f"all - {group}", tuple(g for g in groups if g != group))
    add("all, ranks raw only", groups, rank="raw")
    add("all, ranks key only", groups, rank="key")
    add("all, no ranks", groups, rank="none")
    if "outlier" in groups:
        add("all, outlier_lof", groups, outlier="lof")
    return configs


def lof_scores(features: pl.DataFrame, patients: pl.Series, n_neighbors: int = 30) -> np.ndarray:
    """Per-patient LocalOutlierFactor on the patient-standardised key columns.

    Patients with fewer than 3 lesions get 1.0 (the inlier value); the score is
    ``-negative_outlier_factor_`` so that larger means more outlying.
    """
    from sklearn.neighbors import LocalOutlierFactor

    key = features.select([z_name(c, "patient") for c in OUTLIER_COLUMNS]).to_numpy()
    key = np.nan_to_num(key.astype(np.float64))
    codes = patients.cast(pl.Categorical).to_physical().to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    scores = np.ones(len(codes))
    for rows in np.split(order, bounds):
        if len(rows) < 3:
            continue
        lof = LocalOutlierFactor(n_neighbors=min(n_neighbors, len(rows) - 1))
        lof.fit(key[rows])
        scores[rows] = -lof.negative_outlier_factor_
    return scores


def oof_pauc(
    matrix: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    categorical: list[int],
    *,
    seed: int,
    neg_per_pos: float | None,
    trees: int = 100,
) -> float:
    """Out-of-fold pAUC of a default LightGBM over the given folds.

    Folds are fitted two at a time in threads, each LightGBM single-threaded:
    OpenMP threads spin badly when a shared machine is oversubscribed, threads
    around single-threaded boosters do not.
    """
    import lightgbm as lgb

    rng = np.random.default_rng(seed)
    jobs = []
    for fold in np.unique(folds):
        train = np.flatnonzero(folds != fold)
        if neg_per_pos is not None:
            pos = train[y[train] == 1]
            neg = train[y[train] == 0]
            keep = min(len(neg), int(round(neg_per_pos * len(pos))))
            train = np.sort(np.concatenate([pos, rng.choice(neg, keep, replace=False)]))
        jobs.append((train, np.flatnonzero(folds == fold)))

    def fit_predict(job: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        train, valid = job
        model = lgb.LGBMClassifier(n_estimators=trees, random_state=seed, verbose=-1, n_jobs=1)
        model.fit(matrix[train], y[train], categorical_feature=categorical)
        return model.predict_proba(matrix[valid])[:, 1]

    oof = np.zeros(len(y))
    with ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        for (_, valid), scores in zip(jobs, pool.map(fit_predict, jobs), strict=True):
            oof[valid] = scores
    return pauc_above_tpr(y, oof)


def _matrix(
    features: np.ndarray, columns: list[str], config: dict[str, Any], lof: np.ndarray | None
) -> tuple[np.ndarray, list[int]]:
    names = output_names(groups=config["groups"], extra=(), rank_columns=config["rank_columns"])
    position = {c: i for i, c in enumerate(columns)}
    matrix = features[:, [position[c] for c in names]]
    if config["outlier"] == "lof":
        matrix[:, names.index("outlier_score")] = lof
    categorical = [i for i, c in enumerate(names) if c in CATEGORICAL_COLUMNS]
    return matrix, categorical


def run_dataset(
    X: pl.DataFrame,
    y: np.ndarray,
    configs: dict[str, dict[str, Any]],
    *,
    seed: int,
    neg_per_pos: float | None,
    groups: tuple[str, ...],
    trees: int = 100,
) -> dict[str, Any]:
    """pAUC of every configuration on one data set and fold seed, plus outlier timings."""
    start = time.perf_counter()
    # every column ranked: the configurations below select their columns from this superset
    features = LesionFeaturizer(groups=groups, rank_columns="all").fit_transform(X)
    featurize_s = time.perf_counter() - start
    outlier_timing = None
    lof = None
    if any(c["outlier"] == "lof" for c in configs.values()):
        outlier_timing = time_outlier_scores(X)
        lof = lof_scores(features, X.get_column("patient_id"))
    folds = patient_folds(X, y, n_splits=5, seed=seed)
    columns = features.columns
    dense = features.to_numpy().astype(np.float32)  # nulls become NaN, which LightGBM handles
    del features
    scores = {}
    for name, config in configs.items():
        matrix, categorical = _matrix(dense, columns, config, lof)
        scores[name] = oof_pauc(
            matrix, y, folds, categorical, seed=seed, neg_per_pos=neg_per_pos, trees=trees
        )
        print(f"  seed {seed} {name:<24} pAUC {scores[name]:.4f}", flush=True)
    return {"pauc": scores, "featurize_s": round(featurize_s, 3), "outlier_timing": outlier_timing}


def time_outlier_scores(X: pl.DataFrame) -> dict[str, float]:
    """Seconds for the two outlier scores on the same standardised key columns.

    Both start from the raw frame: the distance score is one polars query (the key
    z-scores and ``sqrt(mean(z^2))``); the LOF score computes the same z-scores,
    then fits one LocalOutlierFactor per patient.
    """
    key_z = [
        (
            (pl.col(c) - pl.col(c).mean().over("patient_id"))
            / (pl.col(c).std().over("patient_id") + 1e-5)
        )
        .fill_null(0.0)
        .alias(z_name(c, "patient"))
        for c in OUTLIER_COLUMNS
    ]
    start = time.perf_counter()
    X.lazy().select(key_z).select(
        (
            pl.sum_horizontal([pl.col(z_name(c, "patient")) ** 2 for c in OUTLIER_COLUMNS])
            / len(OUTLIER_COLUMNS)
        )
        .sqrt()
        .alias("outlier_score")
    ).collect()
    t_distance = time.perf_counter() - start
    start = time.perf_counter()
    z_frame = X.lazy().select(key_z).collect()
    lof_scores(z_frame, X.get_column("patient_id"))
    t_lof = time.perf_counter() - start
    return {
        "rows": X.height,
        "distance_score_s": round(t_distance, 3),
        "lof_score_s": round(t_lof, 3),
        "lof_over_distance": round(t_lof / t_distance, 1),
    }


def summarise(per_seed: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    names = list(per_seed[0])
    table = {}
    for name in names:
        values = np.array([s[name] for s in per_seed])
        table[name] = {
            "mean": round(float(values.mean()), 4),
            "sd": round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 4),
            "per_seed": [round(float(v), 4) for v in values],
        }
    return table


def print_table(title: str, table: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"  {'configuration':<24} {'pAUC mean':>9} {'sd':>7}   per seed")
    for name, row in table.items():
        seeds = " ".join(f"{v:.4f}" for v in row["per_seed"])
        print(f"  {name:<24} {row['mean']:>9.4f} {row['sd']:>7.4f}   {seeds}")


def _label(name: str) -> str:
    if name in LABELS:
        return LABELS[name]
    if name.startswith("+"):
        return "+ " + name[1:]
    return name


def _cell(row: dict[str, Any] | None) -> str:
    return f"{row['mean']:.4f} ({row['sd']:.4f})" if row else NA


def tables(report: dict[str, Any], *, small: bool) -> list[Table]:
    """``ablation/groups`` and ``ablation/outlier`` from the report."""
    sim = report.get("simulator", {})
    real = report.get("real", {})
    sim_table, real_table = sim.get("table", {}), real.get("table", {})
    n_seeds = len(report["seeds"])
    plural = "s" if n_seeds > 1 else ""
    names = [*sim_table, *(name for name in real_table if name not in sim_table)]
    rows = []
    for name in names:
        label = _label(name)
        if name == "+counts" and sim_table and real_table:
            label += " (all; leaks on the real sample, not run there)"
        rows.append([label, _cell(sim_table.get(name)), _cell(real_table.get(name))])
    notes = [
        f"Default LightGBM ({report['trees']} trees), patient-grouped 5-fold OOF pAUC above "
        "80 % TPR, mean (sd) over seeds."
    ]
    if sim:
        notes.append(
            f"Simulator: {sim['patients']:,} patients, seed{plural} "
            f"{', '.join(map(str, report['seeds']))}, training folds keep "
            f"{report['neg_per_pos']:g} negatives per positive."
        )
    if "table" in real:
        notes.append(
            f"Real sample: {real['rows']:,} rows, {real['positives']} malignant, without the "
            f"counts group; fold seed{plural} {', '.join(map(str, report['seeds']))}."
        )
    elif real:
        notes.append(f"Real sample: {real.get('skipped', 'not run')}.")
    if small:
        notes.append("A --small run: it checks that the script works, not its figures.")
    groups = Table(
        "ablation/groups",
        [
            "configuration",
            f"simulator, {n_seeds} seed{plural} (mean, sd)",
            f"real sample, {n_seeds} fold seed{plural} (mean, sd)",
        ],
        rows,
        note=" ".join(notes),
    )
    out = [groups]
    timings = sim.get("outlier_timing") or real.get("outlier_timing") or []
    if timings:
        sizes = sorted({t["rows"] for t in timings})
        lesions = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}-{sizes[-1]:,}"

        def seconds(key: str) -> str:
            return " / ".join(f"{t[key]:.2f}" for t in timings)

        out.append(
            Table(
                "ablation/outlier",
                ["outlier score", f"seconds on {lesions} lesions"],
                [
                    [
                        f"distance to the patient mean ({len(OUTLIER_COLUMNS)} standardised "
                        "key columns, the default)",
                        seconds("distance_score_s"),
                    ],
                    ["per-patient LocalOutlierFactor (same columns)", seconds("lof_score_s")],
                ],
                note=f"One value per {'simulator seed' if sim else 'fold seed'}; both start from "
                "the raw frame (the LOF computes the same z-scores first)."
                + (" A --small run: it checks that the script works." if small else ""),
            )
        )
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__.split("\n\n")[0], name="ablation")
    cli.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2")
    cli.add_argument("--patients", type=int, default=None, help="simulated patients (1042)")
    cli.add_argument(
        "--neg-per-pos",
        type=float,
        default=50.0,
        help="negatives kept per positive in simulator training folds",
    )
    cli.add_argument(
        "--trees",
        type=int,
        default=None,
        help="LightGBM trees (default: LightGBM's 100; 20 with --small)",
    )
    cli.add_argument("--sample", type=Path, default=DEFAULT_SAMPLE)
    cli.add_argument("--skip-simulator", action="store_true")
    cli.add_argument("--skip-real", action="store_true")
    args = cli.parse_args(argv)
    seeds = args.seeds or ([0] if args.small else [0, 1, 2])
    n_patients = args.patients or (80 if args.small else 1042)
    trees = args.trees or (20 if args.small else 100)
    report: dict[str, Any] = {"seeds": seeds, "neg_per_pos": args.neg_per_pos, "trees": trees}

    if not args.skip_simulator:
        configs = configurations(GROUPS, small=args.small)
        runs = []
        for seed in seeds:
            sim = simulate_slice3d(n_patients, seed=seed)
            X, y = split_xy(sim.train)
            print(
                f"simulator seed {seed}: {X.height:,} lesions, {int(y.sum())} malignant", flush=True
            )
            runs.append(
                run_dataset(
                    X,
                    y.to_numpy(),
                    configs,
                    seed=seed,
                    neg_per_pos=args.neg_per_pos,
                    groups=GROUPS,
                    trees=trees,
                )
            )
        report["simulator"] = {
            "patients": n_patients,
            "table": summarise([r["pauc"] for r in runs]),
            "featurize_s": [r["featurize_s"] for r in runs],
            "outlier_timing": [r["outlier_timing"] for r in runs if r["outlier_timing"]],
        }
        print_table(
            f"Simulator ({n_patients} patients, seeds {seeds}): OOF pAUC",
            report["simulator"]["table"],
        )
        for timing in report["simulator"]["outlier_timing"]:
            print(f"  outlier score timing: {timing}")

    if not args.skip_real:
        if not args.sample.exists():
            report["real"] = {"skipped": f"{args.sample} not found"}
            print(f"\nreal sample skipped: {args.sample} not found")
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DataWarning)
                X, y = split_xy(read_metadata(args.sample))
            groups = tuple(g for g in GROUPS if g != "counts")
            configs = configurations(groups, small=args.small)
            runs = [
                run_dataset(
                    X,
                    y.to_numpy(),
                    configs,
                    seed=seed,
                    neg_per_pos=None,
                    groups=groups,
                    trees=trees,
                )
                for seed in seeds
            ]
            report["real"] = {
                "rows": X.height,
                "positives": int(y.sum()),
                "patients": X.get_column("patient_id").n_unique(),
                "table": summarise([r["pauc"] for r in runs]),
                "outlier_timing": [r["outlier_timing"] for r in runs if r["outlier_timing"]],
            }
            print_table(
                f"Real sample ({X.height} rows, {int(y.sum())} malignant; "
                "counts left out): OOF pAUC",
                report["real"]["table"],
            )
    write_results(args.out, report, tables(report, small=args.small))
    return report


if __name__ == "__main__":
    main()

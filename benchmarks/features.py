"""Speed of ``LesionFeaturizer`` against a vectorised pandas peer, in one run.

Simulates full-size SLICE-3D metadata (1,042 patients, ~401k lesions), then, for
each ``rank_columns`` configuration (default: ``"none"``, the library default, and
``"all"``), times

* ``LesionFeaturizer().fit_transform`` (polars, one lazy plan), and
* the same features written the usual pandas way: ``groupby(...).transform`` for
  the means and standard deviations, ``groupby(...).rank`` for the ranks, the same
  derived formulas evaluated on Series (:class:`lesionboost.features.PandasOps`),

each in a fresh subprocess so that peak memory (``ru_maxrss``) belongs to one engine.
It reports rows, feature count, seconds for each engine, the ratio and peak memory,
a per-group breakdown of the polars time (first configuration), and checks on a
subset of patients that both engines produce the same numbers (features of a
lesion depend only on its own patient, so a subset of patients is an exact check).

Targets (default configuration): polars >= 20x faster than pandas; <= 1.5 s on 2 cores.

Usage::

    python benchmarks/features.py [--patients N] [--seed S] [--repeats R]
                                  [--rank-columns none all] [--out FILE.json]
    python benchmarks/features.py --small     # 60 patients; what the test suite runs

A full run writes ``benchmarks/results/features.json`` (tables ``features/headline``,
``features/speed`` and ``features/groups``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from _common import Table, parser, write_results
from lesionboost import LesionFeaturizer, simulate_slice3d, split_xy
from lesionboost.features import (
    DERIVED_FEATURES,
    GROUPINGS,
    GROUPS,
    OUTLIER_COLUMNS,
    PandasOps,
    groupings_for,
    ranked_columns,
    zscored_columns,
)
from lesionboost.schema import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS

TARGET_RATIO = 20.0
TARGET_SECONDS = 1.5


# -- the pandas peer ---------------------------------------------------------------------


def pandas_featurize(
    df: Any,
    *,
    groups: tuple[str, ...] = GROUPS,
    rank_columns: str = "all",
    eps: float = 1e-5,
    z_threshold: float = 2.0,
    category_maps: dict[str, list[str]],
) -> Any:
    """The LesionFeaturizer features, computed with pandas groupby-transform."""
    import pandas as pd

    num = df[list(NUMERIC_COLUMNS)].astype("float64").replace([np.inf, -np.inf], np.nan)
    cats = {}
    for name in CATEGORICAL_COLUMNS:
        mapping = {level: code for code, level in enumerate(category_maps[name], start=2)}
        column = df[name].astype("object")
        codes = column.map(mapping).fillna(1).astype("int32")
        cats[name] = codes.where(column.notna(), 0).astype("int32")
    if "derived" in groups:
        ops = PandasOps(num)
        num = pd.concat(
            [
                num,
                pd.DataFrame({d.name: d.formula(ops) for d in DERIVED_FEATURES}, index=num.index),
            ],
            axis=1,
        )
    numeric = zscored_columns(groups, ())
    ranked = ranked_columns(numeric, (), rank_columns)
    out: dict[str, Any] = {c: num[c] for c in NUMERIC_COLUMNS}
    out.update(cats)
    if "derived" in groups:
        out.update({d.name: num[d.name] for d in DERIVED_FEATURES})
    groupings = groupings_for(groups)
    z_groupings = (
        groupings
        if ("outlier" not in groups or "patient" in groupings)
        else ["patient", *groupings]
    )
    z_frames: dict[str, Any] = {}
    for grouping in z_groupings:
        keys = [df[k] for k in GROUPINGS[grouping]]
        grouped = num[numeric].groupby(keys, dropna=False, sort=False)
        mean = grouped.transform("mean")
        std = grouped.transform("std")
        z = ((num[numeric] - mean) / (std + eps)).fillna(0.0).where(num[numeric].notna())
        z_frames[grouping] = z
        if grouping in groupings:
            out.update({f"{c}__z_{grouping}": z[c] for c in numeric})
            if ranked:
                rgrouped = num[ranked].groupby(keys, dropna=False, sort=False)
                rank = rgrouped.rank(method="average")
                count = rgrouped.transform("count")
                pct = ((rank - 1.0) / (count - 1.0)).where(count > 1, 0.5)
                pct = pct.where(num[ranked].notna())
                out.update({f"{c}__rank_{grouping}": pct[c] for c in ranked})
    if "counts" in groups:
        for grouping, name in (
            ("patient", "n_lesions_patient"),
            ("patient_site", "n_lesions_patient_site"),
            ("patient_location", "n_lesions_patient_location"),
        ):
            keys = [df[k] for k in GROUPINGS[grouping]]
            out[name] = (
                num["tbp_lv_areaMM2"].groupby(keys, dropna=False, sort=False).transform("size")
            )
        for grouping, name in (
            ("patient", "area_sum_patient"),
            ("patient_site", "area_sum_patient_site"),
        ):
            keys = [df[k] for k in GROUPINGS[grouping]]
            out[name] = (
                num["tbp_lv_areaMM2"].groupby(keys, dropna=False, sort=False).transform("sum")
            )
    if "outlier" in groups:
        # the featurizer keeps z-scores as Float32: summarise the same numbers
        zf = z_frames["patient"].astype("float32").astype("float64")
        absz = zf.abs()
        out["ud_count_abs_z_gt"] = (absz > z_threshold).sum(axis=1)
        out["ud_max_abs_z"] = absz.max(axis=1)
        out["ud_std_abs_z"] = absz.std(axis=1, ddof=0)
        key = zf[list(OUTLIER_COLUMNS)]
        out["outlier_score"] = np.sqrt((key**2).mean(axis=1)).fillna(0.0)  # skips missing z
    frame = pd.DataFrame(out)
    floats = [c for c in frame.columns if c not in CATEGORICAL_COLUMNS]
    return frame.astype({c: "float32" for c in floats})


# -- one engine in its own process -------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _worker(args: argparse.Namespace) -> None:
    config = json.loads(args.config)
    if args.worker == "polars":
        data = pl.read_parquet(args.data)
    else:
        import pandas as pd

        data = pd.read_parquet(args.data)
        maps = (
            LesionFeaturizer(rank_columns=config["rank_columns"])
            .fit(pl.from_pandas(data))
            .category_maps_
        )
    before = _rss_mb()
    seconds = []
    cpu_seconds = []
    shape = (0, 0)
    for _ in range(args.repeats):
        start = time.perf_counter()
        cpu_start = time.process_time()
        if args.worker == "polars":
            out = LesionFeaturizer(rank_columns=config["rank_columns"]).fit_transform(data)
        else:
            out = pandas_featurize(data, rank_columns=config["rank_columns"], category_maps=maps)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
        shape = out.shape
        del out
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "rows": shape[0],
                "features": shape[1],
                "rss_before_mb": round(before, 1),
                "peak_rss_mb": round(peak, 1),
                "peak_increase_mb": round(peak - before, 1),
            }
        )
    )


def _run_engine(engine: str, data: Path, repeats: int, rank_columns: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            engine,
            "--data",
            str(data),
            "--repeats",
            str(repeats),
            "--config",
            json.dumps({"rank_columns": rank_columns}),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{engine} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- checks and breakdown ----------------------------------------------------------------


def parity(X: pl.DataFrame, rank_columns: str, n_patients: int = 40) -> dict[str, Any]:
    """How far apart the engines are on the lesions of a few patients.

    Values are compared relative to ``max(1, |value|)``. Ranks are compared
    separately: two values that tie in exact arithmetic can differ in the last bit
    in one engine and not the other (e.g. ``area_ratio * area``), which moves a
    rank by a tie's width; the share of rank cells that differ is reported.
    """
    patients = X.get_column("patient_id").unique(maintain_order=True).head(n_patients)
    subset = X.filter(pl.col("patient_id").is_in(patients.implode()))
    featurizer = LesionFeaturizer(rank_columns=rank_columns).fit(subset)
    ours = featurizer.transform(subset)
    theirs = pandas_featurize(
        subset.to_pandas(), rank_columns=rank_columns, category_maps=featurizer.category_maps_
    )
    assert list(theirs.columns) == ours.columns, "column lists differ"
    a = ours.to_numpy().astype(np.float64)
    b = theirs.to_numpy().astype(np.float64)
    same_nulls = bool((np.isnan(a) == np.isnan(b)).all())
    diff = np.nan_to_num(np.abs(a - b) / np.maximum(1.0, np.abs(b)))
    is_rank = np.array(["__rank_" in c for c in ours.columns])
    values = diff[:, ~is_rank]
    worst = int(np.argmax(values.max(axis=0)))
    ranks = diff[:, is_rank]
    return {
        "rows": subset.height,
        "same_nulls": same_nulls,
        "max_rel_diff_values": float(values.max()),
        "worst_value_column": list(np.array(ours.columns)[~is_rank])[worst],
        "rank_cells_differing_share": float((ranks > 1e-6).mean()) if ranks.size else 0.0,
        "max_rank_diff": float(ranks.max()) if ranks.size else 0.0,
    }


def breakdown(X: pl.DataFrame, rank_columns: str, repeats: int) -> dict[str, float]:
    """Polars seconds as groups are added one by one (best of ``repeats``)."""
    out = {}
    active: list[str] = []
    for group in ("base", *GROUPS):
        if group != "base":
            active.append(group)
        featurizer = LesionFeaturizer(groups=tuple(active), rank_columns=rank_columns)
        best = min(_timed(lambda f=featurizer: f.fit_transform(X)) for _ in range(repeats))
        out["+".join(active) or "base"] = round(best, 3)
    return out


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(X: pl.DataFrame, rank_columns: str, repeats: int) -> dict[str, Any]:
    """Both engines on ``X`` in fresh processes, and their parity on a few patients."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "metadata.parquet"
        X.write_parquet(data)
        polars_run = _run_engine("polars", data, repeats, rank_columns)
        pandas_run = _run_engine("pandas", data, 1, rank_columns)
    polars_best = min(polars_run["seconds"])
    pandas_best = min(pandas_run["seconds"])
    return {
        "rows": polars_run["rows"],
        "features": polars_run["features"],
        "rank_columns": rank_columns,
        "polars_seconds": [round(s, 3) for s in polars_run["seconds"]],
        "pandas_seconds": [round(s, 3) for s in pandas_run["seconds"]],
        "polars_cpu_seconds": [round(s, 3) for s in polars_run["cpu_seconds"]],
        "pandas_cpu_seconds": [round(s, 3) for s in pandas_run["cpu_seconds"]],
        "polars_best_s": round(polars_best, 3),
        "pandas_best_s": round(pandas_best, 3),
        "speedup": round(pandas_best / polars_best, 2),
        "polars_peak_increase_mb": polars_run["peak_increase_mb"],
        "pandas_peak_increase_mb": pandas_run["peak_increase_mb"],
        "polars_peak_rss_mb": polars_run["peak_rss_mb"],
        "pandas_peak_rss_mb": pandas_run["peak_rss_mb"],
        "parity": parity(X, rank_columns),
    }


def _best_cpu(configuration: dict[str, Any]) -> float:
    """CPU seconds of the fastest polars run."""
    seconds = configuration["polars_seconds"]
    return configuration["polars_cpu_seconds"][seconds.index(min(seconds))]


def _memory(mb: float) -> str:
    return f"+{mb / 1024:.1f} GiB" if mb >= 1024 else f"+{mb:.0f} MiB"


def _configuration(rank_columns: str) -> str:
    default = " (the default)" if rank_columns == "none" else ""
    return f'`rank_columns="{rank_columns}"`{default}'


def tables(report: dict[str, Any], *, small: bool) -> list[Table]:
    """``features/headline``, ``features/speed`` and ``features/groups`` from the report."""
    note = (
        f"{report['rows']:,} simulated lesions ({report['patients']:,} patients); polars best of "
        f"{len(report['polars_seconds'])}, pandas one run, each engine in a fresh process; "
        f"peak memory is the rise of the process's peak RSS; {report['cpus']} CPUs, "
        f"{report['polars_threads']} polars threads."
    )
    if small:
        note += " A --small run: it checks that the script works, not its figures."
    default = report["configurations"][0]
    met = report["targets"]

    def verdict(key: str) -> str:
        return "" if met[key] else " (not met)"

    headline = Table(
        "features/headline",
        ["what", "target", "measured"],
        [
            [
                f"`LesionFeaturizer().fit_transform`, {default['rows']:,} rows, "
                f"{default['features']} features",
                f"<= {TARGET_SECONDS:g} s",
                f"{default['polars_best_s']:.2f} s"
                + verdict(f"polars_at_most_{TARGET_SECONDS:g}s"),
            ],
            [
                "speed-up over the vectorised pandas peer",
                f">= {TARGET_RATIO:g}x",
                f"{default['speedup']:.1f}x" + verdict(f"speedup_at_least_{TARGET_RATIO:g}x"),
            ],
        ],
        note=note,
    )
    speed = Table(
        "features/speed",
        [
            "configuration",
            "features",
            "polars `fit_transform`",
            "pandas groupby-transform peer",
            "speed-up",
            "peak memory (polars / pandas)",
        ],
        [
            [
                _configuration(c["rank_columns"]),
                str(c["features"]),
                f"{c['polars_best_s']:.2f} s ({_best_cpu(c):.1f} CPU-s)",
                f"{c['pandas_best_s']:.1f} s",
                f"{c['speedup']:.1f}x",
                f"{_memory(c['polars_peak_increase_mb'])} / "
                f"{_memory(c['pandas_peak_increase_mb'])}",
            ]
            for c in report["configurations"]
        ],
        note=note,
    )
    repeats = report["breakdown_repeats"]
    groups = Table(
        "features/groups",
        ["groups", f"polars `fit_transform` (best of {repeats})"],
        [
            [
                "raw columns + codes" if name == "base" else "+ " + name.split("+")[-1],
                f"{seconds:.2f} s",
            ]
            for name, seconds in report["breakdown_polars_s"].items()
        ],  # fmt: skip
        note=f"Groups added one at a time, {_configuration(default['rank_columns'])}; "
        f"{report['rows']:,} lesions in this process."
        + (" A --small run: it checks that the script works, not its figures." if small else ""),
    )
    return [headline, speed, groups]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__.split("\n\n")[0], name="features")
    cli.add_argument("--patients", type=int, default=None, help="simulated patients (1042)")
    cli.add_argument("--seed", type=int, default=0)
    cli.add_argument("--repeats", type=int, default=3, help="polars timing repeats (best)")
    cli.add_argument(
        "--rank-columns",
        nargs="+",
        default=["none", "all"],
        choices=("all", "raw", "key", "none"),
        help="LesionFeaturizer(rank_columns=...) configurations, the first is the headline "
        "(the library default is none)",
    )
    cli.add_argument("--worker", choices=("polars", "pandas"), help=argparse.SUPPRESS)
    cli.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    cli.add_argument("--config", default="{}", help=argparse.SUPPRESS)
    args = cli.parse_args(argv)
    if args.worker:
        _worker(args)
        return {}

    n_patients = args.patients or (60 if args.small else 1042)
    load = os.getloadavg()
    sim = simulate_slice3d(n_patients, seed=args.seed)
    X, _ = split_xy(sim.train)
    configurations = [measure(X, rank, args.repeats) for rank in args.rank_columns]
    first = configurations[0]
    breakdown_repeats = 1 if args.small else args.repeats
    report: dict[str, Any] = {
        "rows": first["rows"],
        "patients": n_patients,
        "features": first["features"],
        "rank_columns": first["rank_columns"],
        "cpus": os.cpu_count(),
        "polars_threads": pl.thread_pool_size(),
        "load_average_before": [round(v, 2) for v in load],
        **{key: first[key] for key in first if key not in ("rows", "features", "rank_columns")},
        "breakdown_polars_s": breakdown(X, first["rank_columns"], breakdown_repeats),
        "breakdown_repeats": breakdown_repeats,
        "configurations": configurations,
    }
    report["targets"] = {
        f"speedup_at_least_{TARGET_RATIO:g}x": report["speedup"] >= TARGET_RATIO,
        f"polars_at_most_{TARGET_SECONDS:g}s": report["polars_best_s"] <= TARGET_SECONDS,
    }
    _print(report)
    write_results(args.out, report, tables(report, small=args.small))
    return report


def _print(r: dict[str, Any]) -> None:
    print(
        f"rows {r['rows']:,} ({r['patients']} patients), features {r['features']}, "
        f"rank_columns={r['rank_columns']}, {r['cpus']} CPUs, load {r['load_average_before']}"
    )
    print(
        f"polars LesionFeaturizer.fit_transform: best {r['polars_best_s']:.3f} s "
        f"(runs {r['polars_seconds']}; CPU s {r['polars_cpu_seconds']}), "
        f"peak +{r['polars_peak_increase_mb']:.0f} MiB"
    )
    print(
        f"pandas groupby-transform peer:         best {r['pandas_best_s']:.3f} s "
        f"(CPU s {r['pandas_cpu_seconds']}), peak +{r['pandas_peak_increase_mb']:.0f} MiB"
    )
    print(f"speedup pandas / polars: {r['speedup']:.1f}x")
    for c in r["configurations"][1:]:
        print(
            f"rank_columns={c['rank_columns']}: {c['features']} features, polars best "
            f"{c['polars_best_s']:.3f} s, pandas {c['pandas_best_s']:.3f} s, speedup "
            f"{c['speedup']:.1f}x, parity max relative difference "
            f"{c['parity']['max_rel_diff_values']:.2e}"
        )
    print(
        "polars seconds as groups are added: "
        + ", ".join(f"{k} {v:.3f}" for k, v in r["breakdown_polars_s"].items())
    )
    p = r["parity"]
    print(
        f"parity on {p['rows']} rows: max relative difference {p['max_rel_diff_values']:.2e} "
        f"({p['worst_value_column']}); rank cells differing {p['rank_cells_differing_share']:.2e} "
        f"(max {p['max_rank_diff']:.3f}, float ties); same nulls: {p['same_nulls']}"
    )
    print(
        "targets: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in r["targets"].items())
    )


if __name__ == "__main__":
    main()

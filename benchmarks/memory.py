"""Peak memory of the whole tabular pipeline at full size.

simulate (1,042 patients, ~401k lesions) -> features -> 5-fold cross-validated
fit of the default ``LesionBoostClassifier`` -> final fit on all rows -> predict
a fresh test cohort. Peak resident memory is read from the kernel
(``getrusage(RUSAGE_SELF).ru_maxrss``, the high-water mark of this process; the
GBDT libraries run in-process threads, so it covers them) after each stage.
Target: <= 4 GB.

Usage::

    python benchmarks/memory.py [--out FILE.json]
    python benchmarks/memory.py --small   # what the test suite runs (seconds)

A full run writes ``benchmarks/results/memory.json`` (tables ``memory/headline`` and
``memory/stages``).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import lesionboost as lb
from _common import Table, parser, write_results

TARGET_GB = 4.0


def peak_rss_gb() -> float:
    """High-water mark of this process's resident memory, in GB (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024 / 1e9


def run(n_patients: int, n_test_patients: int, n_splits: int, small: bool) -> dict[str, Any]:
    stages: list[dict[str, Any]] = []

    def stage(name: str, started: float, **extra: Any) -> None:
        stages.append(
            {
                "stage": name,
                "seconds": round(time.perf_counter() - started, 2),
                "peak_rss_gb": round(peak_rss_gb(), 3),
                **extra,
            }
        )
        print(
            f"{name:<22} {stages[-1]['seconds']:>8.1f} s   peak RSS "
            f"{stages[-1]['peak_rss_gb']:.2f} GB",
            flush=True,
        )

    params: dict[str, Any] = {}
    if small:
        params = {
            "n_bags": 1,
            "lightgbm_params": {"n_estimators": 20},
            "xgboost_params": {"n_estimators": 20},
            "catboost_params": {"n_estimators": 20},
        }
    t = time.perf_counter()
    sim = lb.simulate_slice3d(n_patients, n_test_patients=n_test_patients, seed=0)
    stage("simulate", t, rows=sim.train.height)
    t = time.perf_counter()
    X, y = lb.split_xy(sim.train)
    features = lb.LesionFeaturizer().fit_transform(X)
    stage("features", t, features=features.width)
    del features
    t = time.perf_counter()
    folds = lb.patient_folds(sim.train, n_splits=n_splits, seed=0)
    oof = lb.cross_val_oof(lb.LesionBoostClassifier(**params), sim.train, folds, progress=False)
    stage("cross-validated fit", t, pauc=round(oof.pauc, 4))
    t = time.perf_counter()
    model = lb.LesionBoostClassifier(**params).fit(sim.train)
    stage("final fit", t)
    t = time.perf_counter()
    scores = model.predict_proba(sim.test)[:, 1]
    stage("predict", t, rows=int(scores.shape[0]))
    peak = max(s["peak_rss_gb"] for s in stages)
    return {
        "benchmark": "memory",
        "small": small,
        "patients": n_patients,
        "n_splits": n_splits,
        "rows": sim.train.height,
        "stages": stages,
        "peak_rss_gb": peak,
        "target_gb": TARGET_GB,
        "meets_target": peak <= TARGET_GB,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def tables(result: dict[str, Any]) -> list[Table]:
    """``memory/headline`` and ``memory/stages`` from the result."""
    note = (
        f"One process, {result['patients']:,} simulated patients ({result['rows']:,} lesions), "
        f"default LesionBoostClassifier; peak RSS is the kernel's high-water mark after each "
        f"stage; {os.cpu_count()} CPUs, Python {result['python']}."
    )
    if result["small"]:
        note += " A --small run: it checks that the script works, not its figures."
    n_splits = result["n_splits"]
    headline = Table(
        "memory/headline",
        ["what", "target", "measured"],
        [
            [
                f"peak memory, simulate → features → {n_splits}-fold → fit → predict",
                f"<= {TARGET_GB:g} GB",
                f"{result['peak_rss_gb']:.2f} GB"
                + ("" if result["meets_target"] else " (not met)"),
            ]
        ],
        note=note,
    )
    stages = Table(
        "memory/stages",
        ["stage", "seconds", "peak RSS (GB)"],
        [[s["stage"], f"{s['seconds']:.1f}", f"{s['peak_rss_gb']:.2f}"] for s in result["stages"]],
        note=note,
    )
    return [headline, stages]


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser(__doc__.splitlines()[0], name="memory")
    args = cli.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lb.DataWarning)
        if args.small:
            result = run(n_patients=16, n_test_patients=4, n_splits=3, small=True)
        else:
            result = run(n_patients=1042, n_test_patients=1300, n_splits=5, small=False)
    print(
        f"peak RSS {result['peak_rss_gb']:.2f} GB (target <= {TARGET_GB} GB): "
        f"{'met' if result['meets_target'] else 'NOT met'}"
    )
    write_results(args.out, result, tables(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

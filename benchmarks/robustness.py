"""Robustness across worlds: lesionboost against the public tabular lineage, world by world.

Rows (``--rows``; ``raw`` and ``lineage_lgbm`` always run, they are the references):

- ``raw``: LightGBM on the 34 raw numeric columns and the categorical codes
  (``quality.py``'s raw row, imported from it);
- ``lineage_lgbm``: the public "Only Tabular Data" lineage, bagged LightGBM
  (``benchmarks/lineage.py``, 3 bags);
- ``lineage_vote``: the same lineage's LightGBM + XGBoost + CatBoost soft vote
  (one 1:100 subsample per fold by default, as in its notebook: ``--vote-bags``);
- ``default``: ``LesionBoostClassifier()`` as it comes;
- ``tuned``: ``lesionboost.tune`` for ``--tune-trials`` trials (``--tune-members``)
  on the cell's own folds, then the best configuration cross-fitted on the same
  folds: optimistic, since tuning and scoring share the folds.

Columns: every simulator scenario (``lesionboost.simulate.SCENARIOS``; a
simulator without scenarios gives the one world ``default``), ``--seeds``
simulations of ``--patients`` patients each, scored on patient-grouped 5-fold
OOF pAUC above 80 % TPR with the same folds for every row
(``lesionboost.patient_folds(meta, n_splits=5, seed=seed)``); then the real
3,449-row sample (``train-metadata-sample.csv`` in ``$LESIONBOOST_SHARED``) on 5
fold seeds (``lesionboost.repeated_patient_folds(meta, n_splits=5, n_repeats=5,
seed=0)``). Per-patient lesion counts leak the label on the real sample, so
there the lineage runs without ``count_per_patient`` and lesionboost without
its ``counts`` group, as in ``quality.py``.

Per cell: mean OOF pAUC; the paired difference to ``lineage_lgbm`` with a
two-sided sign test over seeds (``scipy.stats.binomtest`` on the number of
positive differences; with 3 seeds the smallest possible p is 0.25); and, on the
simulator, the share of the raw -> tabular-oracle gap closed,
``(model - raw) / (oracle - raw)`` per seed, where the tabular oracle is
``pauc_above_tpr(y, sim.train_oracle["tabular_logit"])``.

Usage::

    python benchmarks/robustness.py [--patients 600] [--seeds 3] [--scenarios a,b]
                                    [--rows raw,lineage_lgbm,...] [--tune-trials 4]
                                    [--skip-real] [--n-jobs 1] [--checkpoint FILE]
                                    [--reuse benchmarks/results/robustness.json]
    python benchmarks/robustness.py --small    # seconds; what the test suite runs

Each finished cell is appended to ``--checkpoint`` (default
``runs/robustness-cells.jsonl``), keyed by the data (size, world, seed, folds)
and the row's configuration (the library defaults' fingerprint for ``default``;
for ``tuned`` the search space and the configuration of its enqueued first trial),
so an interrupted run resumes where it stopped. The result file records each
cell's key, and ``--reuse`` takes the recorded cells whose keys still match: on a
fresh checkout, a changed default row is measured alone, the other rows reused
(only while the code they measured is unchanged).

A full run writes ``benchmarks/results/robustness.json`` (tables
``robustness/pauc``, ``robustness/vs_lineage``, ``robustness/gap`` and
``robustness/summary``, plus every per-seed figure). ``--small`` uses 40
patients, 1 seed, 2 folds, one fold seed of the real sample, 20-round boosters
and at most 2 tuning trials: it checks that the benchmark runs, not its figures.
``--record-as NAME`` writes ``benchmarks/results/NAME.json`` with tables ``NAME/...``
instead, for a run kept next to the default one (``robustness_full``: the default,
raw and lineage rows at 1,042 patients). ``--n-jobs`` sets every booster's threads;
on a machine shared with other jobs, ``--n-jobs 1`` is much faster than the
libraries' all-core default (same scores).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import binomtest

import lesionboost as lb
import quality as _quality
from _common import (
    NA,
    RESULTS,
    ROOT,
    SHARED,
    CellStore,
    Table,
    add_reuse_argument,
    fingerprint,
    fmt,
    parser,
    write_results,
)
from lineage import LineageClassifier

RAW, LINEAGE, VOTE, DEFAULT, TUNED = "raw", "lineage_lgbm", "lineage_vote", "default", "tuned"
ORACLE = "tabular_oracle"
ROWS: tuple[str, ...] = (RAW, LINEAGE, VOTE, DEFAULT, TUNED)
REFERENCES: tuple[str, ...] = (RAW, LINEAGE)
REAL = "real sample"
#: lesionboost's default feature groups without the per-patient counts (real sample).
NO_COUNTS = tuple(g for g in lb.LesionBoostClassifier().feature_groups if g != "counts")
SMALL_ROUNDS = 20

# The raw row is quality.py's: the same estimator with the same parameters.
RAW_SOURCE = "quality.models"


def _raw_model(small: bool) -> Any:
    return _quality.models(small)[_quality.RAW]()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- worlds
def available_worlds() -> tuple[tuple[str, ...], bool]:
    """The simulator's scenario names and whether it takes ``scenario=`` at all."""
    scenarios = getattr(lb.simulate, "SCENARIOS", None)
    if not scenarios:
        return ("default",), False
    return tuple(str(name) for name in scenarios), True


def simulate(world: str, n_patients: int, seed: int, has_scenarios: bool) -> Any:
    kwargs = {"scenario": world} if has_scenarios else {}
    return lb.simulate_slice3d(n_patients, seed=seed, **kwargs)


# --------------------------------------------------------------------------- rows
def labels(tune_trials: int, tune_members: Sequence[str]) -> dict[str, str]:
    members = " + ".join(tune_members)
    return {
        RAW: "LightGBM (raw columns)",
        LINEAGE: "lineage: bagged LightGBM",
        VOTE: "lineage: LightGBM + XGBoost + CatBoost vote",
        DEFAULT: "`LesionBoostClassifier()` (defaults)",
        TUNED: f"`tune()` best, {tune_trials} trials, {members} (optimistic)",
        ORACLE: "tabular oracle",
    }


def model(row: str, *, small: bool, real: bool, args: Any) -> Any:
    """A fresh, unfitted estimator of ``row`` (``tuned`` excepted: see :func:`run_tuned`)."""
    rounds = SMALL_ROUNDS if small else None
    if row == RAW:
        estimator = _raw_model(small)
        if args.n_jobs is not None:
            estimator.set_params(estimator__n_jobs=args.n_jobs)
        return estimator
    if row in (LINEAGE, VOTE):
        return LineageClassifier(
            form="lgbm" if row == LINEAGE else "vote",
            n_bags=args.lineage_bags if row == LINEAGE else args.vote_bags,
            random_state=0,
            n_jobs=args.n_jobs,
            counts=not real,
            n_estimators=rounds,
        )
    if row == DEFAULT:
        return lb.LesionBoostClassifier(
            **default_overrides(small, real), **({"n_jobs": args.n_jobs} if args.n_jobs else {})
        )
    raise ValueError(f"unknown row {row!r}")


def default_overrides(small: bool, real: bool) -> dict[str, Any]:
    """``LesionBoostClassifier`` arguments: none at full size; toy boosters with ``small``."""
    out: dict[str, Any] = {"feature_groups": NO_COUNTS} if real else {}
    if small:
        out |= {
            "n_bags": 1,
            "lightgbm_params": {"n_estimators": SMALL_ROUNDS},
            "xgboost_params": {"n_estimators": SMALL_ROUNDS},
            "catboost_params": {
                "n_estimators": SMALL_ROUNDS,
                "depth": 4,
                "border_count": 16,
                "max_ctr_complexity": 1,
            },
        }
    return out


def _cell(result: Any, wall: float, cpu: float) -> dict[str, Any]:
    return {
        "pauc": float(result.pauc),
        "fold_scores": [None if np.isnan(v) else float(v) for v in result.fold_scores],
        "wall_seconds": wall,
        "fit_seconds": float(np.sum(result.fit_seconds)),
        "cpu_seconds": cpu,
        "load_average": os.getloadavg()[0],
    }


#: Estimator switches younger than recorded cells, and the value that leaves a fit as
#: it was before the switch existed: a default at that value is left out of the
#: fingerprint, so cells recorded before the switch stay valid.
_SWITCHES_OFF = {"followup_offset": False}


def _defaults_fingerprint() -> str:
    """The estimator's default parameters, with the blend weights ``None`` stands for
    and the default parameters of every member library (what ``None`` stands for)."""
    estimator = lb.LesionBoostClassifier()
    params = estimator.get_params(deep=False)
    for switch, off in _SWITCHES_OFF.items():
        if params.get(switch) is off:
            del params[switch]
    weights = lb.estimator.default_weights(params["members"])
    if weights is not None:
        params["weights"] = weights
    for kind in dict.fromkeys(lb.ensemble.member_kind(m) for m in params["members"]):
        if params.get(f"{kind}_params") is None:
            params[f"{kind}_params"] = lb.estimator.default_member_params(kind)
    return fingerprint(params)


def _tuned_fingerprint(tune_members: Sequence[str]) -> str:
    """What a tuned cell depends on besides the data: the search space and the
    configuration of its first, enqueued trial (the defaults restricted to the tuned
    members, every parameter a trial inherits from the estimator included)."""
    from lesionboost.tuning import SearchSpace

    space = SearchSpace(members=tuple(tune_members))
    params = {
        **lb.LesionBoostClassifier().get_params(deep=False),
        **space.to_config(space.defaults()),
    }
    params["weights"] = params.get("weights") or lb.estimator.default_weights(params["members"])
    trial = {key: value for key, value in params.items() if value is not None}
    searched = {key: repr(value) for key, value in space.distributions().items()}
    return fingerprint({"trial": trial, "space": searched})


def cell_key(row: str, args: Any) -> str:
    """The checkpoint name of ``row``: everything its cells depend on besides the data."""
    if row == RAW:  # the library's LightGBM member on the raw columns
        return f"{row}:{fingerprint(lb.ensemble.MEMBERS['lightgbm'].defaults)}"
    if row == LINEAGE:
        return f"{row}:bags{args.lineage_bags}"
    if row == VOTE:
        return f"{row}:bags{args.vote_bags}"
    if row == DEFAULT:  # the library's defaults at the time of the run
        return f"{row}:{_defaults_fingerprint()}"
    if row == TUNED:
        searched = _tuned_fingerprint(args.tune_members)
        return f"{row}:{args.tune_trials}:{'+'.join(args.tune_members)}:{searched}"
    return row


def run_cached(
    store: CellStore,
    data: str,
    row: str,
    frame: pl.DataFrame,
    folds: np.ndarray,
    *,
    real: bool,
    args: Any,
) -> dict[str, Any]:
    """:func:`run_row`, or the cell ``store`` already holds for it."""
    key = cell_key(row, args)
    cell = store.get(data, key)
    if cell is None:
        cell = run_row(row, frame, folds, real=real, args=args)
        store.put(data, key, cell)
    return cell


def run_row(row: str, frame: pl.DataFrame, folds: np.ndarray, *, real: bool, args: Any) -> dict:
    """One row on one data set and one fold assignment: OOF pAUC and timings."""
    if row == TUNED:
        return run_tuned(frame, folds, real=real, args=args)
    start, cpu = time.perf_counter(), time.process_time()
    result = lb.cross_val_oof(
        model(row, small=args.small, real=real, args=args), frame, folds, progress=False
    )
    return _cell(result, time.perf_counter() - start, time.process_time() - cpu)


def run_tuned(frame: pl.DataFrame, folds: np.ndarray, *, real: bool, args: Any) -> dict:
    """``tune`` on ``folds``, then the best configuration cross-fitted on the same folds."""
    from lesionboost.tuning import SearchSpace

    members = tuple(args.tune_members)
    fixed: dict[str, Any] = {"n_jobs": args.n_jobs} if args.n_jobs else {}
    space = None
    if real:  # the counts leak on the real sample: keep the groups fixed, without them
        space = SearchSpace(members=members, feature_groups=False)
        fixed["feature_groups"] = NO_COUNTS
    start = time.perf_counter()
    _, best = lb.tune(
        frame,
        n_trials=args.tune_trials,
        folds=folds,
        members=members,
        search_space=space,
        fixed_params=fixed or None,
        rounds=SMALL_ROUNDS if args.small else None,
        progress=False,
    )
    tune_seconds = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    result = lb.cross_val_oof(
        lb.LesionBoostClassifier(**fixed, **best), frame, folds, progress=False
    )
    cell = _cell(result, time.perf_counter() - start, time.process_time() - cpu)
    cell["tune_seconds"] = tune_seconds
    cell["best_params"] = best
    return cell


# --------------------------------------------------------------------------- statistics
def gap_closed(model_pauc: float, raw_pauc: float, oracle_pauc: float) -> float | None:
    """``(model - raw) / (oracle - raw)``; None when the oracle does not differ from raw."""
    denominator = oracle_pauc - raw_pauc
    if denominator == 0:
        return None
    return (model_pauc - raw_pauc) / denominator


def sign_test(differences: Sequence[float]) -> dict[str, Any]:
    """Two-sided sign test of paired differences: positives among the non-zero ones."""
    positive = int(sum(d > 0 for d in differences))
    nonzero = int(sum(d != 0 for d in differences))
    p = 1.0 if nonzero == 0 else float(binomtest(positive, nonzero, 0.5).pvalue)
    return {"positive": positive, "nonzero": nonzero, "p": p}


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def summarise(runs: list[dict[str, Any]], rows: Sequence[str], *, oracle: bool) -> dict:
    """Per row over the runs of one column: pAUC, difference to the lineage, gap closed."""
    out: dict[str, Any] = {}
    for row in [*rows, *([ORACLE] if oracle else [])]:
        paucs = [r["oracle"] if row == ORACLE else r["models"][row]["pauc"] for r in runs]
        entry: dict[str, Any] = {
            "pauc_per_seed": paucs,
            "pauc_mean": float(np.mean(paucs)),
            "pauc_sd": float(np.std(paucs, ddof=1)) if len(paucs) > 1 else 0.0,
        }
        if row != ORACLE:
            diffs = [p - r["models"][LINEAGE]["pauc"] for p, r in zip(paucs, runs, strict=True)]
            cells = [r["models"][row] for r in runs]
            entry |= {
                "diff_vs_lineage_per_seed": diffs,
                "diff_vs_lineage_mean": float(np.mean(diffs)),
                "sign_test": sign_test(diffs),
                "wall_seconds": [c["wall_seconds"] for c in cells],
                "fit_seconds": [c["fit_seconds"] for c in cells],
            }
            if row == TUNED:
                entry["tune_seconds"] = [c["tune_seconds"] for c in cells]
        if oracle:
            gaps = [
                gap_closed(p, r["models"][RAW]["pauc"], r["oracle"])
                for p, r in zip(paucs, runs, strict=True)
            ]
            entry |= {"gap_per_seed": gaps, "gap_mean": _mean(gaps)}
        out[row] = entry
    return out


def overall(
    worlds: dict[str, dict[str, Any]], real: dict[str, Any] | None, rows: Sequence[str]
) -> dict[str, Any]:
    """Per row: mean and worst-case gap closed over the worlds, real-sample pAUC, times."""
    out = {}
    for row in rows:
        gaps = {w: s[row]["gap_mean"] for w, s in worlds.items()}
        known = {w: g for w, g in gaps.items() if g is not None}
        worst = min(known, key=known.__getitem__) if known else None
        walls = [v for s in worlds.values() for v in s[row]["wall_seconds"]]
        fits = [v for s in worlds.values() for v in s[row]["fit_seconds"]]
        entry = {
            "gap_mean_over_worlds": _mean(list(gaps.values())),
            "gap_worst": known[worst] if worst else None,
            "gap_worst_world": worst,
            "real_pauc": real[row]["pauc_mean"] if real else None,
            "wall_seconds_mean": float(np.mean(walls)) if walls else None,
            "fit_seconds_mean": float(np.mean(fits)) if fits else None,
        }
        if row == TUNED:
            tunes = [v for s in worlds.values() for v in s[row]["tune_seconds"]]
            entry["tune_seconds_mean"] = float(np.mean(tunes)) if tunes else None
        out[row] = entry
    return out


# --------------------------------------------------------------------------- tables
def _pct(value: float | None) -> str:
    return fmt(None if value is None else 100 * value, ".0f", " %")


def _vs(entry: dict[str, Any]) -> str:
    sign = entry["sign_test"]
    return (
        f"{entry['diff_vs_lineage_mean']:+.4f} "
        f"({sign['positive']}/{len(entry['diff_vs_lineage_per_seed'])} up, p {sign['p']:.2f})"
    )


def make_tables(report: dict[str, Any]) -> list[Table]:
    prefix = report.get("record_as", "robustness")
    rows, names = report["rows"], report["row_labels"]
    worlds = report["worlds"]
    summary, real = report["summary"], report["summary_real"]
    n_seeds, n_splits = len(report["seeds"]), report["n_splits"]
    seeds_text = "seed 0" if n_seeds == 1 else f"seeds 0-{n_seeds - 1}"
    where = (
        f"{report['n_patients']:,} simulated patients per world, {seeds_text}; "
        f"patient-grouped {n_splits}-fold OOF pAUC above 80 % TPR, the same folds for every "
        f"row; {report['environment']['cpu_count']} CPUs."
    )
    if not report["scenarios_available"]:
        where += " The simulator has no scenarios yet: one world, `default`."
    if report["small"]:
        where += " A --small run: it checks that the script works, not its figures."
    real_text = (
        f"Real sample: 3,449 Kaggle rows, {len(report['real_fold_seeds'])} fold seed(s) of "
        f"{n_splits} folds; per-patient counts leak the label there, so the lineage runs without "
        "`count_per_patient` and lesionboost without its `counts` group."
        if real
        else "The real sample was not scored."
    )
    tuned_text = (
        " `tune()` picks its configuration on the folds it is scored on, so its row is optimistic."
        if TUNED in rows
        else ""
    )

    def real_cell(row: str, cell: Callable[[dict[str, Any]], str]) -> str:
        return cell(real[row]) if real else NA

    pauc_rows = [
        [names[row], *(fmt(summary[w][row]["pauc_mean"]) for w in worlds),
         real_cell(row, lambda e: fmt(e["pauc_mean"]))]
        for row in rows
    ]  # fmt: skip
    pauc_rows.append([names[ORACLE], *(fmt(summary[w][ORACLE]["pauc_mean"]) for w in worlds), NA])
    pauc = Table(
        f"{prefix}/pauc",
        ["model", *worlds, REAL],
        pauc_rows,
        note=f"Mean OOF pAUC over seeds (0.2 is perfect). {where} {real_text}{tuned_text}",
    )
    vs_rows = []
    for row in rows:
        if row == LINEAGE:
            vs_rows.append([names[row], *(["reference"] * (len(worlds) + 1))])
            continue
        vs_rows.append([names[row], *(_vs(summary[w][row]) for w in worlds), real_cell(row, _vs)])

    def smallest_p(n: int) -> str:
        return f"{min(2 * 0.5**n, 1.0):.2f}"

    n_real = len(report["real_fold_seeds"])
    real_p = f" ({n_real} real-sample fold seeds: {smallest_p(n_real)})" if real else ""
    vs = Table(
        f"{prefix}/vs_lineage",
        ["model", *worlds, REAL],
        vs_rows,
        note=(
            "Mean paired pAUC difference to the lineage's bagged LightGBM, how many seeds (real "
            "sample: fold seeds) it is positive on, and the two-sided sign-test p over them "
            f"(`scipy.stats.binomtest`); with {n_seeds} seed(s) the smallest possible p is "
            f"{smallest_p(n_seeds)}{real_p}. Real-sample pairs share the data and differ only in "
            f"their folds. {where}"
        ),
    )
    gap_rows = [
        [names[row], *(_pct(summary[w][row]["gap_mean"]) for w in worlds)]
        for row in [*rows, ORACLE]
    ]
    gap = Table(
        f"{prefix}/gap",
        ["model", *worlds],
        gap_rows,
        note=(
            "Share of the gap between raw-column LightGBM and the tabular oracle closed, "
            "(model - raw) / (oracle - raw) per seed, mean over seeds; the oracle closes 100 % "
            f"by construction. {where}{tuned_text}"
        ),
    )
    summary_rows = []
    for row in rows:
        entry = report["overall"][row]
        worst = entry["gap_worst_world"]
        seconds = fmt(entry["fit_seconds_mean"], ".0f", " s")
        if row == TUNED and entry.get("tune_seconds_mean") is not None:
            seconds += f" (+ {entry['tune_seconds_mean']:.0f} s tuning)"
        summary_rows.append(
            [
                names[row],
                _pct(entry["gap_mean_over_worlds"]),
                _pct(entry["gap_worst"]) + (f" ({worst})" if worst and row != RAW else ""),
                fmt(entry["real_pauc"]),
                seconds,
            ]
        )
    summary_table = Table(
        f"{prefix}/summary",
        [
            "model",
            "gap closed (mean over worlds)",
            "gap closed (worst world)",
            "real sample pAUC",
            f"fit s per {n_splits}-fold run",
        ],
        summary_rows,
        note=(
            f"Gap closed: mean over seeds per world, then mean and worst over the worlds "
            f"({', '.join(worlds)}); fit s: the summed fold fits (prediction excluded) of one "
            f"{n_splits}-fold run, mean over the simulator cells. {where} {real_text} The real "
            f"sample is the veto: a model that gains on the simulator but loses there is not "
            f"adopted.{tuned_text}"
        ),
    )
    return [headline(report), pauc, vs, gap, summary_table]


def headline(report: dict[str, Any]) -> Table:
    """``robustness/headline``: the defaults against the lineage and the gap targets."""
    prefix = report.get("record_as", "robustness")
    summary, real, worlds = report["summary"], report["summary_real"], report["worlds"]
    entry = report["overall"][DEFAULT]
    behind = [w for w in worlds if summary[w][DEFAULT]["diff_vs_lineage_mean"] <= 0]
    ahead = len(worlds) - len(behind)
    real_diff = real[DEFAULT]["diff_vs_lineage_mean"] if real else None
    met = not behind and real_diff is not None and real_diff > 0
    where = f"{report['n_patients']} patients x {len(report['seeds'])} seeds per world"
    worst, mean = entry["gap_worst"], entry["gap_mean_over_worlds"]

    def status(ok: bool) -> str:
        return "" if ok else " (not met)"

    rows = [
        [
            f"defaults ahead of the public lineage: worlds ({where}) and real sample",
            f"all {len(worlds)} and real",
            f"{ahead}/{len(worlds)}"
            + (f" (behind: {', '.join(behind)})" if behind else "")
            + (f"; real {fmt(real_diff, '+.4f')}" if real else "; real sample not scored")
            + status(met),
        ],
        [
            "defaults: share of the raw -> tabular-oracle gap closed, worst world / mean",
            ">= 60 % / >= 70 %",
            f"{_pct(worst)} ({entry['gap_worst_world']}) / {_pct(mean)}"
            + status(worst is not None and mean is not None and worst >= 0.6 and mean >= 0.7),
        ],
        [
            "the lineage's bagged LightGBM: gap closed, worst world / mean",
            "--",
            f"{_pct(report['overall'][LINEAGE]['gap_worst'])} "
            f"({report['overall'][LINEAGE]['gap_worst_world']}) / "
            f"{_pct(report['overall'][LINEAGE]['gap_mean_over_worlds'])}",
        ],
    ]
    return Table(
        f"{prefix}/headline",
        ["what", "target", "measured"],
        rows,
        note=f"Simulator worlds: {', '.join(worlds)}.",
    )


def print_tables(tables: Sequence[Table]) -> None:
    for table in tables:
        print(f"\n{table.id}")
        print("| " + " | ".join(table.columns) + " |")
        print("|" + " --- |" * len(table.columns))
        for row in table.rows:
            print("| " + " | ".join(row) + " |")


# --------------------------------------------------------------------------- main
def _names(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__.splitlines()[0], name="robustness")
    cli.add_argument("--patients", type=int, default=None, help="patients (default 600; small 40)")
    cli.add_argument("--seeds", type=int, default=None, help="seeds per world (default 3; small 1)")
    cli.add_argument("--scenarios", default=None, help="comma list of worlds (default: all)")
    cli.add_argument("--rows", default=None, help=f"comma list of {', '.join(ROWS)} (default all)")
    cli.add_argument("--tune-trials", type=int, default=4, help="trials (0: no tuned row)")
    cli.add_argument("--tune-members", default="lightgbm", help="ensemble members tuned")
    cli.add_argument("--lineage-bags", type=int, default=3, help="bags of lineage_lgbm")
    cli.add_argument("--vote-bags", type=int, default=1, help="bags of lineage_vote")
    cli.add_argument("--real-repeats", type=int, default=None, help="real fold seeds (5)")
    cli.add_argument("--skip-real", action="store_true", help="skip the real sample")
    cli.add_argument("--n-jobs", type=int, default=None, help="booster threads (library default)")
    cli.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="JSON-lines cell store, so a rerun resumes (default runs/robustness-cells.jsonl; "
        "none with --small)",
    )
    cli.add_argument(
        "--record-as",
        default="robustness",
        metavar="NAME",
        help="name of the result file and prefix of its table ids (e.g. robustness_full for a "
        "full-size run kept next to the default one)",
    )
    add_reuse_argument(cli)
    args = cli.parse_args(argv)
    if not args.record_as.isidentifier():
        cli.error(f"--record-as {args.record_as!r}: use letters, digits and underscores")
    if args.out == RESULTS / "robustness.json" and args.record_as != "robustness":
        args.out = RESULTS / f"{args.record_as}.json"
    warnings.simplefilter("ignore", lb.DataWarning)
    warnings.filterwarnings("ignore", message=".*does not have valid feature names.*")
    if TUNED in (_names(args.rows) or ROWS) and args.tune_trials > 0:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)

    small = args.small
    n_patients = args.patients or (40 if small else 600)
    n_seeds = args.seeds or (1 if small else 3)
    n_splits = 2 if small else 5
    real_repeats = args.real_repeats or (1 if small else 5)
    if small:
        args.tune_trials = min(args.tune_trials, 2)
    args.tune_members = tuple(_names(args.tune_members) or ("lightgbm",))

    available, has_scenarios = available_worlds()
    worlds = _names(args.scenarios) or list(available)
    unknown = [w for w in worlds if w not in available]
    if unknown:
        cli.error(f"unknown scenario(s) {unknown}; the simulator has {list(available)}")
    requested = _names(args.rows) or list(ROWS)
    bad = [r for r in requested if r not in ROWS]
    if bad:
        cli.error(f"unknown row(s) {bad}; choose from {list(ROWS)}")
    rows = [r for r in ROWS if r in requested or r in REFERENCES]
    if args.tune_trials <= 0:
        rows = [r for r in rows if r != TUNED]
    seeds = list(range(n_seeds))
    checkpoint = args.checkpoint
    if checkpoint is None and not small:
        checkpoint = ROOT / "runs" / "robustness-cells.jsonl"
    store = CellStore(checkpoint, reuse=args.reuse)
    log(
        f"robustness: worlds {worlds}, rows {rows}, {n_patients} patients x {n_seeds} seed(s), "
        f"{n_splits} folds; raw row from {RAW_SOURCE}"
    )

    simulator: dict[str, list[dict[str, Any]]] = {}
    for world in worlds:
        simulator[world] = []
        for seed in seeds:
            start = time.perf_counter()
            sim = simulate(world, n_patients, seed, has_scenarios)
            frame = sim.train
            y = frame.get_column("target").to_numpy()
            oracle = lb.pauc_above_tpr(y, sim.train_oracle.get_column("tabular_logit").to_numpy())
            folds = lb.patient_folds(frame, n_splits=n_splits, seed=seed)
            log(
                f"[{world} seed {seed}] {frame.height:,} lesions, {int(y.sum())} malignant, "
                f"tabular oracle {oracle:.4f} ({time.perf_counter() - start:.1f} s to simulate)"
            )
            run: dict[str, Any] = {
                "seed": seed,
                "rows": frame.height,
                "positives": int(y.sum()),
                "oracle": float(oracle),
                "models": {},
            }
            for row in rows:
                data = f"p{n_patients}-k{n_splits}/{world}/{seed}"
                cell = run_cached(store, data, row, frame, folds, real=False, args=args)
                run["models"][row] = cell
                log(
                    f"[{world} seed {seed}] {row:13s} pAUC {cell['pauc']:.4f}  "
                    f"{cell['wall_seconds']:6.1f} s"
                    + (f" (+ {cell['tune_seconds']:.1f} s tuning)" if row == TUNED else "")
                )
            simulator[world].append(run)

    real_runs: list[dict[str, Any]] | None = None
    fold_seeds: list[int] = []
    sample = SHARED / "train-metadata-sample.csv"
    if not args.skip_real and sample.exists():
        meta = lb.read_metadata(sample)
        fold_sets = lb.repeated_patient_folds(
            meta, n_splits=n_splits, n_repeats=real_repeats, seed=0
        )
        real_runs = []
        for repeat, folds in enumerate(fold_sets):
            run = {"fold_seed": repeat, "models": {}}
            for row in rows:
                data = f"k{n_splits}/real/{repeat}"
                cell = run_cached(store, data, row, meta, folds, real=True, args=args)
                run["models"][row] = cell
                log(
                    f"[real fold seed {repeat}] {row:13s} pAUC {cell['pauc']:.4f}  "
                    f"{cell['wall_seconds']:6.1f} s"
                )
            real_runs.append(run)
            fold_seeds.append(repeat)
    elif not args.skip_real:
        log(f"real sample not found at {sample}; skipped")

    summary = {w: summarise(runs, rows, oracle=True) for w, runs in simulator.items()}
    summary_real = summarise(real_runs, rows, oracle=False) if real_runs else None
    report: dict[str, Any] = {
        "benchmark": "robustness",
        "record_as": args.record_as,
        "small": small,
        "n_patients": n_patients,
        "n_splits": n_splits,
        "seeds": seeds,
        "worlds": worlds,
        "scenarios_available": has_scenarios,
        "rows": rows,
        "row_labels": labels(args.tune_trials, args.tune_members),
        "reference": LINEAGE,
        "baseline": RAW,
        "raw_row_source": RAW_SOURCE,
        "settings": {
            "tune_trials": args.tune_trials,
            "tune_members": list(args.tune_members),
            "lineage_bags": args.lineage_bags,
            "vote_bags": args.vote_bags,
            "n_jobs": args.n_jobs,
            "rounds": SMALL_ROUNDS if small else None,
        },
        "simulator": simulator,
        "real_sample": real_runs,
        "real_fold_seeds": fold_seeds,
        "summary": summary,
        "summary_real": summary_real,
        "overall": overall(summary, summary_real, rows),
        "environment": {"cpu_count": os.cpu_count()},
    }
    tables = make_tables(report)
    print_tables(tables)
    written = write_results(args.out, report, tables)
    if written is not None:
        log(f"wrote {written}")
    return report


if __name__ == "__main__":
    main()

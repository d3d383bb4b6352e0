"""Tuning benchmark: trials per minute with 1 and 2 workers, and what a time budget buys.

What it measures, on one simulated cohort (``--patients`` training patients plus
held-out test patients with their oracle risk):

* **throughput** -- ``lesionboost.tune`` for ``--budget`` seconds with one worker
  process (all cores for the boosters) and with two worker processes sharing one
  Optuna journal file (the cores split between them); finished (complete or
  pruned) trials per minute of wall time, counted from the tune call's start to
  its end (a trial running at the deadline is finished, so the wall time exceeds
  the budget a little);
* **quality** -- for each run after its budget: the enqueued defaults' out-of-fold
  pAUC against the best trial's, and, because the best trial is chosen on those
  same folds, both configurations refitted on all training patients and scored on
  the held-out patients, next to the simulator's tabular and full oracles (the
  ceilings).

Both runs start a fresh study with the defaults as the first trial; the machine's
load average is recorded because shared machines are noisy.

Usage::

    python benchmarks/tuning.py [--budget SECONDS] [--patients N] [--out FILE.json]
    python benchmarks/tuning.py --small            # well under a minute; what the tests run

A full run writes ``benchmarks/results/tuning.json`` (tables ``tuning/headline`` and
``tuning/throughput``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Sleeping OpenMP waits: spinning threads collapse on a busy machine. OpenMP reads the
# policy when its runtime loads, so set it before any booster library is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from _common import Table, fmt, parser, write_results  # noqa: E402
from lesionboost.estimator import LesionBoostClassifier  # noqa: E402
from lesionboost.exceptions import DataWarning  # noqa: E402
from lesionboost.metrics import pauc_above_tpr  # noqa: E402
from lesionboost.simulate import simulate_slice3d  # noqa: E402
from lesionboost.tuning import DEFAULTS_ATTR, SearchSpace, build_config, tune  # noqa: E402

FULL = {
    "patients": 200,
    "test_patients": 100,
    "budget": 300.0,
    "folds": 3,
    "members": "lightgbm",
    "rounds": 60,
}
SMALL = {
    "patients": 30,
    "test_patients": 20,
    "budget": 8.0,
    "folds": 2,
    "members": "lightgbm",
    "rounds": 5,
}


def _run(
    train: Any,
    *,
    workers: int,
    budget: float,
    folds: int,
    members: tuple[str, ...],
    rounds: int,
    seed: int,
    folder: Path,
) -> tuple[optuna.Study, dict[str, Any]]:
    cores = os.cpu_count() or 1
    storage = f"journal:{folder / f'workers-{workers}.journal'}"
    started = time.perf_counter()
    result = tune(
        train,
        timeout=budget,
        storage=storage,
        study_name=f"bench-{workers}",
        n_splits=folds,
        seed=seed,
        members=members,
        rounds=rounds,
        n_workers=workers,
        fixed_params={"n_jobs": max(1, cores // workers), "random_state": seed},
        progress=False,
    )
    seconds = time.perf_counter() - started
    study = result.study
    states = [t.state for t in study.trials]
    finished = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    return study, {
        "workers": workers,
        "threads_per_worker": max(1, cores // workers),
        "wall_seconds": round(seconds, 1),
        "finished_trials": finished,
        "complete": states.count(TrialState.COMPLETE),
        "pruned": states.count(TrialState.PRUNED),
        "failed": states.count(TrialState.FAIL),
        "trials_per_minute": round(60.0 * finished / seconds, 3),
        "best_value": round(float(study.best_value), 5),
    }


def _held_out(config: dict[str, Any], train: Any, test: Any, seed: int) -> float:
    model = LesionBoostClassifier(**{**config, "random_state": seed})
    model.fit(train)
    return pauc_above_tpr(test["target"].to_numpy(), model.predict_proba(test)[:, 1])


def _workers_column(summary: dict[str, Any]) -> str:
    workers, threads = summary["workers"], summary["threads_per_worker"]
    return (
        f"{workers} worker{'s' if workers > 1 else ''} x {threads} "
        f"thread{'s' if threads > 1 else ''}"
    )


def tables(report: dict[str, Any]) -> list[Table]:
    """``tuning/headline`` and ``tuning/throughput`` from the report."""
    conf, quality = report["config"], report["quality"]
    one, two = report["workers_1"], report["workers_2"]
    q1, q2 = quality["workers_1"], quality["workers_2"]
    note = (
        f"Simulator seed {conf['seed']}: {conf['patients']} training patients = "
        f"{conf['train_rows']:,} lesions with {conf['train_positives']} malignant, "
        f"{conf['test_patients']} held-out patients = {conf['test_rows']:,} lesions with "
        f"{conf['test_positives']} malignant; members {conf['members']}, {conf['rounds']} rounds, "
        f"{conf['folds']} folds, {conf['budget']:g} s budget per run; {conf['cores']} cores, "
        f"load average {fmt(report['load_average_start'], '.2f')} at the start. "
        "Held-out ceilings: "
        f"tabular oracle {quality['oracle_tabular_test_pauc']:.4f}, full oracle "
        f"{quality['oracle_full_test_pauc']:.4f}."
    )
    if conf["small"]:
        note += " A --small run: it checks that the script works, not its figures."
    headline = Table(
        "tuning/headline",
        ["what", "target", "measured"],
        [
            [
                f"tuning throughput, 1 vs 2 workers ({conf['cores']} cores)",
                "--",
                f"{one['trials_per_minute']:.2f} vs {two['trials_per_minute']:.2f} trials/min "
                f"({report['speedup_2_over_1']:.2f}x)",
            ],
            [
                f"held-out pAUC, defaults vs the best after {conf['budget']:g} s of tuning "
                "(1 / 2 workers)",
                "--",
                f"{q1['defaults_test_pauc']:.4f} vs {q1['best_test_pauc']:.4f} / "
                f"{q2['best_test_pauc']:.4f}",
            ],
        ],
        note=note,
    )
    throughput = Table(
        "tuning/throughput",
        ["measure", _workers_column(one), _workers_column(two)],
        [
            [
                "finished trials (wall time)",
                f"{one['finished_trials']} ({one['wall_seconds']:.1f} s)",
                f"{two['finished_trials']} ({two['wall_seconds']:.1f} s)",
            ],
            ["complete / pruned / failed trials"]
            + [f"{r['complete']} / {r['pruned']} / {r['failed']}" for r in (one, two)],
            [
                "trials per minute",
                f"{one['trials_per_minute']:.2f}",
                f"{two['trials_per_minute']:.2f} ({report['speedup_2_over_1']:.2f}x)",
            ],
            [
                f"best OOF pAUC (defaults: {q1['defaults_oof_pauc']:.4f})",
                f"{q1['best_oof_pauc']:.4f}",
                f"{q2['best_oof_pauc']:.4f}",
            ],
            [
                f"held-out pAUC of the best (defaults: {q1['defaults_test_pauc']:.4f})",
                f"{q1['best_test_pauc']:.4f}",
                f"{q2['best_test_pauc']:.4f}",
            ],
        ],
        note=note,
    )
    return [headline, throughput]


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser(__doc__.splitlines()[0], name="tuning")
    cli.add_argument("--patients", type=int)
    cli.add_argument("--test-patients", type=int)
    cli.add_argument("--budget", type=float, help="seconds of tuning per run")
    cli.add_argument("--folds", type=int)
    cli.add_argument("--members", help="comma-separated ensemble members to tune")
    cli.add_argument("--rounds", type=int, help="boosting rounds per member")
    cli.add_argument("--seed", type=int, default=0)
    args = cli.parse_args(argv)
    base = SMALL if args.small else FULL
    conf = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in base.items()}
    members = tuple(conf["members"].split(","))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", DataWarning)

    sim = simulate_slice3d(conf["patients"], n_test_patients=conf["test_patients"], seed=args.seed)
    train = sim.train
    # The test oracle holds each held-out lesion's label and true (tabular) logit.
    test = sim.test.join(sim.test_oracle, on="isic_id", how="left", maintain_order="left")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report: dict[str, Any] = {
        "config": {
            **conf,
            "seed": args.seed,
            "cores": os.cpu_count(),
            "small": args.small,
            "train_rows": train.height,
            "train_positives": int(train["target"].sum()),
            "test_rows": test.height,
            "test_positives": int(test["target"].sum()),
        },
        "load_average_start": load,
    }
    runs = {}
    tmp = tempfile.mkdtemp(prefix="lesionboost-bench-tuning-")
    for workers in (1, 2):  # journal files stay until the quality part has read them
        study, summary = _run(
            train,
            workers=workers,
            budget=conf["budget"],
            folds=conf["folds"],
            members=members,
            rounds=conf["rounds"],
            seed=args.seed,
            folder=Path(tmp),
        )
        runs[workers] = study
        report[f"workers_{workers}"] = summary
        print(
            f"{workers} worker(s): {summary['finished_trials']} trials in "
            f"{summary['wall_seconds']} s = {summary['trials_per_minute']} trials/min "
            f"({summary['complete']} complete, {summary['pruned']} pruned), best OOF "
            f"pAUC {summary['best_value']}"
        )
    report["speedup_2_over_1"] = round(
        report["workers_2"]["trials_per_minute"] / report["workers_1"]["trials_per_minute"], 3
    )

    space = SearchSpace(members=members)
    quality: dict[str, Any] = {"budget_seconds": conf["budget"]}

    def held_out(params: dict[str, Any]) -> float:
        config = build_config(space, params, conf["rounds"])
        return round(_held_out(config, train, test, args.seed), 5)

    defaults_test = None
    for workers, study in runs.items():
        defaults = next(t for t in study.trials if t.user_attrs.get(DEFAULTS_ATTR))
        best = study.best_trial
        if defaults_test is None:  # the same configuration and data in both studies
            defaults_test = held_out(defaults.params)
        best_test = defaults_test if best.number == defaults.number else held_out(best.params)
        quality[f"workers_{workers}"] = {
            "finished_trials": report[f"workers_{workers}"]["finished_trials"],
            "defaults_oof_pauc": round(float(defaults.value), 5),
            "best_oof_pauc": round(float(best.value), 5),
            "best_trial": best.number,
            "defaults_test_pauc": defaults_test,
            "best_test_pauc": best_test,
        }
    y = test["target"].to_numpy()
    quality["oracle_tabular_test_pauc"] = round(pauc_above_tpr(y, test["tabular_logit"]), 5)
    quality["oracle_full_test_pauc"] = round(pauc_above_tpr(y, test["logit"]), 5)
    report["quality"] = quality
    shutil.rmtree(tmp, ignore_errors=True)
    report["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for workers in runs:
        q = quality[f"workers_{workers}"]
        print(
            f"{workers} worker(s), {conf['budget']:.0f} s: OOF pAUC defaults "
            f"{q['defaults_oof_pauc']} -> best {q['best_oof_pauc']} (trial {q['best_trial']}); "
            f"held-out pAUC defaults {q['defaults_test_pauc']} -> best {q['best_test_pauc']}"
        )
    print(
        f"held-out ceilings: tabular oracle {quality['oracle_tabular_test_pauc']}, full oracle "
        f"{quality['oracle_full_test_pauc']}"
    )
    print(
        f"speed-up of 2 workers over 1: {report['speedup_2_over_1']}x; load average "
        f"{load} -> {report['load_average_end']}"
    )
    write_results(args.out, report, tables(report))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())

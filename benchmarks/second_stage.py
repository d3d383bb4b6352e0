"""Second stages over the defaults' score: re-scoring each lesion against its patient's scores.

The top SLICE-3D solutions fed an image model's out-of-fold score to the tabular
model next to its patient-relative versions. This benchmark asks the same of the
tabular score itself: ``LesionBoostClassifier()`` is the first stage, and a
second stage sees each lesion's first-stage log-odds ``s`` relative to the other
lesions of its patient. Rows, scored on the cells of ``benchmarks/defaults.py``
(the same worlds, patients, seeds and patient folds) and the real sample:

* ``first``: the first stage alone (its out-of-fold pAUC, the reference);
* ``shift``: ``s + gamma * z``, with ``z`` the within-patient z-score of ``s``
  (:data:`GAMMA`; no fitted parameter);
* ``learned``: an L2 logistic regression (:data:`SECOND_STAGE_C`) on the
  patient-relative features of ``s`` (:func:`patient_features`), fitted by a
  nested cross-fit: in each outer fold the first stage is cross-fitted over
  ``--inner`` patient-grouped folds of the training patients, the second stage
  fitted on those out-of-fold scores, and applied to the first stage's score of
  the held-out patients. That is what a deployed second stage would cost: one
  more first-stage fit per inner fold;
* ``stacked``: the blend weights learned per data set (stacking): an L2 logistic
  regression (:data:`SECOND_STAGE_C`, standardised inputs) on the out-of-fold
  log-odds of each default member fitted alone, cross-fitted over the outer folds
  (the weights that score fold ``k`` are fitted on the other folds' rows). The
  member scores of those rows come from models that saw fold ``k``, so this is a
  slightly optimistic stand-in for stacking with inner folds, without their fits;
* ``linear_bound``: the rank blend ``rank(s) + w * rank(linear)`` of the first
  stage and the ``linear`` member alone, with ``w`` the best of :data:`WEIGHTS`
  *chosen on the held-out labels of each cell*. No learner can choose better, so
  it bounds what any data-driven choice of the linear member's weight (the
  largest lever of ``defaults.py``) could gain per world.

Cells are appended to a checkpoint (``--checkpoint``, default
``runs/second-stage-cells.jsonl``), so an interrupted run resumes; ``--reuse``
takes the keyed cells of a result file instead.

Usage::

    python benchmarks/second_stage.py [--patients 300] [--seeds 1] [--inner 4]
                                      [--scenarios a,b] [--real-repeats 3]
    python benchmarks/second_stage.py --small     # seconds; what the test suite runs

A full run writes ``benchmarks/results/second_stage.json`` (table
``second_stage/rows``).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.special import logit
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import lesionboost as lb
import robustness as _rb
from _common import Table, fingerprint, parser, write_results
from defaults import add_cell_arguments, cell_settings, row_cells

#: The weight of the within-patient z-score in the ``shift`` row.
GAMMA = 0.5
#: Inverse L2 strength of the ``learned`` second stage (on standardised features).
SECOND_STAGE_C = 1.0
#: The linear member's rank-blend weights the ``linear_bound`` row chooses from.
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
#: The rows, in table order: key -> label.
ROWS = {
    "first": "`LesionBoostClassifier()` (first stage)",
    "shift": f"first + {GAMMA} x within-patient z-score of its log-odds",
    "learned": "learned second stage on patient-relative scores (nested cross-fit)",
    "stacked": "member weights learned per data set (stacking, cross-fitted)",
    "linear_bound": "first + linear member, weight chosen on the held-out labels (bound)",
}
#: The patient-relative features of the ``learned`` second stage.
FEATURES = ("score", "z", "rank", "below_max", "patient_mean", "log_lesions")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def patient_features(score: np.ndarray, patient: np.ndarray) -> np.ndarray:
    """Each lesion's score next to where it stands among its patient's lesions.

    Columns (:data:`FEATURES`): the score; its within-patient z-score (0 for a
    patient with one lesion or equal scores); its within-patient rank scaled to
    [0, 1] (ties averaged; 0.5 for one lesion); its distance below the patient's
    highest score; the patient's mean score; the log of the patient's lesion count.

    Examples
    --------
    >>> f = patient_features(np.array([0.0, 2.0, 1.0]), np.array(["a", "a", "b"]))
    >>> f[:, 1].round(3).tolist(), f[:, 2].tolist(), f[:, 3].tolist()
    ([-0.707, 0.707, 0.0], [0.0, 1.0, 0.5], [-2.0, 0.0, 0.0])
    """
    s = pl.col("score")
    n = pl.len().over("patient")
    frame = pl.DataFrame({"score": np.asarray(score, dtype=np.float64), "patient": patient})
    return frame.select(
        s,
        ((s - s.mean().over("patient")) / s.std().over("patient"))
        .fill_nan(0.0)
        .fill_null(0.0)
        .alias("z"),
        pl.when(n > 1).then((s.rank().over("patient") - 1) / (n - 1)).otherwise(0.5).alias("rank"),
        (s - s.max().over("patient")).alias("below_max"),
        s.mean().over("patient").alias("patient_mean"),
        n.cast(pl.Float64).log().alias("log_lesions"),
    ).to_numpy()


def log_odds(probability: np.ndarray) -> np.ndarray:
    return np.asarray(logit(np.clip(probability, 1e-12, 1 - 1e-12)), dtype=np.float64)


def learned_second_stage(
    make_first: Callable[[], Any],
    frame: pl.DataFrame,
    folds: np.ndarray,
    first_oof: np.ndarray,
    *,
    inner: int,
    seed: int,
) -> np.ndarray:
    """Out-of-fold scores of the nested second stage (see the module docstring).

    ``first_oof`` is the first stage's out-of-fold probability on ``frame`` under
    ``folds``: the score each held-out patient gets from a first stage fitted on
    the other folds, which the second stage re-scores.
    """
    patients = frame.get_column("patient_id").to_numpy()
    y = frame.get_column("target").to_numpy()
    out = np.empty(frame.height)
    for fold in np.unique(folds):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        part = frame[train]
        inner_folds = lb.patient_folds(part, n_splits=inner, seed=seed)
        inner_oof = lb.cross_val_oof(make_first(), part, inner_folds, progress=False).oof
        stage = make_pipeline(StandardScaler(), LogisticRegression(C=SECOND_STAGE_C))
        stage.fit(patient_features(log_odds(inner_oof), patients[train]), y[train])
        features = patient_features(log_odds(first_oof[test]), patients[test])
        out[test] = stage.decision_function(features)
    return out


def stacked_scores(y: np.ndarray, folds: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Out-of-fold scores of blend weights learned on the other folds' rows.

    ``members`` holds one column per member: its out-of-fold log-odds.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], [300, 30])
    >>> members = np.column_stack([y + rng.normal(size=330), rng.normal(size=330)])
    >>> scores = stacked_scores(y, np.arange(330) % 3, members)
    >>> bool(lb.pauc_above_tpr(y, scores) > lb.pauc_above_tpr(y, members.sum(axis=1)))
    True
    """
    out = np.empty(y.size)
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        blend = make_pipeline(StandardScaler(), LogisticRegression(C=SECOND_STAGE_C))
        blend.fit(members[train], y[train])
        out[test] = blend.decision_function(members[test])
    return out


def best_blend(y: np.ndarray, first: np.ndarray, linear: np.ndarray) -> tuple[float, float]:
    """(pAUC, weight) of the best rank blend ``rank(first) + w rank(linear)`` over WEIGHTS."""
    a, b = rankdata(first) / first.size, rankdata(linear) / linear.size
    scored = [(float(lb.pauc_above_tpr(y, a + w * b)), w) for w in WEIGHTS]
    return max(scored)


def score_cell(frame: pl.DataFrame, folds: np.ndarray, *, real: bool, args: Any) -> dict[str, Any]:
    """Every row's pAUC (and the times it took) on one data set and fold split."""
    overrides = _rb.default_overrides(args.small, real)
    if args.n_jobs:
        overrides["n_jobs"] = args.n_jobs

    def make_first() -> Any:
        return lb.LesionBoostClassifier(**overrides)

    y = frame.get_column("target").to_numpy()
    patients = frame.get_column("patient_id").to_numpy()
    start = time.perf_counter()
    first = lb.cross_val_oof(make_first(), frame, folds, progress=False).oof
    first_seconds = time.perf_counter() - start
    s = log_odds(first)
    z = patient_features(s, patients)[:, FEATURES.index("z")]
    start = time.perf_counter()
    learned = learned_second_stage(
        make_first, frame, folds, first, inner=args.inner, seed=args.inner_seed
    )
    learned_seconds = time.perf_counter() - start
    alone = {
        member: lb.cross_val_oof(
            lb.LesionBoostClassifier(**overrides, members=(member,)), frame, folds, progress=False
        ).oof
        for member in make_first().members
    }
    bound, weight = best_blend(y, first, alone["linear"])
    stacked = stacked_scores(y, folds, np.column_stack([log_odds(v) for v in alone.values()]))
    return {
        "pauc": {
            "first": float(lb.pauc_above_tpr(y, s)),
            "shift": float(lb.pauc_above_tpr(y, s + GAMMA * z)),
            "learned": float(lb.pauc_above_tpr(y, learned)),
            "stacked": float(lb.pauc_above_tpr(y, stacked)),
            "linear_bound": bound,
        },
        "members_alone": {m: float(lb.pauc_above_tpr(y, v)) for m, v in alone.items()},
        "bound_weight": weight,
        "first_seconds": first_seconds,
        "learned_extra_seconds": learned_seconds,
    }


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """Per row: gap closed per world (mean over seeds), mean and worst; real-sample diff."""
    out: dict[str, Any] = {}
    for row in ROWS:
        gaps = {}
        for world, runs in report["simulator"].items():
            shares = [_rb.gap_closed(r["cell"]["pauc"][row], r["raw"], r["oracle"]) for r in runs]
            kept = [g for g in shares if g is not None]
            gaps[world] = float(np.mean(kept)) if kept else float("nan")
        worst = min(gaps, key=gaps.__getitem__) if gaps else None
        real = report["real_sample"]
        out[row] = {
            "gap_per_world": gaps,
            "gap_mean": float(np.mean(list(gaps.values()))) if gaps else None,
            "gap_worst": gaps[worst] if worst else None,
            "gap_worst_world": worst,
            "real_pauc": float(np.mean([r["pauc"][row] for r in real])) if real else None,
            "real_diff": float(np.mean([r["pauc"][row] - r["pauc"]["first"] for r in real]))
            if real
            else None,
        }
    return out


def make_table(report: dict[str, Any]) -> Table:
    summary = report["summary"]
    worlds = report["worlds"]
    rows = []
    for row, label in ROWS.items():
        entry = summary[row]
        cells = [_rb._pct(entry["gap_per_world"][w]) for w in worlds]
        real = "--" if entry["real_pauc"] is None else f"{entry['real_pauc']:.4f}"
        if entry["real_diff"] is not None and row != "first":
            real += f" ({entry['real_diff']:+.4f})"
        rows.append(
            [label, *cells, _rb._pct(entry["gap_mean"]), _rb._pct(entry["gap_worst"]), real]
        )
    extra = [
        r["cell"]["learned_extra_seconds"] for runs in report["simulator"].values() for r in runs
    ]
    first = [r["cell"]["first_seconds"] for runs in report["simulator"].values() for r in runs]
    return Table(
        "second_stage/rows",
        ["row", *worlds, "mean", "worst", "real sample pAUC (vs first stage)"],
        rows,
        note=(
            f"Share of the raw -> tabular-oracle gap closed per world ({report['n_patients']} "
            f"patients, seed(s) {', '.join(map(str, report['seeds']))}, "
            f"{report['n_splits']} patient folds: the cells of `defaults.py`); real sample: "
            f"mean OOF pAUC over {len(report['real_sample'])} fold seed(s). The learned stage's "
            f"{report['inner']} inner fits per outer fold took "
            f"{np.mean(extra) if extra else 0:.0f} s per world against "
            f"{np.mean(first) if first else 0:.0f} s for the first stage's 5-fold run."
        ),
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__.splitlines()[0], name="second_stage")
    add_cell_arguments(cli, "second-stage-cells.jsonl")
    cli.add_argument("--inner", type=int, default=None, help="inner folds (default 4)")
    args = cli.parse_args(argv)
    warnings.simplefilter("ignore", lb.DataWarning)
    warnings.filterwarnings("ignore", message=".*does not have valid feature names.*")
    small = args.small
    args.inner = args.inner or (2 if small else 4)
    args.inner_seed = 7
    settings = cell_settings(args, cli, "second-stage-cells.jsonl")
    n_patients, n_splits = settings["n_patients"], settings["n_splits"]
    # cells are keyed by what they run: the defaults (member defaults included) and this script
    version = fingerprint(
        {
            "defaults": _rb._defaults_fingerprint(),
            "small": small,
            "inner": args.inner,
            "gamma": GAMMA,
            "c": SECOND_STAGE_C,
            "weights": WEIGHTS,
            "rows": list(ROWS),
        }
    )
    per_world, real = row_cells(settings, version, "second_stage", score_cell, args)

    report: dict[str, Any] = {
        "benchmark": "second_stage",
        "small": small,
        "n_patients": n_patients,
        "n_splits": n_splits,
        "inner": args.inner,
        "seeds": settings["seeds"],
        "worlds": settings["worlds"],
        "rows": ROWS,
        "gamma": GAMMA,
        "second_stage_c": SECOND_STAGE_C,
        "weights": list(WEIGHTS),
        "simulator": per_world,
        "real_sample": real,
    }
    report["summary"] = summarise(report)
    table = make_table(report)
    _rb.print_tables([table])
    written = write_results(args.out, report, [table])
    if written is not None:
        log(f"wrote {written}")
    return report


if __name__ == "__main__":
    main()

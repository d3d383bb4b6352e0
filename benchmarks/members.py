"""What each member of the default ensemble closes alone, and what any blend of them could.

``LesionBoostClassifier()`` blends the ranks of its members (LightGBM and CatBoost
on every feature, LightGBM on the raw columns, the linear member) with fixed
weights. When the defaults fall short of a world's gap, either the blend weighs
the members badly or no member learned that world's risk. This benchmark tells
the two apart. On the cells of ``benchmarks/defaults.py`` (the same worlds,
seeds, patient folds and real-sample fold seeds; ``--patients`` sets the size) it
fits the defaults once per fold and keeps, for every held-out lesion, each
member's log-odds inside the fitted ensemble next to the blend's. Rows:

* each member alone: its held-out score as the ensemble computed it;
* ``blend``: ``LesionBoostClassifier()`` as it comes (the defaults' out-of-fold
  score);
* ``default_weights``: the defaults' own weights in the blend the bound rows
  use, next to ``blend`` a check that it ranks as the ensemble's does;
* ``per_cell_bound``: the rank blend ``sum_m w_m * q(rank of member m)``
  (``q`` the standard normal quantile of the pooled held-out ranks, as the
  ensemble's rank blend maps each member's ranks) with the weights of
  :data:`WEIGHT_GRID` that score best on *each cell's held-out labels*. No weights
  learned from a data set (stacking) can beat it there;
* ``fixed_worst`` and ``fixed_mean``: the one weight vector of the grid with the
  best worst-world (or mean) gap over all simulated cells, also chosen on the
  held-out labels: what the best choice of default weights for these members
  could reach.

Cells are appended to a checkpoint (``--checkpoint``, default
``runs/members-cells.jsonl``), so an interrupted run resumes; ``--reuse`` takes
the keyed cells of a result file instead. Each cell keeps the pAUC of every
weight vector of the grid, so the fixed rows are chosen from stored cells.

Usage::

    python benchmarks/members.py [--patients 300] [--seeds 1] [--scenarios a,b]
                                 [--real-repeats 3] [--checkpoint FILE]
    python benchmarks/members.py --small     # seconds; what the test suite runs

A full run writes ``benchmarks/results/members.json`` (tables
``members/headline`` and ``members/gap``).
"""

from __future__ import annotations

import itertools
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import norm, rankdata

import lesionboost as lb
import robustness as _rb
from _common import Table, fingerprint, parser, write_results
from defaults import add_cell_arguments, cell_settings, row_cells
from lesionboost.schema import LEAK_COLUMNS

#: The weights each member may take in the blends the bound rows choose from.
GRID_VALUES = (0.0, 1.0, 2.0, 5.0)


def weight_grid(n_members: int) -> list[tuple[float, ...]]:
    """Every weight vector over ``n_members`` members with values in :data:`GRID_VALUES`
    but all zero.

    Examples
    --------
    >>> grid = weight_grid(2)
    >>> len(grid), grid[0], (0.0, 0.0) in grid
    (15, (0.0, 1.0), False)
    """
    return [w for w in itertools.product(GRID_VALUES, repeat=n_members) if any(w)]


def normal_ranks(score: np.ndarray) -> np.ndarray:
    """The standard normal quantile of each score's rank (ties averaged).

    Examples
    --------
    >>> normal_ranks(np.array([3.0, 1.0, 2.0])).round(3).tolist()
    [0.967, -0.967, 0.0]
    """
    return np.asarray(norm.ppf((rankdata(score) - 0.5) / len(score)))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def held_out_scores(
    frame: pl.DataFrame, folds: np.ndarray, overrides: dict[str, Any]
) -> tuple[dict[str, np.ndarray], float]:
    """Each member's and the blend's held-out log-odds over ``folds``, and the fit seconds.

    The defaults are fitted once per fold, as ``lesionboost.cross_val_oof`` fits
    them; the members' scores are read from the fitted ensemble.
    """
    y = frame.get_column("target").to_numpy()
    followed = frame.get_column("lesion_id").is_not_null().to_numpy()
    X = frame.drop([c for c in LEAK_COLUMNS if c in frame.columns])
    scores: dict[str, np.ndarray] = {}
    seconds = 0.0
    for fold in np.unique(folds):
        held = folds == fold
        start = time.perf_counter()
        model = lb.LesionBoostClassifier(**overrides)
        model.fit(X.filter(pl.Series(~held)), y[~held], followed_up=followed[~held])
        seconds += time.perf_counter() - start
        valid = X.filter(pl.Series(held))
        ensemble = model.ensemble_
        # the members' log-odds as the fitted ensemble blends them (no public API
        # returns them one by one)
        prepared = ensemble._prepare(model.transform_features(valid), fit=False)
        margins = ensemble._member_margins(prepared)
        margins["blend"] = model.decision_function(valid)
        for name, values in margins.items():
            scores.setdefault(name, np.full(len(y), np.nan))[held] = values
    return scores, seconds


def score_cell(frame: pl.DataFrame, folds: np.ndarray, *, real: bool, args: Any) -> dict[str, Any]:
    """The members' and the blend's pAUC, and the pAUC of every weight vector of the grid."""
    overrides = _rb.default_overrides(args.small, real)  # no count features on the real sample
    if args.n_jobs:
        overrides["n_jobs"] = args.n_jobs
    y = frame.get_column("target").to_numpy()
    scores, seconds = held_out_scores(frame, folds, overrides)
    members = [m for m in scores if m != "blend"]
    ranks = np.column_stack([normal_ranks(scores[m]) for m in members])
    return {
        "members": members,
        "pauc": {name: float(lb.pauc_above_tpr(y, s)) for name, s in scores.items()},
        "grid": [
            float(lb.pauc_above_tpr(y, ranks @ np.asarray(w))) for w in weight_grid(len(members))
        ],
        "fit_seconds": seconds,
    }


def _gap(pauc: float, run: dict[str, Any]) -> float | None:
    return _rb.gap_closed(pauc, run["raw"], run["oracle"])


def _per_world(report: dict[str, Any], pauc_of: Any) -> dict[str, float]:
    """World -> mean over its seeds of the gap closed by the score ``pauc_of(cell)``."""
    out = {}
    for world, runs in report["simulator"].items():
        shares = [_gap(pauc_of(r["cell"]), r) for r in runs]
        kept = [g for g in shares if g is not None]
        out[world] = float(np.mean(kept)) if kept else float("nan")
    return out


def _row(report: dict[str, Any], pauc_of: Any) -> dict[str, Any]:
    gaps = _per_world(report, pauc_of)
    worst = min(gaps, key=gaps.__getitem__)
    real = [pauc_of(cell) for cell in report["real_sample"]]
    return {
        "gap_per_world": gaps,
        "gap_mean": float(np.mean(list(gaps.values()))),
        "gap_worst": gaps[worst],
        "gap_worst_world": worst,
        "real_pauc": float(np.mean(real)) if real else None,
    }


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """Every row's gap per world, mean and worst, and real-sample pAUC; the chosen weights."""
    members = report["members"]
    grid = weight_grid(len(members))
    rows: dict[str, Any] = {}
    for name in [*members, "blend"]:
        rows[name] = _row(report, lambda cell, name=name: cell["pauc"][name])
    defaults = lb.estimator.default_weights(tuple(members)) or dict.fromkeys(members, 1.0)
    at = grid.index(tuple(float(defaults[m]) for m in members))
    rows["default_weights"] = _row(report, lambda cell: cell["grid"][at])
    rows["per_cell_bound"] = _row(report, lambda cell: max(cell["grid"]))
    fixed = [_row(report, lambda cell, k=k: cell["grid"][k]) for k in range(len(grid))]
    for row, key in (("fixed_worst", "gap_worst"), ("fixed_mean", "gap_mean")):
        other = "gap_mean" if key == "gap_worst" else "gap_worst"
        best = max(range(len(grid)), key=lambda k: (fixed[k][key], fixed[k][other]))
        rows[row] = fixed[best] | {"weights": dict(zip(members, grid[best], strict=True))}
    return rows


def _label(row: str, entry: dict[str, Any]) -> str:
    if row in ("fixed_worst", "fixed_mean"):
        weights = ", ".join(f"`{m}` {w:g}" for m, w in entry["weights"].items())
        goal = "worst world" if row == "fixed_worst" else "mean"
        return f"one blend for every world, best {goal} on the held-out labels (bound): {weights}"
    if row == "default_weights":
        return "the defaults' weights, blended as the bounds blend (a check of that blend)"
    if row == "per_cell_bound":
        return "blend weights chosen per data set on its held-out labels (bound)"
    if row == "blend":
        return "`LesionBoostClassifier()` (the blend)"
    return f"`{row}` alone (inside the fitted ensemble)"


def _worst_and_mean(entry: dict[str, Any]) -> str:
    pct = _rb._pct
    return f"{pct(entry['gap_worst'])} ({entry['gap_worst_world']}) / {pct(entry['gap_mean'])}"


def make_tables(report: dict[str, Any]) -> list[Table]:
    summary, worlds = report["summary"], report["worlds"]
    pct = _rb._pct
    rows = []
    for row, entry in summary.items():
        real = "--" if entry["real_pauc"] is None else f"{entry['real_pauc']:.4f}"
        cells = [pct(entry["gap_per_world"][w]) for w in worlds]
        rows.append(
            [_label(row, entry), *cells, pct(entry["gap_mean"]), pct(entry["gap_worst"]), real]
        )
    seeds = ", ".join(map(str, report["seeds"]))
    grid = ", ".join(f"{v:g}" for v in GRID_VALUES)
    note = (
        f"{report['n_patients']} simulated patients per world, seed(s) {seeds} (the cells of "
        f"`defaults.py`, not the seeds `robustness.py` scores), {report['n_splits']} patient "
        "folds; share of the raw -> tabular-oracle gap closed, mean over seeds; real sample: "
        f"mean OOF pAUC over {len(report['real_sample'])} fold seed(s). Blends weigh the normal "
        f"scores of the members' held-out ranks, each weight one of {grid}."
    )
    gap = Table(
        "members/gap",
        ["row", *worlds, "mean", "worst", "real sample pAUC"],
        rows,
        note=note,
    )
    blend, bound = summary["blend"], summary["per_cell_bound"]
    fixed = summary["fixed_worst"]
    headline = Table(
        "members/headline",
        ["what", "target", "measured"],
        [
            [
                "the defaults' blend: worst world / mean share of the gap",
                "--",
                _worst_and_mean(blend),
            ],
            [
                "any blend of the same members, weights chosen per data set on its held-out "
                "labels: worst world / mean",
                "--",
                _worst_and_mean(bound),
            ],
            [
                "one blend for every world, chosen for its worst world on the held-out labels: "
                "worst world / mean",
                "--",
                _worst_and_mean(fixed),
            ],
        ],
        note=note,
    )
    return [headline, gap]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__.splitlines()[0], name="members")
    add_cell_arguments(cli, "members-cells.jsonl")
    args = cli.parse_args(argv)
    warnings.simplefilter("ignore", lb.DataWarning)
    warnings.filterwarnings("ignore", message=".*does not have valid feature names.*")
    settings = cell_settings(args, cli, "members-cells.jsonl")
    n_patients, n_splits = settings["n_patients"], settings["n_splits"]
    # cells are keyed by what they run: the defaults (member defaults included) and the grid
    version = fingerprint(
        {"defaults": _rb._defaults_fingerprint(), "small": args.small, "grid": GRID_VALUES}
    )
    per_world, real = row_cells(settings, version, "members", score_cell, args)
    members = next(iter(per_world.values()))[0]["cell"]["members"]
    report: dict[str, Any] = {
        "benchmark": "members",
        "small": args.small,
        "n_patients": n_patients,
        "n_splits": n_splits,
        "seeds": settings["seeds"],
        "worlds": settings["worlds"],
        "members": members,
        "grid_values": list(GRID_VALUES),
        "simulator": per_world,
        "real_sample": real,
    }
    report["summary"] = summarise(report)
    tables = make_tables(report)
    _rb.print_tables(tables)
    written = write_results(args.out, report, tables)
    if written is not None:
        log(f"wrote {written}")
    return report


if __name__ == "__main__":
    main()

"""How much of each simulated world's gap can a learner that knows the world's form close?

``benchmarks/robustness.py`` scores models by the share of the gap between
raw-column LightGBM and the tabular oracle they close, per world. The oracle
knows the world's risk exactly; a learner estimates it from a few hundred
positives. This benchmark measures what estimation alone costs: in every world of
``robustness.py`` (same patients, seeds and folds) it fits, by maximum likelihood
on the training folds, a model that *knows the form* of the world's risk and
only estimates its numbers:

* ``default``: the simulator's default risk form (``benchmarks/learnability.py``):
  one coefficient per soft-clipped term, centre intercepts and the melanoma offset;
* a single mechanism (``location_duckling``, ``percentile``, ``multivariate``,
  ``absolute``, ``interactions``): ``logit = a + sum_k b_k t_k + c f`` with one
  coefficient ``b_k >= 0`` per term ``t_k`` of the mechanism
  (``lesionboost.simulate.mechanism_terms``: the within-group z-scores, percentile
  ranks, distance, standardised columns or indicators it sums) and ``f`` the
  soft-clipped follow-up score;
* ``mixed``: ``logit = a + c f + log sum_j exp(a_j + sum_k b_jk t_jk)``, the
  mixture of hazards of the five mechanisms, each with its own intercept and
  coefficients.

The terms are rebuilt from the file's columns. The mechanism fits train on every
positive and one negative in ten, weighted by ten (the same likelihood in
expectation; the mixture's likelihood needs hundreds of L-BFGS iterations). The
follow-up score is latent, so each fit runs twice: with the oracle's score, and
with the score a learner can estimate from ``lesion_id``
(``learnability.estimated_followup``, out of fold).
The estimated row is the reference for what a learner at this sample size could
reach: it knows more than any general-purpose model (the form, the columns, the
transforms) and is still short of the oracle by the estimation error of its
coefficients.

Usage::

    python benchmarks/ceiling.py [--patients 600] [--seeds 3] [--scenarios a,b]
                                 [--checkpoint FILE] [--reuse RESULT_JSON]
    python benchmarks/ceiling.py --small     # seconds; what the test suite runs

A full run writes ``benchmarks/results/ceiling.json`` (tables ``ceiling/headline``,
``ceiling/pauc`` and ``ceiling/gap``); the gap table adds the rows of
``benchmarks/results/robustness.json`` when that file was measured on the same
patients, seeds and folds (``--robustness`` names another result file).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, special

import lesionboost as lb
from _common import (
    RESULTS,
    ROOT,
    CellStore,
    Table,
    add_reuse_argument,
    fmt,
    parser,
    write_results,
)
from learnability import (
    _well_specified_oof,
    estimated_followup,
    population_from_file,
    raw_lightgbm_oof_pauc,
)
from lesionboost.simulate import (
    MECHANISMS,
    SCENARIOS,
    TERM_NAMES,
    mechanism_terms,
    risk_features,
)

#: The two follow-up inputs of every fit: key -> label.
FOLLOWUPS = {
    "estimated": "form known, follow-up score estimated from `lesion_id`",
    "oracle": "form known, the oracle's follow-up score",
}
_FOLLOWUP = TERM_NAMES.index("followup")
#: The mechanism fits train on every positive and one negative in this many (weighted).
NEGATIVE_SHARE_INV = 10


class MechanismFit:
    """Maximum-likelihood fit of ``a + c f + log sum_j exp(a_j + T_j b_j)``.

    With one component this is a logistic regression on the component's terms
    and ``f``; every ``b`` and ``c`` is kept >= 0 (each term is signed so that
    higher is riskier), the first component's intercept is 0 (``a`` carries it).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> T = rng.normal(size=(20_000, 2))
    >>> y = (rng.random(20_000) < special.expit(-3 + T @ [1.0, 0.5])).astype(float)
    >>> fit = MechanismFit().fit([T], np.zeros(20_000), y)
    >>> np.round(fit.coef_[0], 1).tolist()
    [1.0, 0.5]
    """

    #: L-BFGS-B's relative tolerance on the log-likelihood: 1e-10 of a few thousand
    #: log-likelihood units is far below what moves a ranking.
    ftol = 1e-8

    def _unpack(self, theta: np.ndarray, widths: Sequence[int]) -> tuple[Any, ...]:
        n = len(widths)
        intercept, followup = theta[0], theta[1]
        offsets = np.concatenate([[0.0], theta[2 : 2 + n - 1]])
        coef, start = [], 1 + n
        for width in widths:
            coef.append(theta[start : start + width])
            start += width
        return intercept, followup, offsets, coef

    @staticmethod
    def _design(T: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """All terms side by side, and the component of each column."""
        owner = np.concatenate([np.full(t.shape[1], j) for j, t in enumerate(T)])
        return np.hstack([np.asarray(t, dtype=float) for t in T]), owner

    def _hazards(
        self, theta: np.ndarray, X: np.ndarray, owner: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Log-odds, and each component's share of the hazard (``d mixture / d hazard_j``)."""
        n_components = int(owner.max()) + 1
        intercept, followup_coef, offsets, _ = self._unpack(theta, np.bincount(owner))
        B = np.zeros((X.shape[1], n_components))
        B[np.arange(X.shape[1]), owner] = theta[1 + n_components :]
        hazards = X @ B + offsets
        top = hazards.max(axis=1, keepdims=True)
        weights = np.exp(hazards - top)
        total = weights.sum(axis=1, keepdims=True)
        mixture = (top + np.log(total))[:, 0]
        return intercept + mixture, weights / total, followup_coef

    def _loss(
        self,
        theta: np.ndarray,
        X: np.ndarray,
        owner: np.ndarray,
        f: np.ndarray,
        y: np.ndarray,
        weight: np.ndarray,
    ) -> tuple[float, np.ndarray]:
        base, share, followup_coef = self._hazards(theta, X, owner)
        z = base + followup_coef * f
        residual = weight * (special.expit(z) - y)
        weighted = residual[:, None] * share
        column_grad = (X.T @ weighted)[np.arange(X.shape[1]), owner]
        grad = np.concatenate(
            [[residual.sum(), residual @ f], weighted[:, 1:].sum(axis=0), column_grad]
        )
        return float(weight @ (np.logaddexp(0.0, z) - y * z)), grad

    def fit(
        self,
        T: Sequence[np.ndarray],
        f: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
    ) -> MechanismFit:
        """Fit on the component term matrices ``T``, follow-up input ``f`` and labels ``y``."""
        X, owner = self._design(T)
        weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, float)
        n_components = len(T)
        prevalence = float(np.clip(np.average(y, weights=weight), 1e-6, 0.5))
        start = np.concatenate(
            [[special.logit(prevalence), 0.3], np.zeros(n_components - 1), np.full(X.shape[1], 0.3)]
        )
        bounds = (
            [(None, None), (0.0, None)]
            + [(None, None)] * (n_components - 1)
            + [(0.0, None)] * X.shape[1]
        )
        result = optimize.minimize(
            self._loss,
            start,
            args=(X, owner, np.asarray(f, dtype=float), np.asarray(y, dtype=float), weight),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 5000, "ftol": self.ftol, "gtol": 1e-9},
        )
        self.theta_ = result.x
        self.n_iter_ = int(result.nit)
        self.widths_ = [t.shape[1] for t in T]
        _, _, self.offsets_, self.coef_ = self._unpack(result.x, self.widths_)
        return self

    def decision_function(self, T: Sequence[np.ndarray], f: np.ndarray) -> np.ndarray:
        """The fitted log-odds."""
        X, owner = self._design(T)
        base, _, followup_coef = self._hazards(self.theta_, X, owner)
        return base + followup_coef * np.asarray(f, dtype=float)


def components(world: str, train: Any) -> list[np.ndarray]:
    """The term matrices of ``world``'s mechanism(s), rebuilt from the file's columns."""
    lesion, patient, _ = population_from_file(train)
    return world_terms(world, lesion, patient)


def world_terms(world: str, lesion: Any, patient: Any) -> list[np.ndarray]:
    """The term matrices of ``world``'s mechanism(s) (none for ``default``)."""
    if world == "default":
        return []
    names = MECHANISMS if world == "mixed" else (world,)
    return [mechanism_terms(name, lesion, patient) for name in names]


def well_specified_oof(
    world: str,
    y: np.ndarray,
    F: np.ndarray,
    centre: np.ndarray,
    T: Sequence[np.ndarray],
    folds: np.ndarray,
) -> np.ndarray:
    """Out-of-fold log-odds of the fit that knows ``world``'s form.

    ``F`` and ``centre`` are the default risk's terms and centre index
    (:func:`learnability.risk_terms`), ``T`` the world's term matrices
    (:func:`world_terms`).
    """
    y = np.asarray(y, dtype=float)
    if world == "default":
        return _well_specified_oof(F, centre, y, folds)
    f = F[:, _FOLLOWUP]
    oof = np.zeros(len(y))
    for k in np.unique(folds):
        fit_rows, held_out = folds != k, folds == k
        # every positive and a random 1 in NEGATIVE_SHARE_INV negatives, weighted back:
        # the same likelihood in expectation, at a tenth of the cost
        rng = np.random.default_rng(int(k))
        keep = fit_rows & ((y == 1) | (rng.random(len(y)) < 1 / NEGATIVE_SHARE_INV))
        weight = np.where(y[keep] == 1, 1.0, float(NEGATIVE_SHARE_INV))
        model = MechanismFit().fit([t[keep] for t in T], f[keep], y[keep], sample_weight=weight)
        oof[held_out] = model.decision_function([t[held_out] for t in T], f[held_out])
    return oof


def run_cell(world: str, n_patients: int, seed: int, n_splits: int, *, small: bool) -> dict:
    """Raw LightGBM, the two well-specified fits and the oracle on one world and seed."""
    sim = lb.simulate_slice3d(n_patients, seed=seed, scenario=world)
    train = sim.train
    y = train.get_column("target").to_numpy()
    folds = lb.patient_folds(train, n_splits=n_splits, seed=seed)  # robustness.py's folds
    oracle = lb.pauc_above_tpr(y, sim.train_oracle.get_column("tabular_logit").to_numpy())
    start = time.perf_counter()
    inputs = {
        "estimated": estimated_followup(train, folds, rounds=20 if small else 200),
        "oracle": sim.train_oracle.get_column("followup_score").to_numpy(),
    }
    lesion, patient, centre = population_from_file(train)  # once per cell
    T = world_terms(world, lesion, patient)
    fits = {
        name: lb.pauc_above_tpr(
            y, well_specified_oof(world, y, risk_features(lesion, patient, f), centre, T, folds)
        )
        for name, f in inputs.items()
    }
    seconds = time.perf_counter() - start
    raw = raw_lightgbm_oof_pauc(train, folds, small=small)
    return {
        "world": world,
        "seed": seed,
        "rows": int(len(y)),
        "positives": int(y.sum()),
        "tabular_oracle_pauc": oracle,
        "raw_lightgbm_oof_pauc": raw,
        "well_specified_oof_pauc": fits,
        "gap_closed": {name: (v - raw) / (oracle - raw) for name, v in fits.items()},
        "seconds": seconds,
    }


def robustness_rows(path: Path, settings: dict[str, Any], worlds: Sequence[str]) -> dict[str, Any]:
    """Gap closed per world by the rows of a ``robustness.py`` result that scored these cells."""
    if not path.exists():
        return {}
    report = json.loads(path.read_text())
    same = (
        report.get("n_patients") == settings["patients"]
        and report.get("seeds") == list(range(settings["seeds"]))
        and report.get("n_splits") == settings["folds"]
    )
    if not same:
        return {}
    out: dict[str, Any] = {}
    for row, label in report.get("row_labels", {}).items():
        per_world = {
            world: report["summary"][world][row]["gap_mean"]
            for world in worlds
            if row in report.get("summary", {}).get(world, {})
        }
        # raw and the tabular oracle close 0 % and 100 % by definition
        if row not in ("raw", "tabular_oracle") and len(per_world) == len(worlds):
            out[label] = per_world
    return out


def _pct(share: float) -> str:
    return fmt(100 * share, ".0f", " %")


def summarise(cells: list[dict[str, Any]], worlds: Sequence[str]) -> dict[str, Any]:
    """Means over seeds per world, and mean / worst over worlds, per fit."""
    per_world: dict[str, Any] = {}
    for world in worlds:
        runs = [c for c in cells if c["world"] == world]
        per_world[world] = {
            "raw": float(np.mean([r["raw_lightgbm_oof_pauc"] for r in runs])),
            "tabular_oracle": float(np.mean([r["tabular_oracle_pauc"] for r in runs])),
            "positives": float(np.mean([r["positives"] for r in runs])),
            **{
                name: {
                    "pauc": float(np.mean([r["well_specified_oof_pauc"][name] for r in runs])),
                    "gap": float(np.mean([r["gap_closed"][name] for r in runs])),
                }
                for name in FOLLOWUPS
            },
        }
    overall = {}
    for name in FOLLOWUPS:
        gaps = {w: per_world[w][name]["gap"] for w in worlds}
        worst = min(gaps, key=gaps.__getitem__)
        overall[name] = {
            "mean": float(np.mean(list(gaps.values()))),
            "worst": gaps[worst],
            "worst_world": worst,
        }
    return {"per_world": per_world, "overall": overall}


def tables(report: dict[str, Any], *, small: bool) -> list[Table]:
    """``ceiling/headline``, ``ceiling/pauc`` and ``ceiling/gap``."""
    settings, worlds = report["settings"], report["worlds"]
    per_world, overall = report["summary"]["per_world"], report["summary"]["overall"]
    seeds = settings["seeds"]
    note = (
        f"{settings['patients']:,} simulated patients per world (about "
        f"{np.mean([per_world[w]['positives'] for w in worlds]):.0f} malignant), "
        f"seed{'s 0-' + str(seeds - 1) if seeds > 1 else ' 0'}; patient-grouped "
        f"{settings['folds']}-fold out-of-fold pAUC above 80 % TPR, the folds of "
        "benchmarks/robustness.py; fits by L-BFGS on the training folds."
    )
    if small:
        note += " A --small run: it checks that the script works, not its figures."
    est, orc = overall["estimated"], overall["oracle"]
    headline = Table(
        "ceiling/headline",
        ["what", "target", "measured"],
        [
            [
                "share of the raw -> tabular-oracle gap a fit of each world's own form closes, "
                "worst world / mean (follow-up score estimated)",
                "--",
                f"{_pct(est['worst'])} ({est['worst_world']}) / {_pct(est['mean'])}",
            ],
            [
                "the same with the oracle's follow-up score",
                "--",
                f"{_pct(orc['worst'])} ({orc['worst_world']}) / {_pct(orc['mean'])}",
            ],
        ],
        note=note,
    )
    pauc_rows = [["LightGBM (raw columns)", *(fmt(per_world[w]["raw"]) for w in worlds)]]
    for name, label in FOLLOWUPS.items():
        pauc_rows.append([label, *(fmt(per_world[w][name]["pauc"]) for w in worlds)])
    pauc_rows.append(["tabular oracle", *(fmt(per_world[w]["tabular_oracle"]) for w in worlds)])
    pauc = Table("ceiling/pauc", ["fit", *worlds], pauc_rows, note=note + " Mean over seeds.")
    gap_rows = [
        [label, *(_pct(per_world[w][name]["gap"]) for w in worlds)]
        for name, label in FOLLOWUPS.items()
    ]
    for label, shares in report.get("robustness_rows", {}).items():
        gap_rows.append([f"{label} (robustness.py)", *(_pct(shares[w]) for w in worlds)])
    gap = Table(
        "ceiling/gap",
        ["share of the gap closed", *worlds],
        gap_rows,
        note=note + " (model - raw) / (oracle - raw) per seed, mean over seeds.",
    )
    return [headline, pauc, gap]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__.splitlines()[0], name="ceiling")
    cli.add_argument("--patients", type=int, default=None, help="patients per world (600)")
    cli.add_argument("--seeds", type=int, default=None, help="seeds per world (3)")
    cli.add_argument("--scenarios", default=None, help="comma list of worlds (default all)")
    cli.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="JSON-lines cell store, so a rerun resumes (default runs/ceiling-cells.jsonl; "
        "none with --small)",
    )
    cli.add_argument(
        "--robustness",
        type=Path,
        default=RESULTS / "robustness.json",
        help="robustness.py result whose rows the gap table adds (when measured on the same cells)",
    )
    add_reuse_argument(cli)
    args = cli.parse_args(argv)
    warnings.simplefilter("ignore", lb.DataWarning)
    small = args.small
    n_patients = args.patients or (40 if small else 600)
    n_seeds = args.seeds or (1 if small else 3)
    n_splits = 2 if small else 5
    worlds = [w for w in (args.scenarios or ",".join(SCENARIOS)).split(",") if w]
    unknown = [w for w in worlds if w not in SCENARIOS]
    if unknown:
        cli.error(f"unknown scenario(s) {unknown}; the simulator has {list(SCENARIOS)}")
    checkpoint = args.checkpoint or (None if small else ROOT / "runs" / "ceiling-cells.jsonl")
    store = CellStore(checkpoint, reuse=args.reuse)
    cells = []
    for world in worlds:
        for seed in range(n_seeds):
            data, row = f"p{n_patients}-k{n_splits}/{world}/{seed}", f"fits:1in{NEGATIVE_SHARE_INV}"
            cell = store.get(data, row)
            if cell is None:
                cell = run_cell(world, n_patients, seed, n_splits, small=small)
                store.put(data, row, cell)
            cells.append(cell)
            fits = cell["well_specified_oof_pauc"]
            print(
                f"[{world} seed {seed}] {cell['positives']} malignant: "
                f"raw {cell['raw_lightgbm_oof_pauc']:.4f}, "
                f"form known {fits['estimated']:.4f} (oracle follow-up {fits['oracle']:.4f}), "
                f"oracle {cell['tabular_oracle_pauc']:.4f}; gap closed "
                f"{cell['gap_closed']['estimated']:.0%} ({cell['seconds']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    settings = {"patients": n_patients, "seeds": n_seeds, "folds": n_splits}
    report: dict[str, Any] = {
        "settings": settings,
        "worlds": worlds,
        "cells": cells,
        "summary": summarise(cells, worlds),
        "robustness_rows": robustness_rows(args.robustness, settings, worlds),
    }
    write_results(args.out, report, tables(report, small=small))
    return report


if __name__ == "__main__":
    main()
    sys.exit(0)

"""How much of the gap to the tabular oracle can be learned from ~400 positives?

The simulator's tabular risk is a known parametric function of the columns
(``lesionboost.simulate.RiskModel``): soft-clipped absolute and within-patient
terms feeding a shared part plus the log-sum-exp of a melanoma and a
keratinocyte-cancer hazard. This benchmark fits exactly that form -- its
coefficients, centre intercepts and melanoma offset, nothing else -- by maximum
likelihood on the training folds (patient-grouped 5-fold, the folds
``benchmarks/quality.py`` uses) and scores the held-out fold.

The result is a *well-specified* learner: it knows the functional form and only
estimates 33 numbers. Comparing it with ``LesionBoostClassifier`` in
``benchmarks/quality.py`` separates what discovering the form costs a flexible
model at this sample size from what estimating its coefficients costs any learner.
Each fit is put on the scale ``quality.py`` uses: the share of the gap between the
raw-column LightGBM baseline (fitted here on the same folds) and the tabular oracle
that it closes.

One input of the risk, the follow-up score (how likely a clinic is to follow a
benign lesion up), is a latent linear function the oracle knows exactly. The fit
is therefore run three ways: with the oracle's score; with the score a learner
can *estimate* -- a LightGBM of "has a ``lesion_id``" on the benign lesions
(the train-only label that the 7th place of the Kaggle ISIC 2024 competition
learned from, per its public write-up), patient-grouped out-of-fold, put on the
simulator's benign scale; and with no follow-up term. The estimated row is a
reference point for a learner that sees the file and knows the form (a better
follow-up estimator could still beat it).

Usage::

    python benchmarks/learnability.py [--seeds 3] [--out FILE.json]
    python benchmarks/learnability.py --small     # seconds; what the test suite runs

A full run writes ``benchmarks/results/learnability.json`` (tables
``learnability/headline`` and ``learnability/fits``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy import optimize, special
from scipy.stats import spearmanr

import lesionboost as lb
from _common import Table, fmt, parser, write_results
from lesionboost.schema import NUMERIC_COLUMNS
from lesionboost.simulate import (
    CENTRES,
    LOCATIONS,
    TERM_NAMES,
    RiskModel,
    covariates,
    load_tables,
    risk_features,
    term_masks,
)

#: The three ways the follow-up input is given to the fit: report key -> label.
FITS = {
    "oracle": ("well_specified_oof_pauc", "follow-up score: the oracle's"),
    "estimated": (
        "well_specified_estimated_followup_oof_pauc",
        "follow-up score: estimated from `lesion_id` by a LightGBM",
    ),
    "none": ("well_specified_no_followup_oof_pauc", "no follow-up term"),
}


def population_from_file(
    train: pl.DataFrame,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """The simulator's lesion and patient arrays and the centre index, rebuilt from the file.

    Lesion arrays: the numeric columns (age excepted), ``patient`` (index),
    ``site`` and ``location`` (coded as the simulator codes them); patient arrays:
    ``age`` and ``male``.
    """
    _, owner = np.unique(train.get_column("patient_id").to_numpy(), return_inverse=True)
    coded = covariates(train)  # site, centre, age and sex coded as the simulator codes them
    lesion: dict[str, np.ndarray] = {
        name: train.get_column(name).cast(pl.Float64).to_numpy()
        for name in NUMERIC_COLUMNS
        if name != "age_approx"
    }
    lesion["patient"] = owner
    lesion["site"] = coded["site"]
    location_index = {name: k for k, name in enumerate(LOCATIONS)}
    lesion["location"] = np.array(
        [location_index[v] for v in train.get_column("tbp_lv_location").to_list()]
    )
    n_patients = int(owner.max()) + 1
    age, male = np.full(n_patients, np.nan), np.full(n_patients, 0.5)
    age[owner], male[owner] = coded["age"], coded["male"]
    return lesion, {"age": age, "male": male}, coded["centre"]


def risk_terms(train: pl.DataFrame, followup: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The simulator's soft-clipped risk terms and centre index, rebuilt from the file's columns.

    ``followup`` is the follow-up score: the oracle's ``followup_score`` (a linear
    function of the latent normal scores the simulator maps to the columns, given
    rather than inverted) or an estimate of it (:func:`estimated_followup`).
    """
    lesion, patient, centre = population_from_file(train)
    return risk_features(lesion, patient, followup), centre


class WellSpecifiedRisk:
    """Maximum-likelihood fit of the simulator's tabular risk form (coefficients >= 0)."""

    def __init__(self, n_centres: int) -> None:
        self.masks = term_masks()
        self.n_terms = len(TERM_NAMES)
        self.n_centres = n_centres

    def _model(self, theta: np.ndarray) -> RiskModel:
        """The simulator's risk model with these parameters (the image part plays no role)."""
        return RiskModel(
            coef=theta[: self.n_terms],
            centre=theta[self.n_terms : self.n_terms + self.n_centres],
            melanoma_offset=float(theta[-1]),
            image_sd=0.0,
            scc_offset=0.0,
        )

    def _loss(self, theta: np.ndarray, F: np.ndarray, centre: np.ndarray, y: np.ndarray):  # type: ignore[no-untyped-def]
        shared, melanoma, keratinocyte = self._model(theta).hazards(F, centre)
        z = shared + np.logaddexp(melanoma, keratinocyte)
        residual = special.expit(z) - y
        w_mel = special.expit(melanoma - keratinocyte)
        grad_coef = (
            (F.T @ residual) * self.masks["shared"]
            + (F.T @ (residual * w_mel)) * self.masks["melanoma"]
            + (F.T @ (residual * (1.0 - w_mel))) * self.masks["keratinocyte"]
        )
        grad_centre = np.bincount(centre, weights=residual, minlength=self.n_centres)
        grad = np.concatenate([grad_coef, grad_centre, [np.sum(residual * w_mel)]])
        return float(np.sum(np.logaddexp(0.0, z) - y * z)), grad

    def fit(self, F: np.ndarray, centre: np.ndarray, y: np.ndarray) -> WellSpecifiedRisk:
        start = np.concatenate([np.full(self.n_terms, 0.3), np.full(self.n_centres, -7.0), [0.0]])
        bounds = [(0.0, None)] * self.n_terms + [(None, None)] * (self.n_centres + 1)
        result = optimize.minimize(
            self._loss,
            start,
            args=(F, centre, y.astype(float)),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            # Tight tolerances: with the default ftol the fit could stop after ~20
            # iterations in a flat stretch, hundreds of log-likelihood units short.
            options={"maxiter": 5000, "ftol": 1e-14, "gtol": 1e-9},
        )
        self.theta_ = result.x
        return self

    def decision_function(self, F: np.ndarray, centre: np.ndarray) -> np.ndarray:
        return self._model(self.theta_).tabular_logit(F, centre)


def estimated_followup(train: pl.DataFrame, folds: np.ndarray, *, rounds: int = 200) -> np.ndarray:
    """The follow-up score as a learner can estimate it from ``lesion_id``, out of fold.

    Each fold is scored by a LightGBM of "this benign lesion has a ``lesion_id``"
    fitted on the default ``LesionFeaturizer`` features of the benign lesions of
    the other folds: no lesion is scored by a model that saw its patient, and no
    label of the scored fold is used. (Not nested: the estimates of the rows a
    well-specified fit trains on come from follow-up models that saw the held-out
    fold's benign ``lesion_id`` -- never its malignancy labels.) The log-odds of all
    rows are mapped onto the simulator's benign scale of the score (the
    calibration tables' mean and SD; the rows are 99.9 % benign).
    """
    import lightgbm

    X, y = lb.split_xy(train)
    followed = train.get_column("lesion_id").is_not_null().to_numpy()
    features = lb.LesionFeaturizer().fit(X).transform(X).to_numpy().astype(np.float32)
    benign = np.asarray(y) == 0
    score = np.zeros(len(benign))
    params = {
        "objective": "binary",
        "learning_rate": 0.08,
        "num_leaves": 31,
        "min_data_in_leaf": 100,
        "feature_fraction": 0.5,
        "verbose": -1,
        "seed": 0,
    }
    for k in np.unique(folds):
        fit_rows = benign & (folds != k)
        booster = lightgbm.train(
            params,
            lightgbm.Dataset(features[fit_rows], label=followed[fit_rows].astype(int)),
            num_boost_round=rounds,
        )
        score[folds == k] = booster.predict(features[folds == k], raw_score=True)
    scale = load_tables()["followup"]
    standard = (score - score.mean()) / score.std()
    return standard * scale["benign_sd"] + scale["benign_mean"]


def _well_specified_oof(
    F: np.ndarray, centre: np.ndarray, y: np.ndarray, folds: np.ndarray
) -> np.ndarray:
    oof = np.zeros(len(y))
    for k in np.unique(folds):
        fit_rows, held_out = folds != k, folds == k
        model = WellSpecifiedRisk(len(CENTRES)).fit(F[fit_rows], centre[fit_rows], y[fit_rows])
        oof[held_out] = model.decision_function(F[held_out], centre[held_out])
    return oof


def raw_lightgbm_oof_pauc(train: pl.DataFrame, folds: np.ndarray, *, small: bool) -> float:
    """OOF pAUC of ``quality.py``'s raw-column LightGBM baseline on these folds."""
    from quality import RAW, models

    return lb.cross_val_oof(models(small)[RAW](), train, folds, progress=False).pauc


def gap_closed(pauc: float, raw: float, oracle: float) -> float:
    """Share of the gap between raw-column LightGBM and the tabular oracle that ``pauc`` closes."""
    return (pauc - raw) / (oracle - raw)


def run_seed(
    n_patients: int, seed: int, n_splits: int, *, small: bool | None = None
) -> dict[str, Any]:
    """The three well-specified fits, the raw-column baseline and the oracle on one seed."""
    small = n_patients < 200 if small is None else small
    sim = lb.simulate_slice3d(n_patients, seed=seed)
    train = sim.train
    y = train.get_column("target").to_numpy()
    folds = lb.patient_folds(train, n_splits=n_splits, seed=0)
    oracle_followup = sim.train_oracle.get_column("followup_score").to_numpy()
    start = time.perf_counter()
    estimate = estimated_followup(train, folds, rounds=20 if small else 200)
    benign = y == 0
    inputs = {
        "oracle": oracle_followup,
        "estimated": estimate,
        # a constant score: the follow-up term drops out (its value is absorbed by the intercepts)
        "none": np.full(len(y), load_tables()["followup"]["benign_mean"]),
    }
    paucs, oof = {}, None
    for name, followup in inputs.items():
        F, centre = risk_terms(train, followup)
        scores = _well_specified_oof(F, centre, y, folds)
        paucs[name] = lb.pauc_above_tpr(y, scores)
        if name == "oracle":
            oof = scores
    seconds = time.perf_counter() - start
    tabular = sim.train_oracle.get_column("tabular_logit").to_numpy()
    oracle = lb.pauc_above_tpr(y, tabular)
    start = time.perf_counter()
    raw = raw_lightgbm_oof_pauc(train, folds, small=small)
    return {
        "seed": seed,
        "rows": int(len(y)),
        "positives": int(y.sum()),
        "well_specified_oof_pauc": paucs["oracle"],
        "well_specified_estimated_followup_oof_pauc": paucs["estimated"],
        "well_specified_no_followup_oof_pauc": paucs["none"],
        "followup_estimate_spearman_benign": float(
            spearmanr(estimate[benign], oracle_followup[benign]).statistic
        ),
        "tabular_oracle_pauc": oracle,
        "correlation_with_oracle": float(np.corrcoef(oof, tabular)[0, 1]),
        "seconds": seconds,
        "raw_lightgbm_oof_pauc": raw,
        "raw_lightgbm_seconds": time.perf_counter() - start,
        "gap_closed": {name: gap_closed(paucs[name], raw, oracle) for name in FITS},
    }


def _seeds(n: int) -> str:
    return "seed 0" if n == 1 else f"seeds 0-{n - 1}"


def _pct(share: float) -> str:
    return fmt(100 * share, ".0f", " %")


def tables(report: dict[str, Any], *, small: bool) -> list[Table]:
    """``learnability/headline`` and ``learnability/fits`` from the report."""
    runs = report["runs"]
    settings = report["settings"]
    n = len(runs)
    positives = np.mean([r["positives"] for r in runs])
    note = (
        f"{settings['patients']:,} simulated patients (~{np.mean([r['rows'] for r in runs]):,.0f} "
        f"lesions, ~{positives:.0f} malignant), {_seeds(n)}; patient-grouped "
        f"{settings['folds']}-fold out-of-fold pAUC above 80 % TPR (the folds of quality.py); "
        f"raw-column LightGBM {report['mean_raw_lightgbm']:.4f}, tabular oracle "
        f"{report['mean_tabular_oracle']:.4f} (mean); {os.cpu_count()} CPUs."
    )
    if small:
        note += " A --small run: it checks that the script works, not its figures."
    closed = report["gap_closed"]
    estimated = closed["estimated"]
    headline = Table(
        "learnability/headline",
        ["what", "target", "measured"],
        [
            [
                "share of the raw-LightGBM → tabular-oracle gap closed by a fit of the risk's "
                "exact form (follow-up score estimated by a LightGBM)",
                "--",
                f"{_pct(estimated['mean'])} (per seed "
                + " / ".join(_pct(v) for v in estimated["per_seed"])
                + ")",
            ]
        ],
        note=note,
    )
    rows = []
    for name, (key, label) in FITS.items():
        rows.append(
            [
                label,
                fmt(np.mean([r[key] for r in runs])),
                _pct(closed[name]["mean"]),
                " / ".join(f"{r[key]:.4f} ({_pct(r['gap_closed'][name])})" for r in runs),
            ]
        )
    fits = Table(
        "learnability/fits",
        [
            "fit of the risk's exact form",
            f"simulator, {n} seed{'s' if n > 1 else ''} (mean)",
            "gap closed",
            "per seed",
        ],
        rows,
        note=note,
    )
    return [headline, fits]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__.splitlines()[0], name="learnability")
    cli.add_argument("--seeds", type=int, default=3, help="simulator seeds (--small: 1)")
    args = cli.parse_args(argv)
    n_patients, n_splits, seeds = (60, 3, 1) if args.small else (1042, 5, args.seeds)
    runs = []
    for seed in range(seeds):
        run = run_seed(n_patients, seed, n_splits, small=args.small)
        runs.append(run)
        print(
            f"seed {seed}: {run['rows']:,} lesions, {run['positives']} malignant; "
            f"well-specified OOF pAUC {run['well_specified_oof_pauc']:.4f} (follow-up score "
            f"estimated: {run['well_specified_estimated_followup_oof_pauc']:.4f}, none: "
            f"{run['well_specified_no_followup_oof_pauc']:.4f}; estimate's Spearman with the "
            f"oracle score {run['followup_estimate_spearman_benign']:.3f}), tabular oracle "
            f"{run['tabular_oracle_pauc']:.4f}, raw-column LightGBM "
            f"{run['raw_lightgbm_oof_pauc']:.4f} ({run['seconds']:.0f} s)",
            flush=True,
        )

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in runs]))

    report = {
        "settings": {"patients": n_patients, "folds": n_splits, "seeds": seeds},
        "runs": runs,
        "mean_well_specified": mean("well_specified_oof_pauc"),
        "mean_well_specified_estimated_followup": mean(
            "well_specified_estimated_followup_oof_pauc"
        ),
        "mean_well_specified_no_followup": mean("well_specified_no_followup_oof_pauc"),
        "mean_tabular_oracle": mean("tabular_oracle_pauc"),
        "mean_raw_lightgbm": mean("raw_lightgbm_oof_pauc"),
        "gap_closed": {
            name: {
                "per_seed": [r["gap_closed"][name] for r in runs],
                "mean": float(np.mean([r["gap_closed"][name] for r in runs])),
            }
            for name in FITS
        },
    }
    print(
        f"mean: well-specified {report['mean_well_specified']:.4f} (follow-up estimated "
        f"{report['mean_well_specified_estimated_followup']:.4f}, none "
        f"{report['mean_well_specified_no_followup']:.4f}), "
        f"tabular oracle {report['mean_tabular_oracle']:.4f}, raw-column LightGBM "
        f"{report['mean_raw_lightgbm']:.4f}; gap closed with the estimated follow-up score "
        f"{report['gap_closed']['estimated']['mean']:.1%}"
    )
    write_results(args.out, report, tables(report, small=args.small))
    return report


if __name__ == "__main__":
    main()
    sys.exit(0)

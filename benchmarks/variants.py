"""Learner variants tried against the defaults, on the simulator and the real sample.

``benchmarks/quality.py`` measures the defaults; this script measures the
alternatives to them. For each data set of its plan (simulator seed 0 with every
variant; simulator seeds 1 and 2 and the real sample with a subset) it computes the
features once, with the groups ``LesionBoostClassifier`` uses by default (the real
sample without the count features, which leak there), then for each variant the
patient-grouped out-of-fold pAUC (the folds ``quality.py`` uses) and its wall time:

* ``lgbm:<name>`` -- the ensemble's LightGBM member alone, one bag, with one change
  from :data:`LGBM_VARIANTS` (``lgbm:base`` is the member as shipped);
* ``top:<k>`` -- that member refitted on the ``k`` features its first fit on the
  training fold ranked highest by gain (feature selection inside the fold);
* ``members`` -- the three boosting libraries (``GBDTEnsembleClassifier``'s default
  members), each fitted and scored alone, and weighted blends of their out-of-fold
  ranks (pooled over the folds, an approximation of an ensemble, which blends
  inside each fitted model) under the weights of :data:`BLEND_WEIGHTS`;
* ``followup`` -- an auxiliary LightGBM trained on the *benign* lesions of the
  training folds to tell which ones carry a ``lesion_id`` (clinics give one to the
  lesions they follow up; it is a train-only column, used here as a label, never a
  feature), its score alone, and its 10-30 % rank blend with the LightGBM member --
  inspired by the 7th place of the Kaggle ISIC 2024 competition, who (per their
  public write-up) learned from follow-up decisions by weighting followed-up benign
  lesions in their main model;
* ``followup_weight:<w>`` -- the LightGBM member with the 7th place's actual
  scheme: benign lesions with a ``lesion_id`` get sample weight ``w`` (others 1);
* ``followup_feature`` -- the LightGBM member with that auxiliary model's score as
  one more feature (stacking): inside each training fold the score of a training
  lesion comes from aux models fitted on the other patients of the fold
  (patient-grouped 4-fold), the score of a held-out lesion from the aux model
  fitted on the whole training fold, so both sides see an out-of-sample score;
* ``linear`` / ``spline`` -- a logistic regression on quantile-normalised
  features (``spline``: cubic B-splines of them) trained on all positives and
  1 in 10 negatives, alone and rank-blended 20-30 % with that equal-weight
  member blend.

Usage::

    python benchmarks/variants.py [--out FILE.json]      # the whole plan (:data:`PLAN`)
    python benchmarks/variants.py --source sim|real --seed S \\
        [--variants lgbm:base lgbm:neg_1to333 top:40 members spline ...]   # one data set
    python benchmarks/variants.py --small     # a few minutes; what the test suite runs

A full run writes ``benchmarks/results/variants.json`` (tables ``variants/lightgbm``,
``variants/members`` and ``variants/followup``: one column per data set).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

import lesionboost as lb
from _common import NA, SHARED, Table, fmt, parser, write_results
from lesionboost.ensemble import GBDTEnsembleClassifier
from lesionboost.estimator import LesionBoostClassifier
from lesionboost.schema import CATEGORICAL_COLUMNS

REAL_SAMPLE = SHARED / "train-metadata-sample.csv"

#: name -> GBDTEnsembleClassifier keyword changes for the LightGBM member (one bag).
LGBM_VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "neg_1to333": {"neg_ratio": 0.003},
    "neg_all": {"neg_ratio": None},
    "lr_0.01_700": {"lightgbm_params": {"learning_rate": 0.01, "n_estimators": 700}},
    "pos_weight_1": {"lightgbm_params": {"scale_pos_weight": 1.0}},
    "rows_0.5_400": {
        "lightgbm_params": {
            "bagging_fraction": 0.5,
            "bagging_freq": 1,
            "n_estimators": 400,
            "learning_rate": 0.02,
        }
    },
    "pos_3x": {"pos_oversample": 3.0},
    "leaf50_l2_30": {"lightgbm_params": {"min_data_in_leaf": 50, "lambda_l2": 30.0}},
    "depth2_600": {
        "lightgbm_params": {
            "max_depth": 2,
            "num_leaves": 4,
            "n_estimators": 600,
            "learning_rate": 0.05,
            "min_data_in_leaf": 100,
        }
    },
    # Additive (GAM-like) boosting: each tree splits on one feature only.
    "stumps_1500": {
        "lightgbm_params": {
            "max_depth": 1,
            "num_leaves": 2,
            "n_estimators": 1500,
            "learning_rate": 0.05,
            "min_data_in_leaf": 100,
        }
    },
    "linear_tree": {"lightgbm_params": {"linear_tree": True, "linear_lambda": 1.0}},
    "extra_trees": {"lightgbm_params": {"extra_trees": True}},
}
#: Member weights (LightGBM, XGBoost, CatBoost) of the rank blends scored by ``members``.
BLEND_WEIGHTS: tuple[tuple[int, int, int], ...] = (
    (1, 1, 1),
    (1, 0, 1),
    (1, 1, 0),
    (0, 1, 1),
    (2, 1, 1),
    (1, 1, 2),
    (1, 2, 1),
)
LINEAR_BLEND_SHARES: tuple[float, ...] = (0.2, 0.3)
#: Shares of the follow-up model in its rank blend with the LightGBM member.
FOLLOWUP_BLEND_SHARES: tuple[float, ...] = (0.1, 0.2, 0.3)


def load(
    source: str, seed: int, n_patients: int
) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features (the estimator's default groups), labels, patient folds, lesion_id
    presence and a patient index of every lesion."""
    if source == "sim":
        train = lb.simulate_slice3d(n_patients, seed=seed).train
    else:
        train = lb.read_metadata(REAL_SAMPLE)
    X, y = lb.split_xy(train)
    groups = LesionBoostClassifier().feature_groups
    if source == "real":  # the sample keeps every malignant lesion: counts leak
        groups = tuple(g for g in groups if g != "counts")
    folds = lb.patient_folds(train, n_splits=3 if n_patients < 200 else 5, seed=0)
    features = lb.LesionFeaturizer(groups=groups).fit_transform(X)
    followed_up = train.get_column("lesion_id").is_not_null().to_numpy()
    _, patients = np.unique(train.get_column("patient_id").to_numpy(), return_inverse=True)
    return features, np.asarray(y), folds, followed_up, patients


def _categoricals(features: pl.DataFrame) -> list[str]:
    return [c for c in CATEGORICAL_COLUMNS if c in features.columns]


def out_of_fold(
    features: pl.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    fit_predict: Callable[[pl.DataFrame, np.ndarray, pl.DataFrame], np.ndarray],
) -> np.ndarray:
    """Scores of every lesion from a model fitted on the other folds."""
    oof = np.zeros(len(y))
    for fold in np.unique(folds):
        held = folds == fold
        oof[held] = fit_predict(
            features.filter(pl.Series(~held)), y[~held], features.filter(pl.Series(held))
        )
    return oof


def _member_scores(
    train: pl.DataFrame,
    y: np.ndarray,
    test: pl.DataFrame,
    sample_weight: np.ndarray | None = None,
    **changes: Any,
) -> np.ndarray:
    """The LightGBM member (one bag, ``changes`` applied) fitted on ``train``, scoring ``test``."""
    model = GBDTEnsembleClassifier(
        members=("lightgbm",),
        **{"n_bags": 1, **changes},
        categorical_features=_categoricals(train),
        random_state=0,
    ).fit(train, y, sample_weight=sample_weight)
    return model.decision_function(test)


def lightgbm_member(**changes: Any) -> Callable[..., np.ndarray]:
    def fit_predict(train: pl.DataFrame, y: np.ndarray, test: pl.DataFrame) -> np.ndarray:
        return _member_scores(train, y, test, **changes)

    return fit_predict


def top_features(model: GBDTEnsembleClassifier, columns: list[str], k: int) -> list[str]:
    """The ``k`` columns with the largest total LightGBM gain over the model's bags."""
    gain = sum(booster.feature_importance("gain") for booster in model.boosters_["lightgbm"])
    return [columns[i] for i in np.argsort(-np.asarray(gain), kind="stable")[:k]]


def selected_member(k: int) -> Callable[..., np.ndarray]:
    def fit_predict(train: pl.DataFrame, y: np.ndarray, test: pl.DataFrame) -> np.ndarray:
        first = GBDTEnsembleClassifier(
            members=("lightgbm",), categorical_features=_categoricals(train), random_state=0
        ).fit(train, y)
        keep = top_features(first, train.columns, k)
        return lightgbm_member()(train.select(keep), y, test.select(keep))

    return fit_predict


def one_member(kind: str) -> Callable[..., np.ndarray]:
    def fit_predict(train: pl.DataFrame, y: np.ndarray, test: pl.DataFrame) -> np.ndarray:
        model = GBDTEnsembleClassifier(
            members=(kind,), categorical_features=_categoricals(train), random_state=0
        ).fit(train, y)
        return model.decision_function(test)

    return fit_predict


def logistic(splines: bool) -> Callable[..., np.ndarray]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        QuantileTransformer,
        SplineTransformer,
        StandardScaler,
    )

    def fit_predict(train: pl.DataFrame, y: np.ndarray, test: pl.DataFrame) -> np.ndarray:
        numeric = [c for c in train.columns if c not in _categoricals(train)]
        keep = (y == 1) | (np.random.default_rng(0).random(len(y)) < 0.1)
        a_train = train.filter(pl.Series(keep)).select(numeric).to_numpy().astype(np.float64)
        a_test = test.select(numeric).to_numpy().astype(np.float64)
        median = np.nan_to_num(np.nanmedian(a_train, axis=0))
        a_train = np.where(np.isnan(a_train), median, a_train)
        a_test = np.where(np.isnan(a_test), median, a_test)
        steps: list[Any] = [
            QuantileTransformer(
                n_quantiles=200, output_distribution="normal", subsample=100_000, random_state=0
            )
        ]
        if splines:
            steps += [
                FunctionTransformer(np.clip, kw_args={"a_min": -3, "a_max": 3}),
                SplineTransformer(n_knots=4, degree=3, extrapolation="constant"),
            ]
        C = 0.003 if splines else 0.1  # the best of 3 values per form on seed 0
        model = make_pipeline(*steps, StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        model.fit(a_train, y[keep])
        return model.decision_function(a_test)

    return fit_predict


def weighted_member(followed_weight: float) -> Callable[..., np.ndarray]:
    """The LightGBM member with followed-up benign lesions weighted ``followed_weight``.

    Labels are two columns, ``(malignant, followed up)`` (see :func:`followup_model`).
    """

    def fit_predict(train: pl.DataFrame, labels: np.ndarray, test: pl.DataFrame) -> np.ndarray:
        y, followed = labels[:, 0], labels[:, 1]
        weight = np.where((y == 0) & (followed == 1), followed_weight, 1.0)
        return _member_scores(train, y, test, sample_weight=weight)

    return fit_predict


def followup_model() -> Callable[..., np.ndarray]:
    """Fit-predict of the auxiliary "has a lesion_id" model, trained on benign rows.

    Its labels are two columns, ``(malignant, followed up)``, so that
    :func:`out_of_fold` hands it both for the training fold.
    """
    import lightgbm

    def fit_predict(train: pl.DataFrame, labels: np.ndarray, test: pl.DataFrame) -> np.ndarray:
        y, tracked = labels[:, 0], labels[:, 1]
        # Benign rows only, and 1 in 4 of those nobody followed up (4x faster; still
        # ~4 negatives per followed-up lesion).
        keep = (y == 0) & ((tracked == 1) | (np.random.default_rng(0).random(len(y)) < 0.25))
        categorical = _categoricals(train)
        train = train.with_columns(pl.col(c).cast(pl.Int32) for c in categorical)
        test = test.with_columns(pl.col(c).cast(pl.Int32) for c in categorical)
        data = lightgbm.Dataset(
            train.filter(pl.Series(keep)).to_numpy().astype(np.float32),
            tracked[keep],
            feature_name=train.columns,
            categorical_feature=categorical,
        )
        params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31,
                  "min_data_in_leaf": 100, "feature_fraction": 0.5, "bagging_fraction": 0.8,
                  "bagging_freq": 1, "lambda_l2": 10.0, "num_threads": 2, "seed": 0,
                  "verbose": -1}  # fmt: skip
        booster = lightgbm.train(params, data, num_boost_round=300)
        return booster.predict(test.to_numpy().astype(np.float32), raw_score=True)

    return fit_predict


def followup_feature_member(inner_splits: int = 4) -> Callable[..., np.ndarray]:
    """The LightGBM member with the follow-up model's score as an extra feature.

    Labels are three columns, ``(malignant, followed up, patient index)``; the
    patient index groups the inner folds that score the training lesions.
    """
    from sklearn.model_selection import GroupKFold

    aux = followup_model()

    def fit_predict(train: pl.DataFrame, labels: np.ndarray, test: pl.DataFrame) -> np.ndarray:
        y, patients = labels[:, 0], labels[:, 2]
        train_score = np.zeros(train.height)
        inner = GroupKFold(n_splits=inner_splits).split(np.zeros(train.height), groups=patients)
        for fit_rows, score_rows in inner:
            train_score[score_rows] = aux(train[fit_rows], labels[fit_rows, :2], train[score_rows])
        test_score = aux(train, labels[:, :2], test)
        return _member_scores(
            train.with_columns(followup_score=pl.Series(train_score, dtype=pl.Float32)),
            y,
            test.with_columns(followup_score=pl.Series(test_score, dtype=pl.Float32)),
        )

    return fit_predict


def _rank(scores: np.ndarray) -> np.ndarray:
    return rankdata(scores) / len(scores)


def run_variant(
    name: str,
    features: pl.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    cache: dict[str, np.ndarray],
    followed_up: np.ndarray | None = None,
    patients: np.ndarray | None = None,
) -> dict[str, Any]:
    """One variant's out-of-fold pAUC(s) and wall time (the ``followup*`` variants need
    ``followed_up``; ``followup_feature`` also ``patients``)."""
    start = time.perf_counter()
    result: dict[str, Any] = {"variant": name}
    if name.startswith("lgbm:"):
        oof = out_of_fold(features, y, folds, lightgbm_member(**LGBM_VARIANTS[name[5:]]))
        cache[name] = oof
        result["pauc"] = lb.pauc_above_tpr(y, oof)
    elif name.startswith("top:"):
        oof = out_of_fold(features, y, folds, selected_member(int(name[4:])))
        result["pauc"] = lb.pauc_above_tpr(y, oof)
    elif name == "members":
        for kind in ("lightgbm", "xgboost", "catboost"):
            started = time.perf_counter()
            cache[kind] = out_of_fold(features, y, folds, one_member(kind))
            result[kind] = lb.pauc_above_tpr(y, cache[kind])
            result[f"{kind}_seconds"] = time.perf_counter() - started
        ranks = [_rank(cache[kind]) for kind in ("lightgbm", "xgboost", "catboost")]
        result["blends"] = {
            ":".join(map(str, w)): lb.pauc_above_tpr(
                y, sum(wi * r for wi, r in zip(w, ranks, strict=True))
            )
            for w in BLEND_WEIGHTS
        }
        cache["ensemble"] = sum(ranks)
        result["pauc"] = result["blends"]["1:1:1"]
    elif name == "followup":
        if followed_up is None:
            raise ValueError("variant 'followup' needs the lesion_id presence of every row")
        if "lgbm:base" not in cache:
            cache["lgbm:base"] = out_of_fold(features, y, folds, lightgbm_member())
        labels = np.column_stack([y, followed_up.astype(int)])
        aux = out_of_fold(features, labels, folds, followup_model())
        benign = y == 0
        result["followup_auc_benign"] = float(roc_auc_score(followed_up[benign], aux[benign]))
        result["malignancy_auc"] = float(roc_auc_score(y, aux))
        result["pauc"] = lb.pauc_above_tpr(y, aux)
        result["base"] = lb.pauc_above_tpr(y, cache["lgbm:base"])
        result["blends"] = {
            f"{share:.0%}": lb.pauc_above_tpr(
                y, (1 - share) * _rank(cache["lgbm:base"]) + share * _rank(aux)
            )
            for share in FOLLOWUP_BLEND_SHARES
        }
    elif name.startswith("followup_weight:"):
        if followed_up is None:
            raise ValueError(f"variant {name!r} needs the lesion_id presence of every row")
        labels = np.column_stack([y, followed_up.astype(int)])
        oof = out_of_fold(features, labels, folds, weighted_member(float(name.split(":")[1])))
        result["pauc"] = lb.pauc_above_tpr(y, oof)
    elif name == "followup_feature":
        if followed_up is None or patients is None:
            raise ValueError(f"variant {name!r} needs the lesion_id presence and patient of rows")
        labels = np.column_stack([y, followed_up.astype(int), patients])
        oof = out_of_fold(features, labels, folds, followup_feature_member())
        result["pauc"] = lb.pauc_above_tpr(y, oof)
    elif name in ("linear", "spline"):
        if "ensemble" not in cache:
            raise ValueError(f"variant {name!r} blends with the ensemble: list 'members' before it")
        oof = out_of_fold(features, y, folds, logistic(splines=name == "spline"))
        result["pauc"] = lb.pauc_above_tpr(y, oof)
        result["blends"] = {
            f"{share:.0%}": lb.pauc_above_tpr(
                y, (1 - share) * _rank(cache["ensemble"]) + share * _rank(oof)
            )
            for share in LINEAR_BLEND_SHARES
        }
    else:
        raise ValueError(f"unknown variant {name!r}; see the module docstring")
    result["seconds"] = time.perf_counter() - start
    return result


#: Every variant, in the order of the tables.
EVERY: tuple[str, ...] = (
    *(f"lgbm:{n}" for n in LGBM_VARIANTS),
    "top:20",
    "top:40",
    "top:80",
    "members",
    "linear",
    "spline",
    "followup",
    "followup_weight:0.5",
    "followup_weight:3",
    "followup_feature",
)
#: The variants that change the result most or not at all, checked on more data sets.
CHECKED: tuple[str, ...] = (
    "lgbm:base",
    "lgbm:extra_trees",
    "followup",
    "followup_weight:0.5",
    "followup_weight:3",
    "followup_feature",
)
#: A full run: (source, simulator seed, variants) per data set; the first is the main column.
PLAN: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("sim", 0, EVERY),
    ("sim", 1, CHECKED),
    ("sim", 2, CHECKED),
    (
        "real",
        0,
        ("lgbm:base", "lgbm:neg_1to333", "lgbm:extra_trees", "top:40", "members", "linear",
         "spline", "followup", "followup_weight:0.5", "followup_weight:3", "followup_feature"),
    ),
)  # fmt: skip
SMALL: tuple[str, ...] = (
    "lgbm:base",
    "lgbm:pos_weight_1",
    "top:20",
    "members",
    "linear",
    "followup",
    "followup_feature",
)
#: ``--small``: 60 simulated patients with a few variants, and the member on the real sample.
SMALL_PLAN: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("sim", 0, SMALL),
    ("real", 0, ("lgbm:base",)),
)

LGBM_LABELS = {
    "base": "as shipped",
    "neg_1to333": "1:333 negatives",
    "neg_all": "every negative",
    "lr_0.01_700": "learning rate 0.01, 700 rounds",
    "pos_weight_1": "`scale_pos_weight` 1",
    "rows_0.5_400": "rows subsampled 0.5, learning rate 0.02, 400 rounds",
    "pos_3x": "positives duplicated 3x",
    "leaf50_l2_30": "50-row leaves, L2 30",
    "depth2_600": "depth 2, 600 rounds",
    "stumps_1500": "additive boosting: stumps (depth 1), 1,500 rounds",
    "linear_tree": "linear trees",
    "extra_trees": "extra trees",
}


def run_dataset(source: str, seed: int, variants: Sequence[str], n_patients: int) -> dict[str, Any]:
    """Every variant of ``variants`` on one data set: ``{"settings", "results"}``."""
    features, y, folds, followed_up, patients = load(source, seed, n_patients)
    label = dataset_label(source, seed)
    print(
        f"{label}: {features.height:,} lesions, {int(y.sum())} malignant, "
        f"{features.width} features, {len(np.unique(folds))} folds",
        flush=True,
    )
    cache: dict[str, np.ndarray] = {}
    results = []
    for name in variants:
        result = run_variant(name, features, y, folds, cache, followed_up, patients)
        results.append(result)
        blends = " ".join(f"{k} {v:.4f}" for k, v in result.get("blends", {}).items())
        print(
            f"  {name:<22} OOF pAUC {result['pauc']:.4f}  ({result['seconds']:.0f} s)"
            + (f"  blends: {blends}" if blends else ""),
            flush=True,
        )
    settings = {
        "source": source,
        "seed": seed,
        "rows": features.height,
        "positives": int(y.sum()),
        "features": features.width,
        "folds": int(len(np.unique(folds))),
    }
    return {"settings": settings, "results": results}


def dataset_label(source: str, seed: int) -> str:
    return "real sample" if source == "real" else f"simulator seed {seed}"


def _by_variant(datasets: list[dict[str, Any]]) -> list[dict[str, dict[str, Any]]]:
    return [{r["variant"]: r for r in d["results"]} for d in datasets]


def _table(
    table_id: str,
    first: str,
    rows: list[tuple[str, Callable[[dict[str, dict[str, Any]]], tuple[Any, Any]]]],
    datasets: list[dict[str, Any]],
    note: str,
) -> Table | None:
    """One row per ``(label, cell)``; ``cell(results)`` gives (value text or None, seconds)."""
    by_variant = _by_variant(datasets)
    labels = [dataset_label(d["settings"]["source"], d["settings"]["seed"]) for d in datasets]
    body = []
    for label, cell in rows:
        cells = [cell(results) for results in by_variant]
        if all(value is None for value, _ in cells):
            continue
        main_value, main_seconds = cells[0]
        body.append(
            [
                label,
                main_value or NA,
                fmt(main_seconds, ".0f"),
                *(value or NA for value, _ in cells[1:]),
            ]
        )
    if not body:
        return None
    return Table(table_id, [first, labels[0], "wall s", *labels[1:]], body, note=note)


def _pauc(variant: str, key: str = "pauc") -> Callable[[dict[str, dict[str, Any]]], tuple]:
    def cell(results: dict[str, dict[str, Any]]) -> tuple[str | None, float | None]:
        result = results.get(variant)
        if result is None or result.get(key) is None:
            return None, None
        return f"{result[key]:.4f}", result["seconds"] if key == "pauc" else None

    return cell


def _nested(
    variant: str, key: str, inner: str | None = None, spec: str = ".4f", seconds: str | None = None
) -> Callable[[dict[str, dict[str, Any]]], tuple]:
    def cell(results: dict[str, dict[str, Any]]) -> tuple[str | None, float | None]:
        result = results.get(variant)
        value = None if result is None else result.get(key)
        if isinstance(value, dict):
            value = value.get(inner)
        if value is None:
            return None, None
        return format(value, spec), (result.get(seconds) if seconds else None)

    return cell


def tables(datasets: list[dict[str, Any]], *, small: bool) -> list[Table]:
    """``variants/lightgbm``, ``variants/members`` and ``variants/followup``."""
    present = [r["variant"] for d in datasets for r in d["results"]]
    ordered = [v for v in EVERY if v in present] + [v for v in dict.fromkeys(present)
                                                    if v not in EVERY]  # fmt: skip
    sets = "; ".join(
        f"{dataset_label(d['settings']['source'], d['settings']['seed'])}: "
        f"{d['settings']['rows']:,} lesions, {d['settings']['positives']} malignant, "
        f"{d['settings']['folds']} folds"
        for d in datasets
    )
    note = (
        f"Patient-grouped out-of-fold pAUC above 80 % TPR on the estimator's default features "
        f"({sets}); wall s on the first data set; -- where a variant was not run."
    )
    if small:
        note += " A --small run: it checks that the script works, not its figures."
    lightgbm_rows = []
    for variant in ordered:
        if variant.startswith("lgbm:"):
            name = variant[5:]
            label = f"{LGBM_LABELS.get(name, name)} (`{variant}`)"
        elif variant.startswith("top:"):
            label = f"refit on the top {variant[4:]} features by the first fit's gain (`{variant}`)"
        else:
            continue
        lightgbm_rows.append((label, _pauc(variant)))
    members_rows = []
    for kind, title in (("lightgbm", "LightGBM"), ("xgboost", "XGBoost"), ("catboost", "CatBoost")):
        members_rows.append(
            (f"{title} member alone (default bags)",
             _nested("members", kind, seconds=f"{kind}_seconds"))
        )  # fmt: skip
    for weights in BLEND_WEIGHTS:
        key = ":".join(map(str, weights))
        extra = " (equal, as shipped)" if len(set(weights)) == 1 else ""
        members_rows.append(
            (f"rank blend of the three, weights {key}{extra}", _nested("members", "blends", key))
        )
    for variant, title in (
        ("linear", "logistic regression on quantile-normalised features"),
        ("spline", "the same with cubic splines"),
    ):
        members_rows.append((f"{title} (`{variant}`)", _pauc(variant)))
        for share in LINEAR_BLEND_SHARES:
            members_rows.append(
                (
                    f"rank blend: {100 - 100 * share:.0f} % equal-weight members + "
                    f"{100 * share:.0f} % `{variant}`",
                    _nested(variant, "blends", f"{share:.0%}"),
                )
            )
    followup_rows = [
        ("the LightGBM member as shipped (`lgbm:base`), for reference", _pauc("lgbm:base")),
        ("follow-up model alone (benign rows, label: has a `lesion_id`)", _pauc("followup")),
        ("its AUC for follow-up, benign rows",
         _nested("followup", "followup_auc_benign", spec=".3f")),
        ("its AUC for malignancy", _nested("followup", "malignancy_auc", spec=".3f")),
        *(
            (f"rank blend with the member, {100 * share:.0f} % follow-up model",
             _nested("followup", "blends", f"{share:.0%}"))
            for share in FOLLOWUP_BLEND_SHARES
        ),
        *(
            (f"followed-up benign lesions weighted {v.split(':')[1]} in the member (`{v}`)",
             _pauc(v))
            for v in ordered
            if v.startswith("followup_weight:")
        ),
        ("the follow-up model's score as one more feature of the member (`followup_feature`)",
         _pauc("followup_feature")),
    ]  # fmt: skip
    made = [
        _table("variants/lightgbm", "variant (LightGBM member, one bag)", lightgbm_rows,
               datasets, note),
        _table("variants/members", "members and blends", members_rows, datasets, note),
        _table("variants/followup", "learning from follow-up decisions", followup_rows,
               datasets, note),
    ]  # fmt: skip
    return [table for table in made if table is not None]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__.splitlines()[0], name="variants")
    cli.add_argument(
        "--source",
        choices=("sim", "real"),
        default=None,
        help="one data set only (default: the plan of several)",
    )
    cli.add_argument("--seed", type=int, default=None, help="simulator seed of --source sim")
    cli.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="one data set only, these variants: lgbm:<name>, top:<k>, members, linear, spline, "
        "followup, followup_weight:<w>, followup_feature",
    )
    args = cli.parse_args(argv)
    n_patients = 60 if args.small else 1042
    if args.source is None and args.seed is None and args.variants is None:
        plan = list(SMALL_PLAN if args.small else PLAN)
        if not REAL_SAMPLE.exists():
            print(f"note: {REAL_SAMPLE} not found; the real sample is skipped", file=sys.stderr)
            plan = [entry for entry in plan if entry[0] != "real"]
    else:
        source = args.source or "sim"
        if source == "real" and not REAL_SAMPLE.exists():
            cli.error(f"--source real needs the real sample at {REAL_SAMPLE}")
        variants = tuple(args.variants or (SMALL if args.small else EVERY))
        plan = [(source, args.seed or 0, variants)]
    datasets = [run_dataset(source, seed, variants, n_patients) for source, seed, variants in plan]
    report = {
        "settings": datasets[0]["settings"],
        "results": datasets[0]["results"],
        "datasets": datasets,
    }
    write_results(args.out, report, tables(datasets, small=args.small))
    return report


if __name__ == "__main__":
    main()
    sys.exit(0)

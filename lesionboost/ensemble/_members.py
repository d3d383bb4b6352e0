"""One adapter per member library: defaults, training, prediction and native files.

:class:`~lesionboost.ensemble.GBDTEnsembleClassifier` talks to LightGBM,
XGBoost, CatBoost and its linear member (scikit-learn's logistic regression,
:mod:`~lesionboost.ensemble._linear`, stored as JSON) only through the adapters
in :data:`MEMBERS`, which
all take the same input: a C-ordered ``float32`` matrix with ``NaN`` for
missing values, whose categorical columns (``cat_idx``) hold non-negative
integer codes. Each adapter turns that matrix into its library's native data
object (numpy for LightGBM, a ``DMatrix`` with ``feature_types="c"`` for
XGBoost, a polars-backed ``Pool`` with ``Int32`` columns for CatBoost, which
rejects floats and nulls in categorical columns).

:mod:`lesionboost.persist` maps the member kind strings stored in a model's
manifest to these adapters; nothing else decides which code loads a file.
CatBoost is imported only inside :meth:`_CatBoost.fit` and
:meth:`_CatBoost.load`, so ``import lesionboost`` stays light.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._utils._imports import import_optional
from ._linear import (
    CONTEXT_DEFAULTS,
    LINEAR_DEFAULTS,
    PENALTY_DEFAULTS,
    RULE_DEFAULTS,
    LinearScorer,
    check_linear_params,
    mean_margin,
)

__all__ = ["MEMBERS", "MEMBER_KINDS", "member_kind", "resolve_threads"]

#: The gradient-boosting libraries: the default members of
#: :class:`~lesionboost.ensemble.GBDTEnsembleClassifier` (those of
#: ``LesionBoostClassifier`` are ``lesionboost.estimator.DEFAULT_MEMBERS``).
MEMBER_KINDS: tuple[str, ...] = ("lightgbm", "xgboost", "catboost")


def member_kind(member: str) -> str:
    """The library of an ensemble member: ``"lightgbm:raw"`` -> ``"lightgbm"``."""
    return member.partition(":")[0]


def resolve_threads(n_jobs: int | None) -> int | None:
    """joblib-style ``n_jobs`` -> a thread count; ``None`` keeps each library's default."""
    if n_jobs is None:
        return None
    cpus = os.cpu_count() or 1
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return int(n_jobs)


# Class reweighting the log-odds offsets do not model (only scale_pos_weight is):
# LightGBM's is_unbalance, CatBoost's class_weights / auto_class_weights, and the
# scikit-learn style class_weight some wrappers accept.
_CLASS_WEIGHT_KEYS: tuple[str, ...] = (
    "is_unbalance",
    "unbalance",
    "unbalanced_sets",
    "class_weight",
    "class_weights",
    "auto_class_weights",
)


class _Member:
    """Base adapter: parameter merging shared by the three libraries."""

    kind = ""
    suffix = ""
    defaults: dict[str, Any] = {}
    #: Defaults of options the adapter accepts but leaves out of ``defaults`` (the
    #: linear member's rules), so that tuning can name the value a search starts from.
    option_defaults: dict[str, Any] = {}
    round_keys: tuple[str, ...] = ()
    seed_keys: tuple[str, ...] = ()
    thread_keys: tuple[str, ...] = ()
    #: Whether ``fit`` boosts from a starting margin (``init_score``) per row.
    takes_init_score = True

    def params(
        self, user: Mapping[str, Any] | None, *, device: str, n_jobs: int | None
    ) -> tuple[dict[str, Any], int]:
        """Merge user parameters over the defaults; return (params, boosting rounds)."""
        user = dict(user or {})
        reweighting = [key for key in _CLASS_WEIGHT_KEYS if key in user]
        if reweighting:
            raise ValueError(
                f"{self.kind}_params sets {reweighting[0]!r}, which reweights the classes in a "
                "way the ensemble cannot undo in its probabilities. Use 'scale_pos_weight' "
                "(accounted for) or the ensemble's neg_ratio / pos_oversample instead."
            )
        for key in (*self.seed_keys, *self.thread_keys):
            if key in user:
                owner = "random_state" if key in self.seed_keys else "n_jobs"
                raise ValueError(
                    f"{self.kind}_params sets {key!r}; set {owner!r} on the ensemble instead "
                    "so every member and bag stays consistent."
                )
        given = [key for key in self.round_keys if key in user]
        if len(given) > 1:
            raise ValueError(
                f"{self.kind}_params sets the number of boosting rounds twice ({given}); "
                "keep only 'n_estimators'."
            )
        merged = {**self.defaults, **self.device_params(device), **user}
        rounds = merged.pop("n_estimators")
        for key in self.round_keys:
            if key in merged:
                rounds = merged.pop(key)
        if not isinstance(rounds, (int, np.integer)) or isinstance(rounds, bool) or rounds < 1:
            raise ValueError(
                f"{self.kind}_params: the number of boosting rounds must be an integer >= 1, "
                f"got {rounds!r}."
            )
        threads = resolve_threads(n_jobs)
        if threads is not None:
            merged[self.thread_keys[0]] = threads
        return merged, int(rounds)

    def device_params(self, device: str) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    # What each library's adapter implements: train one booster on a bag, turn a
    # matrix into the library's input, score raw margins and per-feature
    # contributions, and write/read its native model file.
    def fit(
        self,
        params: dict[str, Any],
        rounds: int,
        X: Any,
        y: np.ndarray,
        cat_idx: Sequence[int],
        seed: int,
        weight: np.ndarray | None = None,
        init_score: np.ndarray | None = None,
    ) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def settled(self, params: dict[str, Any], booster: Any) -> dict[str, Any]:
        """``params`` for the later bags of a fit, with what the first bag's fit
        (``booster``) chose among candidates fixed (the same ``params`` if nothing)."""
        return params

    def prepare(
        self, X: Any, cat_idx: Sequence[int], threads: int | None
    ) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def margin(
        self, booster: Any, data: Any, threads: int | None
    ) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def contributions(
        self, booster: Any, data: Any, threads: int | None
    ) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def mean_margin(self, boosters: Sequence[Any], data: Any, threads: int | None) -> np.ndarray:
        """The mean raw margin of ``boosters`` (the bags of one member)."""
        total = np.array(self.margin(boosters[0], data, threads), dtype=np.float64)
        for booster in boosters[1:]:
            total += self.margin(booster, data, threads)
        return total / len(boosters)

    def save(self, booster: Any, path: Path) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def load(self, blob: bytes, threads: int | None) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def pos_weight(self, params: Mapping[str, Any]) -> float:
        """The positive-class weight the booster trains with (shifts its log-odds)."""
        return float(params.get("scale_pos_weight", 1.0))


# --------------------------------------------------------------------------- LightGBM
#: device_type -> LightGBM's error, for GPU learners this LightGBM build lacks; filled
#: by the first fit that asks for one, so later fits neither retry nor print the
#: library's fatal message again.
_LIGHTGBM_MISSING_LEARNERS: dict[str, str] = {}


def lightgbm_has_learner(device_type: str) -> bool:
    """Whether this LightGBM build trains with ``device_type`` (``"cuda"``, ``"gpu"``) here.

    One boosting round on a toy problem; a build that lacks the learner is
    remembered as :meth:`_LightGBM.fit` remembers it.
    """
    import lightgbm as lgb

    if device_type in _LIGHTGBM_MISSING_LEARNERS:
        return False
    try:
        lgb.train(
            {"device_type": device_type, "verbose": -1},
            lgb.Dataset(np.arange(200.0).reshape(100, 2), label=np.arange(100) % 2),
            num_boost_round=1,
        )
    except lgb.basic.LightGBMError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        if "was not enabled in this" in reason:
            _LIGHTGBM_MISSING_LEARNERS[device_type] = reason
        return False
    return True


class _LightGBM(_Member):
    kind = "lightgbm"
    suffix = ".txt"
    # The tuned values of the public "Only Tabular Data" notebook lineage plus native
    # categorical settings from a public solution; deterministic + row-wise histograms
    # make CPU training reproducible for a fixed seed and thread count. Leaves need 25
    # rows and lambda_l2 is 1 (notebook: 85 and 0.004): of the leaf settings
    # benchmarks/defaults.py compares, the only one not behind the lineage on the real
    # sample, where 200-row leaves (the next best, 50) starve trees of its few
    # thousand training rows; on the simulated worlds it is level with them.
    defaults: dict[str, Any] = {
        "objective": "binary",
        "n_estimators": 200,
        "learning_rate": 0.0323,
        "max_depth": 4,
        "num_leaves": 103,
        "lambda_l1": 0.0876,
        "lambda_l2": 1.0,
        "feature_fraction": 0.833,
        "feature_fraction_bynode": 0.403,
        "bagging_fraction": 0.774,
        "bagging_freq": 4,
        "min_data_in_leaf": 25,
        "scale_pos_weight": 2.80,
        "max_cat_threshold": 32,
        "cat_l2": 10.0,
        "cat_smooth": 10.0,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    round_keys = (
        "n_estimators",
        "num_iterations",
        "num_iteration",
        "n_iter",
        "num_tree",
        "num_trees",
        "num_round",
        "num_rounds",
        "nrounds",
        "num_boost_round",
        "max_iter",
    )
    seed_keys = ("seed", "random_seed", "random_state")
    thread_keys = ("num_threads", "num_thread", "nthread", "nthreads", "n_jobs")

    def device_params(self, device: str) -> dict[str, Any]:
        # The PyPI wheels carry no CUDA learner: fit() then trains on the CPU with
        # a warning. Users with an OpenCL build can pass
        # lightgbm_params={"device_type": "gpu"} (user params win over this mapping).
        return {"device_type": "cuda"} if device == "cuda" else {}

    def fit(
        self,
        params: dict[str, Any],
        rounds: int,
        X: Any,
        y: np.ndarray,
        cat_idx: Sequence[int],
        seed: int,
        weight: np.ndarray | None = None,
        init_score: np.ndarray | None = None,
    ) -> Any:
        import lightgbm as lgb

        params = {**params, "seed": int(seed)}

        def train(run_params: dict[str, Any]) -> Any:
            dataset = lgb.Dataset(
                X,
                label=y,
                weight=weight,
                init_score=init_score,
                categorical_feature=list(cat_idx),
                params=run_params,
                free_raw_data=True,
            )
            return lgb.train(run_params, dataset, num_boost_round=rounds)

        device_type = str(params.get("device_type", "cpu")).lower()
        if device_type in _LIGHTGBM_MISSING_LEARNERS:  # known from an earlier fit
            self._warn_cpu_fallback(device_type, _LIGHTGBM_MISSING_LEARNERS[device_type])
            return train({**params, "device_type": "cpu"})
        try:
            return train(params)
        except lgb.basic.LightGBMError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            # Only "this build has no such learner" falls back; a real GPU failure of a
            # CUDA build (out of memory, a driver error) is the user's to see.
            if device_type not in ("cuda", "gpu") or "was not enabled in this" not in reason:
                raise
            _LIGHTGBM_MISSING_LEARNERS[device_type] = reason
            self._warn_cpu_fallback(device_type, reason)
            return train({**params, "device_type": "cpu"})

    @staticmethod
    def _warn_cpu_fallback(device_type: str, reason: str) -> None:
        # device="cuda" should not fail the whole ensemble because pip's LightGBM
        # lacks a GPU learner: XGBoost and CatBoost still use the GPU.
        warnings.warn(
            f"LightGBM cannot train with device_type={device_type!r} here ({reason}); its "
            "member trains on the CPU. The PyPI wheel has no CUDA learner: build LightGBM "
            "with -DUSE_CUDA=1 (or pass lightgbm_params={'device_type': 'gpu'} with an "
            "OpenCL build) to train it on the GPU, or drop 'lightgbm' from members.",
            RuntimeWarning,
            stacklevel=4,  # the user's call of the estimator's fit
        )

    def prepare(self, X: Any, cat_idx: Sequence[int], threads: int | None) -> Any:
        return X

    def _kwargs(self, threads: int | None) -> dict[str, Any]:
        return {"num_threads": threads} if threads is not None else {}

    def margin(self, booster: Any, data: Any, threads: int | None) -> np.ndarray:
        return np.asarray(booster.predict(data, raw_score=True, **self._kwargs(threads)))

    def contributions(self, booster: Any, data: Any, threads: int | None) -> np.ndarray:
        out = booster.predict(data, pred_contrib=True, **self._kwargs(threads))
        return np.asarray(out)[:, :-1]  # last column is the bias

    def save(self, booster: Any, path: Path) -> None:
        path.write_text(booster.model_to_string(num_iteration=-1), encoding="utf-8")

    def load(self, blob: bytes, threads: int | None) -> Any:
        import lightgbm as lgb

        return lgb.Booster(model_str=blob.decode("utf-8"))


# --------------------------------------------------------------------------- XGBoost
class _XGBoost(_Member):
    kind = "xgboost"
    suffix = ".ubj"
    # the public notebook lineage's tuned values; 200 rounds instead of the
    # library's 100 because the learning rate is moderate. Shallower trees
    # (depth 4, notebook: 6) and 64 histogram bins for speed; min_child_weight 1
    # (the library default) for the small real sample (see the LightGBM note above).
    defaults: dict[str, Any] = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "n_estimators": 200,
        "learning_rate": 0.0850,
        "lambda": 8.88,
        "alpha": 0.678,
        "max_depth": 4,
        "min_child_weight": 1.0,
        "max_bin": 64,
        "subsample": 0.601,
        "colsample_bytree": 0.844,
        "colsample_bylevel": 0.548,
        "colsample_bynode": 0.993,
        "scale_pos_weight": 3.29,
        "verbosity": 0,
    }
    round_keys = ("n_estimators", "num_boost_round")
    seed_keys = ("seed", "random_state")
    thread_keys = ("nthread", "n_jobs")

    def device_params(self, device: str) -> dict[str, Any]:
        return {"device": "cuda" if device == "cuda" else "cpu"}

    def _dmatrix(
        self,
        X: Any,
        y: np.ndarray | None,
        cat_idx: Sequence[int],
        threads: int | None,
        weight: np.ndarray | None = None,
    ) -> Any:
        import xgboost as xgb

        types = None
        if len(cat_idx):
            types = ["q"] * X.shape[1]
            for index in cat_idx:
                types[index] = "c"
        return xgb.DMatrix(
            X,
            label=y,
            weight=weight,
            missing=np.nan,
            feature_types=types,
            enable_categorical=bool(len(cat_idx)),
            nthread=threads if threads is not None else -1,
        )

    def fit(
        self,
        params: dict[str, Any],
        rounds: int,
        X: Any,
        y: np.ndarray,
        cat_idx: Sequence[int],
        seed: int,
        weight: np.ndarray | None = None,
        init_score: np.ndarray | None = None,
    ) -> Any:
        import xgboost as xgb

        threads = params.get("nthread")
        dtrain = self._dmatrix(X, y, cat_idx, threads, weight)
        if init_score is not None:
            dtrain.set_base_margin(init_score)
        try:
            booster = xgb.train({**params, "seed": int(seed)}, dtrain, num_boost_round=rounds)
        except xgb.core.XGBoostError as exc:
            if "CUDA" in str(exc) or "cuda" in str(exc):
                raise ValueError(
                    f"XGBoost could not train on the GPU ({exc}). The xgboost-cpu wheel has no "
                    "CUDA support: `pip install xgboost` (the full wheel) or use device='cpu'."
                ) from exc
            raise
        # Data arrives as host numpy: predict on the CPU even after CUDA training,
        # which avoids a device-mismatch fallback and keeps predictions reproducible.
        booster.set_param({"device": "cpu"})
        return booster

    def prepare(self, X: Any, cat_idx: Sequence[int], threads: int | None) -> Any:
        # Margins come from inplace_predict on the matrix itself (building a DMatrix
        # costs seconds for 500k lesions); the booster knows which columns are
        # categorical (its feature_types), so the two give identical margins.
        return X

    def margin(self, booster: Any, data: Any, threads: int | None) -> np.ndarray:
        if threads is not None:
            booster.set_param({"nthread": threads})
        margin = booster.inplace_predict(data, predict_type="margin", missing=np.nan)
        return np.asarray(margin, dtype=np.float64)

    def contributions(self, booster: Any, data: Any, threads: int | None) -> np.ndarray:
        if threads is not None:
            booster.set_param({"nthread": threads})
        types = booster.feature_types
        cat_idx = [i for i, t in enumerate(types or ()) if t == "c"]
        matrix = self._dmatrix(data, None, cat_idx, threads)
        return np.asarray(booster.predict(matrix, pred_contribs=True))[:, :-1]

    def save(self, booster: Any, path: Path) -> None:
        path.write_bytes(bytes(booster.save_raw(raw_format="ubj")))

    def load(self, blob: bytes, threads: int | None) -> Any:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(blob))  # UBJSON parser; never unpickles
        booster.set_param({"device": "cpu"})
        return booster


# --------------------------------------------------------------------------- CatBoost
class _CatBoost(_Member):
    kind = "catboost"
    suffix = ".cbm"
    # the public notebook lineage's tuned values, made cheaper: depth 6 (notebook: 7),
    # 32 borders, no combinations of categoricals and, on CPU, 30 % of the
    # features per split (see the LightGBM note above). CatBoost's
    # subsample needs an explicit Bernoulli bootstrap; allow_writing_files=False
    # stops it from creating catboost_info/ in the working directory.
    defaults: dict[str, Any] = {
        "loss_function": "Logloss",
        "n_estimators": 200,
        "depth": 6,
        "learning_rate": 0.0694,
        "scale_pos_weight": 2.61,
        "l2_leaf_reg": 6.22,
        "bootstrap_type": "Bernoulli",
        "subsample": 0.625,
        "min_data_in_leaf": 24,
        "border_count": 32,
        "max_ctr_complexity": 1,
        "colsample_bylevel": 0.3,  # alias rsm; CPU only, dropped on GPU
        "allow_writing_files": False,
        "logging_level": "Silent",
    }
    round_keys = ("n_estimators", "iterations", "num_boost_round", "num_trees")
    seed_keys = ("random_seed", "random_state")
    thread_keys = ("thread_count", "n_jobs")

    def device_params(self, device: str) -> dict[str, Any]:
        return {"task_type": "GPU"} if device == "cuda" else {}

    def params(
        self, user: Mapping[str, Any] | None, *, device: str, n_jobs: int | None
    ) -> tuple[dict[str, Any], int]:
        merged, rounds = super().params(user, device=device, n_jobs=n_jobs)
        merged["allow_writing_files"] = False  # never litter the working directory
        if device == "cuda" and merged.pop("colsample_bylevel", None) is not None:
            # CatBoost's GPU trainer rejects feature subsampling (rsm) for this loss.
            if "colsample_bylevel" in (user or {}):
                warnings.warn(
                    "catboost_params['colsample_bylevel'] is ignored with device='cuda': "
                    "CatBoost supports feature subsampling on the GPU only for pairwise losses.",
                    UserWarning,
                    stacklevel=2,
                )
        return merged, rounds

    def _pool(
        self, X: Any, y: np.ndarray | None, cat_idx: Sequence[int], weight: np.ndarray | None = None
    ) -> Any:
        import polars as pl

        catboost = import_optional("catboost", purpose="the CatBoost ensemble member")
        names = [f"f{i}" for i in range(X.shape[1])]
        # column-major first: polars then copies whole columns, not strided rows
        frame = pl.from_numpy(np.asfortranarray(X), schema=names, orient="row")
        cat_names = [names[i] for i in cat_idx]
        if cat_names:
            # CatBoost wants integer (or string) categories and no missing values.
            frame = frame.with_columns(
                pl.col(cat_names).fill_nan(-1.0).fill_null(-1.0).cast(pl.Int32)
            )
        return catboost.Pool(frame, label=y, cat_features=cat_names or None, weight=weight)

    def fit(
        self,
        params: dict[str, Any],
        rounds: int,
        X: Any,
        y: np.ndarray,
        cat_idx: Sequence[int],
        seed: int,
        weight: np.ndarray | None = None,
        init_score: np.ndarray | None = None,
    ) -> Any:
        catboost = import_optional("catboost", purpose="the CatBoost ensemble member")
        model = catboost.CatBoost({**params, "iterations": rounds, "random_seed": int(seed)})
        pool = self._pool(X, y, cat_idx, weight)
        if init_score is not None:
            pool.set_baseline(init_score)
        model.fit(pool)
        return model

    def prepare(self, X: Any, cat_idx: Sequence[int], threads: int | None) -> Any:
        return self._pool(X, None, cat_idx)

    def margin(self, booster: Any, data: Any, threads: int | None) -> np.ndarray:
        return np.asarray(
            booster.predict(
                data,
                prediction_type="RawFormulaVal",
                thread_count=threads if threads is not None else -1,
            ),
            dtype=np.float64,
        )

    def contributions(self, booster: Any, data: Any, threads: int | None) -> np.ndarray:
        values = booster.get_feature_importance(
            data, type="ShapValues", thread_count=threads if threads is not None else -1
        )
        return np.asarray(values)[:, :-1]

    def save(self, booster: Any, path: Path) -> None:
        booster.save_model(str(path), format="cbm")

    def load(self, blob: bytes, threads: int | None) -> Any:
        catboost = import_optional("catboost", purpose="loading a CatBoost ensemble member")
        model = catboost.CatBoost()
        model.load_model(blob=blob, format="cbm")
        return model


# --------------------------------------------------------------------------- linear
class _Linear(_Member):
    """scikit-learn's penalised logistic regression on quantile-normalised columns
    (:class:`~lesionboost.ensemble._linear.LinearScorer`); always on the CPU, where
    it fits a bag in about a second (several with rules)."""

    kind = "linear"
    suffix = ".json"
    defaults = LINEAR_DEFAULTS
    option_defaults = {**RULE_DEFAULTS, **CONTEXT_DEFAULTS, **PENALTY_DEFAULTS}
    # an additive column is one of its terms already
    takes_init_score = False

    def params(
        self, user: Mapping[str, Any] | None, *, device: str, n_jobs: int | None
    ) -> tuple[dict[str, Any], int]:
        return check_linear_params(dict(user or {})), 1

    def device_params(self, device: str) -> dict[str, Any]:
        return {}

    def fit(
        self,
        params: dict[str, Any],
        rounds: int,
        X: Any,
        y: np.ndarray,
        cat_idx: Sequence[int],
        seed: int,
        weight: np.ndarray | None = None,
        init_score: np.ndarray | None = None,
    ) -> Any:
        if init_score is not None:
            raise ValueError("The linear member does not boost from a starting margin.")
        # without rules the fit is deterministic; the seed only drives the rule trees
        return LinearScorer.fit(X, y, cat_idx=cat_idx, params=params, weight=weight, seed=seed)

    def settled(self, params: dict[str, Any], booster: Any) -> dict[str, Any]:
        # several rule_scale candidates: the first bag's inner folds choose for every bag
        if isinstance(params["rule_scale"], tuple) and booster.rule_scale is not None:
            return {**params, "rule_scale": booster.rule_scale}
        return params

    def prepare(self, X: Any, cat_idx: Sequence[int], threads: int | None) -> Any:
        return X

    def margin(self, booster: Any, data: Any, threads: int | None) -> np.ndarray:
        return np.asarray(booster.margin(data, threads), dtype=np.float64)

    def mean_margin(self, boosters: Sequence[Any], data: Any, threads: int | None) -> np.ndarray:
        # every bag's column shares merged into one table per column
        return mean_margin(boosters, data, threads)

    def contributions(self, booster: Any, data: Any, threads: int | None) -> np.ndarray:
        return np.asarray(booster.contributions(data, threads))

    def save(self, booster: Any, path: Path) -> None:
        path.write_text(booster.to_json(), encoding="utf-8")

    def load(self, blob: bytes, threads: int | None) -> Any:
        return LinearScorer.from_json(blob.decode("utf-8"))


#: member kind -> adapter; the only place a kind string is turned into code.
MEMBERS: dict[str, _Member] = {
    "lightgbm": _LightGBM(),
    "xgboost": _XGBoost(),
    "catboost": _CatBoost(),
    "linear": _Linear(),
}


def library_versions(kinds: Sequence[str]) -> dict[str, str]:
    """Installed versions of the libraries behind ``kinds`` (members such as
    ``"lightgbm:raw"`` count as their library), for manifests and reports."""
    import importlib.metadata

    versions = {}
    for kind in dict.fromkeys(member_kind(k) for k in kinds):
        dist = {"xgboost": ("xgboost", "xgboost-cpu"), "linear": ("scikit-learn",)}.get(
            kind, (kind,)
        )
        for name in dist:
            try:
                versions[kind] = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions

"""Search space, CV objective with Wilcoxon pruning, storages and resumable ``tune()``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import polars as pl
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from lesionboost.cv import patient_folds
from lesionboost.ensemble._linear import RULE_DEFAULTS
from lesionboost.ensemble._members import MEMBERS
from lesionboost.estimator import VIEW_MEMBER_WEIGHT, LesionBoostClassifier, default_member_params
from lesionboost.simulate import simulate_slice3d
from lesionboost.tuning import (
    DEFAULTS_ATTR,
    PatientCVObjective,
    SearchSpace,
    open_study,
    trial_history,
    tune,
)
from lesionboost.tuning._space import _LIBRARY_DEFAULTS
from lesionboost.tuning._storage import (
    WORKER_ATTR,
    StorageError,
    describe_storage,
    mask_url,
    normalise_url,
    open_storage,
    recover_stale_trials,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Cheap trials: one member, few rounds, one bag; the space is searched as usual.
FAST = {"n_jobs": 1, "random_state": 0}


@pytest.fixture(scope="module")
def tiny() -> pl.DataFrame:
    return simulate_slice3d(30, seed=3).train


# --------------------------------------------------------------------------- search space
def test_defaults_lie_in_the_space_and_map_to_the_estimator_defaults() -> None:
    space = SearchSpace()
    dists, defaults = space.distributions(), space.defaults()
    assert set(dists) == set(defaults) and len(dists) > 20
    for key, value in defaults.items():
        assert dists[key]._contains(dists[key].to_internal_repr(value)), key
    config = space.to_config(defaults)
    estimator = LesionBoostClassifier().get_params()
    assert sorted(config["members"]) == sorted(estimator["members"])
    for member in space.members:
        for name, value in config[f"{member}_params"].items():
            # what {member}_params=None stands for, else the library default the space documents
            own = {**MEMBERS[member].option_defaults, **default_member_params(member)}
            expected = own[name] if name in own else _LIBRARY_DEFAULTS[(member, name)]
            if expected is None:  # e.g. the linear member's rule_view: every column
                assert value is None, (member, name)
            else:
                assert value == pytest.approx(expected), (member, name)
    for name in (
        "neg_ratio",
        "pos_oversample",
        "n_bags",
        "feature_groups",
        "rank_columns",
        "followup",
    ):
        assert tuple(np.atleast_1d(config[name])) == tuple(np.atleast_1d(estimator[name]))
    assert "weights" not in config  # equal weights = the estimator's default (None)


def test_config_normalises_weights_and_switches_feature_groups() -> None:
    space = SearchSpace(members=("lightgbm", "xgboost"))
    params = {
        **space.defaults(),
        "weight.lightgbm": 0.9,
        "weight.xgboost": 0.3,
        "features.region": True,
        "features.outlier": False,
        "features.ranks": "key",
        "features.followup": False,
        "ensemble.raw_member": False,
    }
    config = space.to_config(params)
    assert config["weights"] == pytest.approx({"lightgbm": 0.75, "xgboost": 0.25})
    assert config["feature_groups"] == ("derived", "patient", "region", "counts")
    assert config["rank_columns"] == "key"
    assert space.distributions()["features.ranks"].choices == ("none", "key")
    assert config["followup"] is False
    assert space.to_config({**params, "features.followup": "auto"})["followup"] == "auto"
    assert space.distributions()["features.followup"].choices == ("auto", False)
    assert space.distributions()["features.followup_offset"].choices == (True, False)
    assert config["followup_offset"] is space.defaults()["features.followup_offset"]
    assert space.to_config({**params, "features.followup_offset": True})["followup_offset"] is True
    assert "catboost_params" not in config and config["members"] == ("lightgbm", "xgboost")
    assert isinstance(space.distributions()["lightgbm.num_leaves"], IntDistribution)


def test_the_raw_member_is_switched_with_lightgbm_and_weighted_like_the_others() -> None:
    space = SearchSpace(members=("lightgbm", "xgboost"))
    defaults = space.defaults()
    assert defaults["ensemble.raw_member"] is True  # the estimator's default holds it
    assert defaults["weight.lightgbm:raw"] == VIEW_MEMBER_WEIGHT
    assert "weights" not in space.to_config(defaults)  # None: the estimator's default blend
    on = space.to_config({**defaults, "weight.lightgbm:raw": 0.6})
    assert on["members"] == ("lightgbm", "xgboost", "lightgbm:raw")
    expected = {"lightgbm": 1 / 2.6, "xgboost": 1 / 2.6, "lightgbm:raw": 0.6 / 2.6}
    assert on["weights"] == pytest.approx(expected)
    off = space.to_config({**defaults, "ensemble.raw_member": False})
    assert off["members"] == ("lightgbm", "xgboost") and "weights" not in off
    # without LightGBM among the tuned libraries there is no raw member to switch
    xgb = SearchSpace(members=("xgboost",))
    assert "ensemble.raw_member" not in xgb.distributions()
    assert xgb.to_config(xgb.defaults())["members"] == ("xgboost",)
    # without the ensemble search the raw member follows the estimator's default members
    fixed = SearchSpace(members=("lightgbm",), ensemble=False)
    assert fixed.to_config(fixed.defaults())["members"] == ("lightgbm", "lightgbm:raw")


def test_the_linear_member_is_searched_by_its_strength_and_has_no_rounds() -> None:
    from lesionboost.tuning._space import build_config

    space = SearchSpace(members=("lightgbm", "linear"))
    distributions = space.distributions()
    assert distributions["linear.C"].log and "weight.linear" in distributions
    assert distributions["linear.rule_scale"].choices == ("0.2", "0.45", "0.7", "1", "0.45,1")
    own = default_member_params("linear")
    assert space.defaults()["linear.rule_scale"] == f"{own['rule_scale']:g}"
    defaults_config = build_config(space, space.defaults(), rounds=30)
    assert defaults_config["linear_params"]["rule_scale"] == pytest.approx(own["rule_scale"])
    # the inner choice between 0.45 and 1 is a choice of its own
    chosen = build_config(space, {**space.defaults(), "linear.rule_scale": "0.45,1"}, rounds=30)
    assert chosen["linear_params"]["rule_scale"] == (0.45, 1.0)
    assert distributions["linear.tails"].choices == ("none", "1", "0,1")
    assert space.defaults()["linear.tails"] == "none"  # the estimator's default: no hinges
    assert distributions["linear.rules"].choices == ("none", "50")
    assert space.defaults()["linear.rules"] == "50"  # the estimator's default: 50 rules
    assert distributions["linear.rule_view"].choices == ("all", "raw")
    assert space.defaults()["linear.rule_view"] == "raw"  # the default rules: raw columns
    assert distributions["linear.l1_ratio"].choices == ("l2", "l1")
    assert space.defaults()["linear.l1_ratio"] == "l1"  # the estimator's default: L1
    assert distributions["linear.rule_residual"].choices == ("off", "on")
    trial = {
        **space.defaults(),
        "linear.C": 0.5,
        "linear.tails": "0,1",
        "linear.rules": "50",
        "linear.rule_scale": "0.7",
        "linear.context_scale": 0.4,
        "linear.l1_ratio": "l1",
        "linear.rule_residual": "on",
    }
    config = build_config(space, trial, rounds=30)
    assert config["members"] == ("lightgbm", "linear", "lightgbm:raw")
    # no n_estimators: it has no rounds; a context penalty is relative to the raw columns
    expected = {
        "C": 0.5,
        "tails": (0.0, 1.0),
        "rules": 50,
        "rule_view": "raw",
        "rule_scale": 0.7,
        "context_scale": 0.4,
        "l1_ratio": 1.0,
        "rule_residual": True,
        "own_view": "raw",
    }
    assert config["linear_params"] == expected
    assert distributions["linear.context_scale"].log
    unscaled = build_config(space, {**trial, "linear.context_scale": 1.0}, rounds=30)
    assert "own_view" not in unscaled["linear_params"]  # no penalty: no own columns needed
    assert config["lightgbm_params"]["n_estimators"] == 30
    model = LesionBoostClassifier(**config)  # the estimator accepts what the space builds
    assert model.get_params()["linear_params"] == expected
    plain = build_config(space, {**trial, "linear.rules": "none"}, rounds=30)
    assert plain["linear_params"]["rules"] == 0
    every = build_config(space, {**trial, "linear.rule_view": "all"}, rounds=30)
    assert every["linear_params"]["rule_view"] is None
    ridge = build_config(space, {**trial, "linear.l1_ratio": "l2"}, rounds=30)
    assert ridge["linear_params"]["l1_ratio"] == 0.0
    from_base = build_config(space, {**trial, "linear.rule_residual": "off"}, rounds=30)
    assert from_base["linear_params"]["rule_residual"] is False


def test_a_tails_default_outside_the_choices_joins_them(monkeypatch) -> None:
    monkeypatch.setitem(MEMBERS["linear"].defaults, "tails", (0.5, 2.0))
    space = SearchSpace(members=("linear",))
    assert space.distributions()["linear.tails"].choices == ("none", "1", "0,1", "0.5,2")
    config = space.to_config(space.defaults())
    assert config["linear_params"]["tails"] == (0.5, 2.0)


def test_rule_options_the_estimator_leaves_unset_start_from_the_member_defaults(
    monkeypatch,
) -> None:
    import lesionboost.estimator._classifier as estimator_module

    monkeypatch.setattr(estimator_module, "DEFAULT_LINEAR_PARAMS", {})
    space = SearchSpace(members=("linear",))
    defaults = space.defaults()
    # the member's own scale (0.3) is not a listed choice: it joins them
    assert defaults["linear.rule_scale"] == f"{RULE_DEFAULTS['rule_scale']:g}"
    assert defaults["linear.rule_scale"] in space.distributions()["linear.rule_scale"].choices
    scale = space.to_config(defaults)["linear_params"].get(
        "rule_scale", RULE_DEFAULTS["rule_scale"]
    )
    assert scale == pytest.approx(RULE_DEFAULTS["rule_scale"])
    assert defaults["linear.rules"] == "none"  # RULE_DEFAULTS: no rules
    assert defaults["linear.rule_view"] == "all"  # rules on every column
    assert defaults["linear.l1_ratio"] == "l2"  # PENALTY_DEFAULTS: L2
    assert defaults["linear.rule_residual"] == "off"  # RULE_DEFAULTS: from the base rate


def test_ranges_widen_to_contain_a_default_outside_them(monkeypatch) -> None:
    monkeypatch.setitem(MEMBERS["lightgbm"].defaults, "learning_rate", 0.3)
    dist = SearchSpace(members=("lightgbm",)).distributions()["lightgbm.learning_rate"]
    assert (dist.low, dist.high) == (0.01, 0.3)


def test_unknown_member_is_rejected() -> None:
    with pytest.raises(ValueError, match="members"):
        SearchSpace(members=("lightgbm", "ranger"))


# --------------------------------------------------------------------------- objective
class _Lookup:
    """A stand-in classifier: perfect (reads the label) or pure noise; instant to fit."""

    def __init__(self, truth: dict[str, int], perfect: bool) -> None:
        self.truth, self.perfect = truth, perfect

    def get_params(self, deep: bool = False) -> dict:
        return {"truth": self.truth, "perfect": self.perfect}

    def fit(self, X, y):  # noqa: ANN001, ANN201
        return self

    def predict_proba(self, X):  # noqa: ANN001, ANN201
        ids = X.get_column("isic_id").to_list()
        rng = np.random.default_rng(len(ids))
        p = (
            np.array([self.truth[i] for i in ids], float)
            if self.perfect
            else rng.uniform(size=len(ids))
        )
        return np.column_stack([1 - p, p])


def test_wilcoxon_prunes_a_trial_worse_on_every_fold_before_its_last_fold(tiny) -> None:
    folds = patient_folds(tiny, n_splits=5, seed=0)
    truth = dict(zip(tiny["isic_id"].to_list(), tiny["target"].to_list(), strict=True))
    space = SearchSpace(members=("lightgbm",))
    objective = PatientCVObjective(tiny, folds, space=space)
    objective.estimator = lambda params: _Lookup(truth, params == space.defaults())
    study = open_study(None, "prune", space=space)
    study.optimize(objective, n_trials=2)
    first, second = study.trials
    assert first.user_attrs[DEFAULTS_ATTR] and first.value == pytest.approx(0.2)
    assert len(first.intermediate_values) == 5
    assert second.state == TrialState.PRUNED
    assert len(second.intermediate_values) == 3  # p = 1/8 < 0.2 after three lost folds
    assert second.user_attrs["partial_value"] < 0.1
    history = trial_history(study)
    assert [h["state"] for h in history] == ["COMPLETE", "PRUNED"]
    assert history[1]["value"] == pytest.approx(second.user_attrs["partial_value"])


def test_objective_scores_the_pooled_oof_of_the_real_estimator(tiny, tmp_path) -> None:
    folds = patient_folds(tiny, n_splits=2, seed=0)
    space = SearchSpace(members=("lightgbm",), ensemble=False, feature_groups=False)
    objective = PatientCVObjective(
        tiny, folds, space=space, rounds=10, fixed_params={**FAST, "n_bags": 1}, oof_dir=tmp_path
    )
    study = open_study(None, "real", space=space)
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert 0.0 < trial.value <= 0.2
    assert len(trial.user_attrs["fold_scores"]) == 2
    assert trial.user_attrs[WORKER_ATTR]["pid"] > 0
    saved = pl.read_parquet(tmp_path / "trial-0.parquet")
    from lesionboost.metrics import pauc_above_tpr

    assert pauc_above_tpr(tiny["target"].to_numpy(), saved["score"].to_numpy()) == pytest.approx(
        trial.value
    )
    assert objective.estimator(trial.params).get_params()["lightgbm_params"]["n_estimators"] == 10


# --------------------------------------------------------------------------- tune()
def test_tune_resumes_to_the_same_total_without_losing_or_repeating(tiny, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    kwargs = dict(
        storage=url, n_splits=2, members=("lightgbm",), rounds=8, fixed_params=FAST, progress=False
    )
    study, best = tune(tiny, n_trials=2, **kwargs)
    first = [(t.number, t.value, t.params) for t in study.trials]
    assert study.trials[0].user_attrs[DEFAULTS_ATTR]
    result = tune(tiny, n_trials=3, **kwargs)
    trials = result.study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(trials) == 3
    assert [(t.number, t.value, t.params) for t in result.study.trials[:2]] == first
    assert sum(bool(t.user_attrs.get(DEFAULTS_ATTR)) for t in result.study.trials) == 1
    assert result.best_value >= result.defaults_value
    assert result.best_params["lightgbm_params"]["n_estimators"] == 8
    again = tune(tiny, n_trials=3, **kwargs)  # already complete: runs nothing
    assert len(again.study.trials) == 3


def test_ctrl_c_in_the_defaults_trial_queues_the_defaults_again(tiny, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    kwargs = dict(
        storage=url, n_splits=2, members=("lightgbm",), rounds=8, fixed_params=FAST, progress=False
    )
    real_fit = LesionBoostClassifier.fit

    def interrupted(self, X, y):
        raise KeyboardInterrupt

    monkeypatch.setattr(LesionBoostClassifier, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune(tiny, n_trials=2, **kwargs)
    monkeypatch.setattr(LesionBoostClassifier, "fit", real_fit)
    result = tune(tiny, n_trials=2, **kwargs)  # resume
    states = [(t.state, bool(t.user_attrs.get(DEFAULTS_ATTR))) for t in result.study.trials]
    assert states[0] == (TrialState.FAIL, True)
    assert (TrialState.COMPLETE, True) in states[1:]
    assert result.defaults_value is not None and result.best_value >= result.defaults_value
    # resuming again does not queue the defaults a third time
    again = tune(tiny, n_trials=2, **kwargs)
    assert sum(bool(t.user_attrs.get(DEFAULTS_ATTR)) for t in again.study.trials) == 2


def test_a_study_refuses_workers_with_other_fixed_settings(tiny, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    kwargs = dict(storage=url, n_splits=2, members=("lightgbm",), rounds=8, progress=False)
    tune(tiny, n_trials=1, fixed_params=FAST, **kwargs)
    tune(tiny, n_trials=1, fixed_params={**FAST, "n_jobs": 2}, **kwargs)  # speed only: fine
    with pytest.raises(ValueError, match="other data or settings.*fixed_params"):
        tune(tiny, n_trials=2, fixed_params={**FAST, "catboost_params": {"depth": 4}}, **kwargs)


def test_a_study_refuses_other_data(tiny, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    open_study(url, "s", fingerprint="aaa", settings={"members": ["lightgbm"]})
    with pytest.raises(ValueError, match="other data or settings.*data_fingerprint"):
        open_study(url, "s", fingerprint="bbb", settings={"members": ["lightgbm"]})


def test_tune_fits_every_fold_with_the_rows_weights(tiny, tmp_path, monkeypatch) -> None:
    followed = tiny["lesion_id"].is_not_null().to_numpy() & (tiny["target"].to_numpy() == 0)
    weight = np.where(followed, 3.0, 1.0)  # the 7th place's extra weight on followed-up lesions
    seen: list[tuple[int, float]] = []
    real_fit = LesionBoostClassifier.fit

    def recording(self, X, y, sample_weight=None):
        if sample_weight is not None:
            seen.append((X.height, float(np.sum(sample_weight))))
        return real_fit(self, X, y, sample_weight=sample_weight)

    monkeypatch.setattr(LesionBoostClassifier, "fit", recording)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    kwargs = dict(
        storage=url,
        n_splits=2,
        members=("lightgbm",),
        rounds=8,
        fixed_params=FAST,
        progress=False,
        seed=0,
    )
    tune(tiny, n_trials=1, sample_weight=weight, oof_dir=tmp_path / "weighted", **kwargs)
    folds = patient_folds(tiny, n_splits=2, seed=0)
    # each fold's model got exactly its training rows' weights
    assert sorted(seen) == sorted(
        (int((folds != k).sum()), float(weight[folds != k].sum())) for k in (0, 1)
    )
    # the same study refuses other weights (or none): its trials measured something else
    with pytest.raises(ValueError, match="other data or settings.*data_fingerprint"):
        tune(tiny, n_trials=2, **kwargs)
    with pytest.raises(ValueError, match="other data or settings.*data_fingerprint"):
        tune(tiny, n_trials=2, sample_weight=weight**2, **kwargs)
    # only relative weights count (the ensemble divides by their mean): scaled ones resume
    resumed = tune(tiny, n_trials=2, sample_weight=weight * 2, **kwargs)
    assert len(resumed.study.trials) == 2
    # and the weights change what the trial measures (its out-of-fold scores)
    tune(tiny, n_trials=1, oof_dir=tmp_path / "plain", **{**kwargs, "storage": None})
    scores = [
        pl.read_parquet(tmp_path / run / "trial-0.parquet")["score"].to_numpy()
        for run in ("weighted", "plain")
    ]
    assert not np.allclose(*scores)
    memory = {**kwargs, "storage": None}
    with pytest.raises(ValueError, match=r"sample_weight has shape \(3,\)"):
        tune(tiny, n_trials=1, sample_weight=[1.0, 1.0, 1.0], **memory)
    with pytest.raises(ValueError, match="1-D"):
        tune(tiny, n_trials=1, sample_weight=weight.reshape(-1, 1), **memory)
    with pytest.raises(ValueError, match="finite and non-negative"):
        tune(tiny, n_trials=1, sample_weight=-weight, **memory)
    no_cancer = np.where(tiny["target"].to_numpy() == 1, 0.0, 1.0)
    with pytest.raises(ValueError, match="malignant lesions outside fold 0 a total weight of 0"):
        tune(tiny, n_trials=1, sample_weight=no_cancer, **memory)


def test_tune_fits_every_fold_with_its_training_lesions_follow_up(tiny, monkeypatch) -> None:
    followed = tiny["lesion_id"].is_not_null().to_numpy()
    seen: list[tuple[int, int]] = []
    real_fit = LesionBoostClassifier.fit

    def recording(self, X, y, sample_weight=None, followed_up=None):
        seen.append((X.height, -1 if followed_up is None else int(np.sum(followed_up))))
        return real_fit(self, X, y, sample_weight=sample_weight, followed_up=followed_up)

    monkeypatch.setattr(LesionBoostClassifier, "fit", recording)
    fixed = {**FAST, "followup": True}
    tune(
        tiny,
        n_trials=1,
        n_splits=2,
        members=("lightgbm",),
        rounds=8,
        fixed_params=fixed,
        progress=False,
        seed=0,
    )
    folds = patient_folds(tiny, n_splits=2, seed=0)
    expected = [(int((folds != k).sum()), int(followed[folds != k].sum())) for k in (0, 1)]
    assert sorted(seen[:2]) == sorted(expected)


def test_a_fixed_followup_is_left_out_of_the_search_and_a_clash_is_refused(tiny) -> None:
    searched = SearchSpace(members=("lightgbm",))
    assert "features.followup" in searched.distributions()
    assert "features.followup" not in SearchSpace(followup=False).distributions()
    assert "features.followup" not in SearchSpace(feature_groups=False).distributions()
    run = dict(n_trials=1, n_splits=2, members=("lightgbm",), rounds=8, progress=False)
    with pytest.raises(ValueError, match=r"fixed_params sets \['followup'\].*followup=False"):
        tune(tiny, search_space=searched, fixed_params={"followup": False}, **run)
    with pytest.raises(ValueError, match=r"fixed_params sets \['n_bags'\]"):
        tune(tiny, fixed_params={"n_bags": 3}, **run)
    result = tune(tiny, fixed_params={**FAST, "followup": False}, **run)
    assert "followup" not in result.best_params  # fixed, so not a searched value
    assert "features.followup" not in result.study.trials[0].params
    assert "features.followup_offset" not in result.study.trials[0].params
    clash = r"fixed_params sets \['followup_offset'\].*followup=False"
    with pytest.raises(ValueError, match=clash):
        tune(tiny, search_space=searched, fixed_params={"followup_offset": True}, **run)


def test_workers_fit_with_the_weights_too(tiny, tmp_path, monkeypatch) -> None:
    # The worker entry point run in this process (spawned workers are tested in
    # test_distributed.py): what tune() hands a worker must carry the weights.
    from lesionboost.tuning import _runner as _tuning_run
    from lesionboost.tuning import _tune as tuning

    weight = np.where(tiny["target"].to_numpy() == 1, 2.0, 1.0)
    seen: list[float] = []
    real_fit = LesionBoostClassifier.fit

    def recording(self, X, y, sample_weight=None):
        seen.append(float(np.sum(sample_weight)))
        return real_fit(self, X, y, sample_weight=sample_weight)

    def in_process(payload, n_workers, study, bar):
        _tuning_run._worker_main({**payload, "worker": 1})

    monkeypatch.setenv("TQDM_DISABLE", "1")  # the worker sets it; restored afterwards
    monkeypatch.setattr(LesionBoostClassifier, "fit", recording)
    monkeypatch.setattr(tuning, "_run_workers", in_process)
    tune(
        tiny,
        n_trials=1,
        n_workers=2,
        storage=f"journal:{tmp_path / 'w.journal'}",
        n_splits=2,
        members=("lightgbm",),
        rounds=8,
        fixed_params=FAST,
        progress=False,
        sample_weight=weight,
    )
    folds = patient_folds(tiny, n_splits=2, seed=0)
    assert sorted(seen) == sorted(float(weight[folds != k].sum()) for k in (0, 1))


def test_tune_rejects_bad_arguments(tiny) -> None:
    with pytest.raises(ValueError, match="n_trials"):
        tune(tiny, n_trials=0)
    with pytest.raises(ValueError, match="journal file"):
        tune(tiny, n_trials=2, n_workers=2)
    with pytest.raises(ValueError, match="target"):
        tune(tiny.drop("target"), n_trials=1, progress=False)


# --------------------------------------------------------------------------- storages
def test_storage_urls_are_normalised_and_passwords_masked(tmp_path) -> None:
    assert mask_url("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert normalise_url(str(tmp_path / "a.db")) == f"sqlite:///{tmp_path / 'a.db'}"
    assert normalise_url(str(tmp_path / "a.journal")) == f"journal:{tmp_path / 'a.journal'}"
    assert describe_storage(None).startswith("in-memory")
    assert open_storage(None) is None
    assert type(open_storage(f"journal:{tmp_path / 'x.journal'}")).__name__ == "JournalStorage"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql://tuner:hunter2@127.0.0.1:1/optuna", "Check that the server is running"),
        ("sqlite:////no/such/folder/study.db", "does not exist"),
        ("nonsense", "expected a SQLAlchemy URL"),
        ("journal:/no/such/folder/study.journal", "does not exist"),
    ],
)
def test_unreachable_storage_gives_one_clear_line(url: str, needle: str) -> None:
    pytest.importorskip("psycopg2") if url.startswith("postgresql") else None
    with pytest.raises(StorageError) as info:
        open_storage(url)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert "hunter2" not in message
    assert isinstance(info.value, ConnectionError)


_DEAD_WORKER = textwrap.dedent(
    """
    import os, sys, optuna
    from lesionboost.tuning._storage import WORKER_ATTR, open_storage, worker_identity
    study = optuna.load_study(study_name="s", storage=open_storage(sys.argv[1]))
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.set_user_attr(WORKER_ATTR, worker_identity())
    os._exit(0)  # dies with its trial RUNNING, as after SIGKILL
    """
)


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_trials_of_a_dead_worker_are_failed_and_retried(tmp_path, kind) -> None:
    url = (
        f"journal:{tmp_path / 's.journal'}"
        if kind == "journal"
        else (f"sqlite:///{tmp_path / 's.db'}")
    )
    study = optuna.create_study(storage=open_storage(url), study_name="s", direction="maximize")
    subprocess.run([sys.executable, "-c", _DEAD_WORKER, url], check=True)
    [running] = study.get_trials(states=(TrialState.RUNNING,))
    assert recover_stale_trials(study) == [running.number]
    failed, retry = study.get_trials()
    assert failed.state == TrialState.FAIL
    assert retry.state == TrialState.WAITING and retry.params == failed.params
    assert WORKER_ATTR not in retry.user_attrs  # the copy must not look dead too
    assert recover_stale_trials(study) == []  # idempotent
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert study.trials[1].state == TrialState.COMPLETE
    assert study.trials[1].params == failed.params


def test_a_live_workers_trial_is_left_alone(tmp_path) -> None:
    study = optuna.create_study(storage=open_storage(f"journal:{tmp_path / 'j.journal'}"))
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    from lesionboost.tuning._storage import worker_identity

    trial.set_user_attr(WORKER_ATTR, worker_identity())  # this very process: alive
    assert recover_stale_trials(study) == []
    other_host = {**worker_identity(), "host": "elsewhere", "pid": 999999}
    trial.set_user_attr(WORKER_ATTR, other_host)  # other machines: left to the heartbeat
    assert recover_stale_trials(study) == []


def test_tuning_guide_documents_every_searched_parameter_and_its_range() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "tuning.md").read_text()
    table = [line for line in doc.splitlines() if line.startswith("| ")]
    number = r"([0-9.e+-]+) -- ([0-9.e+-]+)"
    every_member = SearchSpace(members=("lightgbm", "xgboost", "catboost", "linear"))
    for space in (SearchSpace(), every_member):
        for key, distribution in space.distributions().items():
            group, name = key.split(".", 1)
            member, row_name = (
                ("ensemble", "weight.<member>") if group == "weight" else (group, name)
            )
            rows = [line for line in table if line.startswith(f"| {member} |") and row_name in line]
            assert rows, key
            if not isinstance(distribution, (FloatDistribution, IntDistribution)):
                continue
            cell = rows[0].strip("|").split("|")[2]
            own = re.search(rf"`{re.escape(name)}` {number}", cell) if group == "weight" else None
            found = own or re.match(rf"\s*{number}", cell)
            assert found, (key, cell)
            low, high = float(found.group(1)), float(found.group(2))
            assert (low, high) == (distribution.low, distribution.high), (key, cell)


def test_worker_entry_point_is_importable_by_spawned_processes() -> None:
    # multiprocessing "spawn" pickles the target by reference: it must be a module-level
    # function of an importable module, and its payload (space, frame) must pickle.
    import pickle

    from lesionboost.tuning._runner import _worker_main

    assert _worker_main.__module__ == "lesionboost.tuning._runner"
    space = pickle.loads(pickle.dumps(SearchSpace(members=("xgboost",))))
    assert list(space.distributions()) == list(SearchSpace(members=("xgboost",)).distributions())


def test_a_trial_is_stamped_with_its_worker_before_the_objective_runs() -> None:
    from lesionboost.tuning._runner import _sampler
    from lesionboost.tuning._storage import WORKER_ATTR

    study = optuna.create_study(direction="maximize")
    study.sampler = _sampler(0, study, 0, 3, shared=False)
    seen = {}

    def objective(trial: optuna.Trial) -> float:
        seen.update(study._storage.get_trial(trial._trial_id).user_attrs)
        return 0.0

    study.optimize(objective, n_trials=1)
    assert seen[WORKER_ATTR]["pid"] == os.getpid()


def test_an_unstamped_running_trial_is_failed_once_it_is_old(monkeypatch) -> None:
    import lesionboost.tuning._storage as storage_module

    study = optuna.create_study(direction="maximize")
    orphan = study.ask()  # created by a worker killed before it could stamp the trial
    assert recover_stale_trials(study) == []  # young: it may still belong to a live worker
    monkeypatch.setattr(storage_module, "UNSTAMPED_GRACE_SECONDS", -1.0)
    assert recover_stale_trials(study) == [orphan.number]
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "WAITING"]  # failed, and its parameters queued again


def test_a_sqlite_run_is_reproducible_and_a_shared_storage_is_not(
    tiny, tmp_path, monkeypatch
) -> None:
    import lesionboost.tuning._runner as run_module

    kwargs = dict(n_splits=2, members=("lightgbm",), rounds=8, fixed_params=FAST, progress=False)
    proposals: dict[str, list] = {"sqlite": [], "journal": []}
    for pid in (111, 222):  # two processes started with the same command
        monkeypatch.setattr(
            run_module, "worker_identity", lambda pid=pid: {"host": "h", "pid": pid, "start": 1}
        )
        for kind in proposals:
            url = (
                f"sqlite:///{tmp_path / f'{pid}.db'}"
                if kind == "sqlite"
                else f"journal:{tmp_path / f'{pid}.journal'}"
            )
            study, _ = tune(tiny, n_trials=3, storage=url, **kwargs)
            proposals[kind].append([t.params for t in study.trials])
    # a SQLite file is single-process: the same seed proposes the same trials
    assert proposals["sqlite"][0] == proposals["sqlite"][1]
    # a journal file or server may be shared by machines running one command: no duplicates
    assert proposals["journal"][0][1:] != proposals["journal"][1][1:]


def test_folds_that_leave_a_training_part_without_positives_say_what_to_change() -> None:
    from lesionboost.tuning import check_training_data

    frame = simulate_slice3d(80, seed=0).train
    y = frame.get_column("target").to_numpy()
    patients = frame.get_column("patient_id")
    positive = sorted(set(patients.filter(pl.Series(y == 1)).to_list()))
    assert len(positive) >= 3
    others = sorted(set(patients.to_list()) - set(positive))
    in_first = patients.is_in(positive).to_numpy()

    def folds(n: int) -> np.ndarray:  # every patient with a malignant lesion in fold 0
        rank = {p: 1 + i % (n - 1) for i, p in enumerate(others)}
        return np.where(in_first, 0, patients.replace_strict(rank, default=0).to_numpy())

    with pytest.raises(ValueError, match="fold 0: every malignant lesion.*patient_folds"):
        check_training_data(frame, folds(2))
    too_many = len(positive) + 1
    with pytest.raises(ValueError, match=f"at most {len(positive)} folds"):
        check_training_data(frame, folds(too_many))
    one_positive = frame.filter(~patients.is_in(positive[1:]))
    keep = ~patients.is_in(positive[1:]).to_numpy()
    with pytest.raises(ValueError, match="add patients with a malignant lesion"):
        check_training_data(one_positive, folds(2)[keep])

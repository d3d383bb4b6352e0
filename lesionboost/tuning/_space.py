"""Search space of :mod:`lesionboost.tuning` (documented there): ranges, defaults, configs.

Parameters are flat ``"<group>.<name>"`` keys (``lightgbm.learning_rate``,
``ensemble.neg_ratio``, ``weight.catboost``, ``features.outlier``) so that one
Optuna study holds them all; :meth:`SearchSpace.to_config` turns a trial's
parameters into :class:`~lesionboost.LesionBoostClassifier` keyword arguments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from ..ensemble import MEMBERS, member_kind
from ..estimator import DEFAULT_MEMBERS, default_member_params

__all__ = ["SearchSpace", "TUNED_MEMBERS", "build_config"]

#: The members searched by default: the kinds of the estimator's default members, the
#: linear member included (the raw-column LightGBM is switched on and off with LightGBM).
TUNED_MEMBERS: tuple[str, ...] = tuple(dict.fromkeys(member_kind(m) for m in DEFAULT_MEMBERS))

_OPTIONAL_GROUPS = ("region", "outlier", "counts")
#: ``rank_columns`` choices searched: none, or the 16 key columns (``"all"``
#: costs a sort per numeric column and group, for a few hundred more features).
_RANK_CHOICES = ("none", "key")
#: ``followup`` choices searched: the follow-up score when the data allow it, or never.
_FOLLOWUP_CHOICES: tuple[bool | str, ...] = ("auto", False)


@dataclass(frozen=True)
class _Range:
    low: float
    high: float
    log: bool = False
    integer: bool = False


_MEMBER_RANGES: dict[str, dict[str, _Range]] = {
    "lightgbm": {
        "learning_rate": _Range(0.01, 0.1, log=True),
        "num_leaves": _Range(16, 256, log=True, integer=True),
        "max_depth": _Range(3, 8, integer=True),
        "lambda_l1": _Range(1e-3, 10.0, log=True),
        "lambda_l2": _Range(1e-3, 10.0, log=True),
        "feature_fraction": _Range(0.4, 1.0),
        "feature_fraction_bynode": _Range(0.4, 1.0),
        "bagging_fraction": _Range(0.4, 1.0),
        "bagging_freq": _Range(1, 7, integer=True),
        "min_data_in_leaf": _Range(5, 100, log=True, integer=True),
        "scale_pos_weight": _Range(0.8, 4.0, log=True),
    },
    "xgboost": {
        "learning_rate": _Range(0.01, 0.1, log=True),
        "max_depth": _Range(3, 8, integer=True),
        "lambda": _Range(1e-3, 10.0, log=True),
        "alpha": _Range(1e-3, 10.0, log=True),
        "subsample": _Range(0.4, 1.0),
        "colsample_bytree": _Range(0.4, 1.0),
        "colsample_bylevel": _Range(0.4, 1.0),
        "colsample_bynode": _Range(0.4, 1.0),
        "min_child_weight": _Range(0.5, 10.0, log=True),
        "scale_pos_weight": _Range(0.8, 4.0, log=True),
    },
    "catboost": {
        "learning_rate": _Range(0.01, 0.1, log=True),
        "depth": _Range(4, 8, integer=True),
        "l2_leaf_reg": _Range(1e-2, 30.0, log=True),
        "subsample": _Range(0.4, 1.0),
        "colsample_bylevel": _Range(0.4, 1.0),
        "min_data_in_leaf": _Range(5, 100, log=True, integer=True),
        "random_strength": _Range(0.1, 10.0, log=True),
        "scale_pos_weight": _Range(0.8, 4.0, log=True),
    },
    "linear": {
        "C": _Range(0.01, 1.0, log=True),
        # the scale of every column outside the raw ones: their penalty is 1/context_scale
        # (L1) or 1/context_scale**2 (L2) times a raw column's (1: no context penalty)
        "context_scale": _Range(0.2, 1.0, log=True),
    },
}
#: The view whose columns keep their full weight when ``linear.context_scale`` < 1.
_OWN_VIEW = "raw"

#: Member parameters searched over a few named choices: member -> name -> {choice: value}.
#: The linear member's hinge thresholds (none, +-1, or 0 and +-1), its rules (none,
#: or the leaves of 50 trees), the columns they split on (all, or the raw columns),
#: where the rule trees start (the base rate, or the margin of the regression without
#: rules: ``rule_residual``), the rules' indicator value (``rule_scale``: each rule's
#: penalty is 1/rule_scale (L1) or 1/rule_scale**2 (L2) times a normal score's; "0.45,1"
#: lets the member choose between the two on inner folds) and its penalty (L2, or L1:
#: ``l1_ratio`` 0 or 1).
_MEMBER_CHOICES: dict[str, dict[str, dict[str, Any]]] = {
    "linear": {
        "tails": {"none": (), "1": (1.0,), "0,1": (0.0, 1.0)},
        "rules": {"none": 0, "50": 50},
        "rule_view": {"all": None, "raw": "raw"},
        "rule_residual": {"off": False, "on": True},
        "rule_scale": {"0.2": 0.2, "0.45": 0.45, "0.7": 0.7, "1": 1.0, "0.45,1": (0.45, 1.0)},
        "l1_ratio": {"l2": 0.0, "l1": 1.0},
    },
}


def _comparable(value: Any) -> Any:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _choice_name(member: str, name: str, value: Any) -> str:
    """The choice of ``_MEMBER_CHOICES[member][name]`` that stands for ``value``."""
    choices = _MEMBER_CHOICES[member][name]
    for label, option in choices.items():
        if _comparable(option) == _comparable(value):
            return label
    if isinstance(value, (list, tuple)):  # a default outside the listed choices
        return ",".join(f"{v:g}" for v in value)
    return str(value)


def _choice_value(member: str, name: str, label: str) -> Any:
    choices = _MEMBER_CHOICES[member][name]
    if label in choices:
        return choices[label]
    sample = next(iter(choices.values()))
    if isinstance(sample, tuple) or "," in label:  # a default outside the listed choices
        return tuple(float(v) for v in label.split(","))
    return int(label) if isinstance(sample, int) else float(label)


# Library defaults of searched parameters the member adapters leave unset.
_LIBRARY_DEFAULTS = {
    ("catboost", "random_strength"): 1.0,
}

_ENSEMBLE_RANGES: dict[str, _Range] = {
    "neg_ratio": _Range(0.003, 0.05, log=True),
    "pos_oversample": _Range(1.0, 4.0),
    "n_bags": _Range(1, 4, integer=True),
}


def _default_weight(member: str) -> float:
    """A member's weight in the estimator's default blend (``weights=None``)."""
    from ..estimator import default_member_weight

    return default_member_weight(member)


def _estimator_defaults() -> dict[str, Any]:
    """The estimator's own defaults, read (not copied) so the two never drift apart."""
    from ..estimator import LesionBoostClassifier

    return LesionBoostClassifier().get_params(deep=False)


_WEIGHT_RANGE = _Range(0.05, 1.0)
#: The member trained on the raw metadata columns only (searched on and off).
_RAW_MEMBER = "lightgbm:raw"


def _distribution(spec: _Range, default: Any) -> BaseDistribution:
    low, high = spec.low, spec.high
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        low, high = min(low, default), max(high, default)  # always contain the default
    if spec.integer:
        return IntDistribution(int(math.floor(low)), int(math.ceil(high)), log=spec.log)
    return FloatDistribution(float(low), float(high), log=spec.log)


class SearchSpace:
    """The tuned parameters of a :class:`~lesionboost.LesionBoostClassifier`.

    Parameters
    ----------
    members : sequence of str, default=("lightgbm", "catboost", "linear")
        Libraries whose parameters are searched (and only those are used), from
        ``"lightgbm"``, ``"xgboost"``, ``"catboost"`` and ``"linear"`` (its ``C``,
        hinge thresholds ``tails``: none, ``1`` or ``0,1``, ``rules``: none or
        50, ``rule_view``: the rules split on all columns or on the raw
        columns only, ``rule_residual``: the rule trees grown from the base rate
        or from the margin of the regression without rules,
        ``rule_scale``: how lightly the rules are penalised, and
        ``context_scale``: how much more heavily than the raw columns the derived
        and patient-relative columns are penalised).
        With ``"lightgbm"`` among them the ensemble may also hold
        ``"lightgbm:raw"``, a LightGBM on the raw metadata columns with the same
        parameters.
    ensemble : bool, default=True
        Search ``neg_ratio``, ``pos_oversample``, ``n_bags``, the blend weights
        and whether ``"lightgbm:raw"`` joins the ensemble
        (``ensemble.raw_member``). Without it, the raw member is used when the
        estimator's default ``members`` hold it.
    feature_groups : bool, default=True
        Switch the optional feature groups (region, outlier, counts) on and off,
        choose the within-patient ranks (``rank_columns``: none or the key
        columns), and whether the model learns the follow-up score (``followup``:
        ``"auto"`` or False) and trains the boosters from it (``followup_offset``);
        the last two only with ``followup``.
    followup : bool, default=True
        Search the ``followup`` and ``followup_offset`` switches with the feature
        groups. False leaves the estimator's arguments to ``fixed_params`` (or their
        defaults).

    Examples
    --------
    >>> space = SearchSpace(members=("lightgbm",))
    >>> space.distributions()["lightgbm.learning_rate"]
    FloatDistribution(high=0.1, log=True, low=0.01, step=None)
    >>> space.to_config(space.defaults())["neg_ratio"]
    0.01
    """

    def __init__(
        self,
        *,
        members: Sequence[str] = TUNED_MEMBERS,
        ensemble: bool = True,
        feature_groups: bool = True,
        followup: bool = True,
    ) -> None:
        members = (members,) if isinstance(members, str) else tuple(members)
        unknown = [m for m in members if m not in _MEMBER_RANGES]
        if not members or unknown:
            raise ValueError(
                f"members must be names from {list(_MEMBER_RANGES)}, got {list(members)!r}."
            )
        self.members = members
        self.ensemble = ensemble
        self.feature_groups = feature_groups
        self.followup = followup

    def _ensemble_members(self) -> tuple[str, ...]:
        """Every member a configuration can hold: the libraries, and the raw member."""
        return (*self.members, _RAW_MEMBER) if "lightgbm" in self.members else self.members

    def _member_default(self, member: str, name: str) -> Any:
        defaults = {**MEMBERS[member_kind(member)].option_defaults, **default_member_params(member)}
        return defaults.get(name, _LIBRARY_DEFAULTS.get((member, name)))

    def distributions(self) -> dict[str, BaseDistribution]:
        """Flat ``{"<group>.<name>": distribution}`` in a fixed order."""
        out: dict[str, BaseDistribution] = {}
        for member in self.members:
            for name, spec in _MEMBER_RANGES[member].items():
                out[f"{member}.{name}"] = _distribution(spec, self._member_default(member, name))
            for name, options in _MEMBER_CHOICES.get(member, {}).items():
                default = _choice_name(member, name, self._member_default(member, name))
                labels = tuple(options) if default in options else (*options, default)
                out[f"{member}.{name}"] = CategoricalDistribution(labels)
        if self.ensemble:
            estimator = _estimator_defaults()
            for name, spec in _ENSEMBLE_RANGES.items():
                out[f"ensemble.{name}"] = _distribution(spec, estimator[name])
            if "lightgbm" in self.members:
                out["ensemble.raw_member"] = CategoricalDistribution((True, False))
            if len(self._ensemble_members()) > 1:
                for member in self._ensemble_members():
                    out[f"weight.{member}"] = _distribution(_WEIGHT_RANGE, _default_weight(member))
        if self.feature_groups:
            for group in _OPTIONAL_GROUPS:
                out[f"features.{group}"] = CategoricalDistribution((True, False))
            ranks = _estimator_defaults()["rank_columns"]
            choices = _RANK_CHOICES if ranks in _RANK_CHOICES else (*_RANK_CHOICES, ranks)
            out["features.ranks"] = CategoricalDistribution(choices)
        if self.feature_groups and self.followup:
            followup = _estimator_defaults()["followup"]
            known = followup in _FOLLOWUP_CHOICES
            switch = _FOLLOWUP_CHOICES if known else (*_FOLLOWUP_CHOICES, followup)
            out["features.followup"] = CategoricalDistribution(switch)
            out["features.followup_offset"] = CategoricalDistribution((True, False))
        return out

    def defaults(self) -> dict[str, Any]:
        """The estimator's default configuration as flat trial parameters."""
        out: dict[str, Any] = {}
        estimator = _estimator_defaults()
        distributions = self.distributions()
        for key, distribution in distributions.items():
            group, name = key.split(".", 1)
            value: Any
            if name in _MEMBER_CHOICES.get(group, {}):
                value = _choice_name(group, name, self._member_default(group, name))
            elif group in MEMBERS:
                value = self._member_default(group, name)
            elif key == "ensemble.raw_member":
                value = _RAW_MEMBER in estimator["members"]
            elif group == "ensemble":
                value = estimator[name]
            elif group == "weight":
                value = _default_weight(name)
            elif name == "ranks":
                value = estimator["rank_columns"]
            elif name in ("followup", "followup_offset"):
                value = estimator[name]
            else:  # features: on when the estimator uses the group by default
                value = name in estimator["feature_groups"]
            if isinstance(value, float) and isinstance(distribution, IntDistribution):
                value = int(value)
            out[key] = value
        return out

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw (or read, for enqueued trials) every parameter of the space."""
        params: dict[str, Any] = {}
        for key, dist in self.distributions().items():
            if isinstance(dist, FloatDistribution):
                params[key] = trial.suggest_float(key, dist.low, dist.high, log=dist.log)
            elif isinstance(dist, IntDistribution):
                params[key] = trial.suggest_int(key, dist.low, dist.high, log=dist.log)
            elif isinstance(dist, CategoricalDistribution):
                params[key] = trial.suggest_categorical(key, list(dist.choices))
            else:  # pragma: no cover - the space builds only the three kinds above
                raise TypeError(f"{key}: unsupported distribution {dist!r}")
        return params

    def to_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Flat trial parameters -> :class:`LesionBoostClassifier` keyword arguments."""
        config: dict[str, Any] = {}
        member_params: dict[str, dict[str, Any]] = {m: {} for m in self.members}
        weights: dict[str, float] = {}
        groups = ["derived", "patient"]
        raw_member = _RAW_MEMBER in _estimator_defaults()["members"]
        for key, value in params.items():
            group, name = key.split(".", 1)
            if name in _MEMBER_CHOICES.get(group, {}):
                member_params[group][name] = _choice_value(group, name, value)
            elif group in member_params:
                member_params[group][name] = value
            elif key == "ensemble.raw_member":
                raw_member = bool(value)
            elif group == "ensemble":
                config[name] = value
            elif group == "weight":
                weights[name] = float(value)
            elif group == "features" and name == "ranks":
                config["rank_columns"] = value
            elif group == "features" and name in ("followup", "followup_offset"):
                config[name] = value
            elif group == "features" and value:
                groups.append(name)
        members = self.members
        if raw_member and "lightgbm" in self.members:
            members = (*members, _RAW_MEMBER)
        config = {"members": members, **config}
        linear = member_params.get("linear", {})
        if linear.get("context_scale", 1.0) != 1.0 and linear.get("own_view") is None:
            linear["own_view"] = _OWN_VIEW  # the penalty is relative to the raw columns
        for member, values in member_params.items():
            if values:
                config[f"{member}_params"] = values
        weights = {m: w for m, w in weights.items() if m in members}
        if weights:
            total = sum(weights.values())
            normalised = {m: weights[m] / total for m in members if m in weights}
            # weights=None is the estimator's default blend for these members
            default = {m: _default_weight(m) for m in members}
            norm = sum(default.values())
            if any(not np.isclose(normalised.get(m, 0.0), default[m] / norm) for m in members):
                config["weights"] = normalised
        if self.feature_groups:
            config["feature_groups"] = tuple(
                g for g in ("derived", "patient", *_OPTIONAL_GROUPS) if g in groups
            )
        return config


def build_config(space: SearchSpace, params: Mapping[str, Any], rounds: int | None) -> dict:
    """Estimator keyword arguments of flat trial ``params`` (``rounds`` fixed per member)."""
    config = space.to_config(params)
    if rounds is not None:
        for member in space.members:
            if not MEMBERS[member].round_keys:  # no boosting rounds (the linear member)
                continue
            key = f"{member}_params"
            config[key] = {**config.get(key, {}), "n_estimators": int(rounds)}
    return config

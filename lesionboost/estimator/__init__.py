"""``LesionBoostClassifier`` (metadata in, malignancy scores out) and ``cross_val_oof``.

:class:`LesionBoostClassifier` chains :class:`~lesionboost.features.LesionFeaturizer`,
optional image features and :class:`~lesionboost.ensemble.GBDTEnsembleClassifier`
into one scikit-learn estimator over raw SLICE-3D metadata. Its parameters are
flat -- the featurizer's ``feature_groups`` and ``rank_columns`` plus the ensemble's
members, their parameters, sampling, bags and blend -- so ``set_params`` (and Optuna)
can reach all of them; the ensemble's ``views`` and ``categorical_features`` follow
from the featurizer's output.

Patient context is part of the input: the frame passed to ``fit`` or
``predict_proba`` must carry ``patient_id``, and patient-relative features are
computed over the lesions of each patient present in that frame. Cross-validate
by patient (:func:`cross_val_oof`, or scikit-learn's ``cross_val_score`` with
``groups=patient_id``) so that no patient is scored by a model that saw it.

The package's modules: ``_classifier`` (the estimator, its defaults and member
views), ``_followup`` (:class:`FollowupModel`, the follow-up score learned from
``lesion_id``) and ``_cross_val`` (:func:`cross_val_oof` and :class:`OOFResult`).
"""

from ._classifier import (
    DEFAULT_FEATURE_GROUPS,
    DEFAULT_LINEAR_PARAMS,
    DEFAULT_MEMBERS,
    FOLLOWUP_COLUMN,
    LINEAR_MEMBER_WEIGHT,
    MEMBER_VIEWS,
    MIN_FOLLOWED,
    VIEW_MEMBER_WEIGHT,
    LesionBoostClassifier,
    default_member_params,
    default_member_weight,
    default_weights,
)
from ._cross_val import OOFResult, cross_val_oof
from ._followup import FollowupModel

__all__ = [
    "DEFAULT_FEATURE_GROUPS",
    "DEFAULT_LINEAR_PARAMS",
    "DEFAULT_MEMBERS",
    "FOLLOWUP_COLUMN",
    "FollowupModel",
    "LINEAR_MEMBER_WEIGHT",
    "MIN_FOLLOWED",
    "LesionBoostClassifier",
    "MEMBER_VIEWS",
    "OOFResult",
    "VIEW_MEMBER_WEIGHT",
    "cross_val_oof",
    "default_member_params",
    "default_member_weight",
    "default_weights",
]

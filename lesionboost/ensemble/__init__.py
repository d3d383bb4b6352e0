"""The gradient-boosted ensemble: LightGBM, XGBoost and CatBoost members, and a
linear one, blended.

- :class:`GBDTEnsembleClassifier` -- downsampling, bagging and the rank blend
  (``_classifier.py``);
- the member adapters, one per library, with their defaults (``_members.py``);
- :class:`LinearScorer` -- the ``"linear"`` member's model, a penalised logistic
  regression on quantile-normalised columns stored as JSON (``_linear.py``);
- the encoding of polars/pandas/numpy input into one numeric matrix (``_input.py``);
- :func:`member_kind` -- the library of a member such as ``"lightgbm:raw"``;
- :func:`library_versions`, :func:`lightgbm_has_learner` -- for reports and benchmarks.
"""

from ._classifier import GBDTEnsembleClassifier
from ._linear import LinearScorer
from ._members import (
    MEMBER_KINDS,
    MEMBERS,
    library_versions,
    lightgbm_has_learner,
    member_kind,
    resolve_threads,
)

__all__ = [
    "GBDTEnsembleClassifier",
    "LinearScorer",
    "MEMBERS",
    "MEMBER_KINDS",
    "member_kind",
    "resolve_threads",
    # for reports and benchmarks
    "library_versions",
    "lightgbm_has_learner",
]

"""lesionboost: gradient-boosted, tabular-first skin-cancer triage on ISIC 2024 SLICE-3D.

Modules, one concept each:

- :mod:`lesionboost.schema`    -- the SLICE-3D column contract and ``validate()``
- :mod:`lesionboost.io`        -- ``read_metadata``, ``ImageStore``, ``write_submission``
- :mod:`lesionboost.simulate`  -- the SLICE-3D simulator with its oracle risk and rendered crops
- :mod:`lesionboost.metrics`   -- the official pAUC above 80 % TPR and a scikit-learn scorer
- :mod:`lesionboost.cv`        -- patient-grouped stratified folds
- :mod:`lesionboost.features`  -- ``LesionFeaturizer``: derived and patient-relative features
- :mod:`lesionboost.ensemble`  -- ``GBDTEnsembleClassifier``: LightGBM + XGBoost + CatBoost
- :mod:`lesionboost.estimator` -- ``LesionBoostClassifier`` and ``cross_val_oof``
- :mod:`lesionboost.tuning`    -- Optuna search spaces, objective and ``tune()``
- :mod:`lesionboost.image`     -- image decoding, ``OnnxEmbedder``, ``train_embedder``, features
- :mod:`lesionboost.persist`   -- ``save_model`` / ``load_model`` (native files + JSON, no pickle)
- :mod:`lesionboost.report`    -- plots and an HTML report of a run
- :mod:`lesionboost.cli`       -- the ``lesionboost`` command

Heavy and optional libraries are imported lazily: ``import lesionboost`` never
imports catboost, onnxruntime, torch or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    DataWarning,
    ImageStoreError,
    LesionBoostError,
    MissingImageError,
    ModelFileError,
    OptionalDependencyError,
    SchemaError,
)

__version__ = "0.1.0"

# public name -> module that defines it; resolved on first access (PEP 562)
_LAZY = {
    "read_metadata": "io",
    "ImageStore": "io",
    "write_submission": "io",
    "split_xy": "schema",
    "simulate_slice3d": "simulate",
    "pauc_above_tpr": "metrics",
    "pauc_scorer": "metrics",
    "patient_folds": "cv",
    "LesionFeaturizer": "features",
    "GBDTEnsembleClassifier": "ensemble",
    "LesionBoostClassifier": "estimator",
    "cross_val_oof": "estimator",
    "tune": "tuning",
    "save_model": "persist",
    "load_model": "persist",
    "show_versions": "_show_versions",
}

__all__ = [
    "__version__",
    "LesionBoostError",
    "SchemaError",
    "ModelFileError",
    "ImageStoreError",
    "MissingImageError",
    "OptionalDependencyError",
    "DataWarning",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lesionboost' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._show_versions import show_versions
    from .cv import patient_folds
    from .ensemble import GBDTEnsembleClassifier
    from .estimator import LesionBoostClassifier, cross_val_oof
    from .features import LesionFeaturizer
    from .io import ImageStore, read_metadata, write_submission
    from .metrics import pauc_above_tpr, pauc_scorer
    from .persist import load_model, save_model
    from .schema import split_xy
    from .simulate import simulate_slice3d
    from .tuning import tune

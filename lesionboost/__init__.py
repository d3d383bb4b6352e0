"""lesionboost: gradient-boosted, tabular-first skin-cancer triage on ISIC 2024 SLICE-3D.

Modules (a subpackage where a concept spans several modules), in the order data flows:

- :mod:`lesionboost.exceptions`      -- ``LesionBoostError`` and the errors and warnings it raises
- :mod:`lesionboost.schema`          -- the SLICE-3D column contract and ``validate()``
- :mod:`lesionboost.io`              -- ``read_metadata``, ``ImageStore``, ``write_submission``
- :mod:`lesionboost.simulate`        -- the SLICE-3D simulator with its oracle risk and crops
- :mod:`lesionboost.metrics`         -- the official pAUC above 80 % TPR and a scorer
- :mod:`lesionboost.model_selection` -- patient-grouped stratified folds
- :mod:`lesionboost.features`        -- ``LesionFeaturizer``: derived and patient-relative features
- :mod:`lesionboost.image`           -- decoding, ``OnnxEmbedder``, ``train_embedder``, features
- :mod:`lesionboost.ensemble`        -- ``GBDTEnsembleClassifier``: LightGBM + XGBoost + CatBoost
- :mod:`lesionboost.estimator`       -- ``LesionBoostClassifier`` and ``cross_val_oof``
- :mod:`lesionboost.calibration`     -- ``ScoreCalibrator``: probabilities mapped to the risk
- :mod:`lesionboost.evaluation`      -- ``evaluate``: bootstrap CIs, calibration, subgroups
- :mod:`lesionboost.persist`         -- ``save_model`` / ``load_model`` (native files + JSON)
- :mod:`lesionboost.tuning`          -- Optuna search space, objective and ``tune()``
- :mod:`lesionboost.report`          -- plots and an HTML report of a run
- :mod:`lesionboost.cli`             -- the ``lesionboost`` command

Heavy and optional libraries are imported lazily: ``import lesionboost`` never
imports catboost, onnxruntime, torch or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .exceptions import (
    DataWarning,
    ImageStoreError,
    LesionBoostError,
    MissingImageError,
    ModelFileError,
    OptionalDependencyError,
    OutputError,
    SchemaError,
    StorageError,
    TuningError,
)

# public name -> module that defines it; resolved on first access (PEP 562)
_LAZY = {
    "read_metadata": "io",
    "ImageStore": "io",
    "write_submission": "io",
    "split_xy": "schema",
    "simulate_slice3d": "simulate",
    "pauc_above_tpr": "metrics",
    "pauc_scorer": "metrics",
    "top_k_sensitivity": "metrics",
    "lesions_per_cancer": "metrics",
    "patient_folds": "model_selection",
    "repeated_patient_folds": "model_selection",
    "centre_folds": "model_selection",
    "ScoreCalibrator": "calibration",
    "evaluate": "evaluation",
    "Evaluation": "evaluation",
    "LesionFeaturizer": "features",
    "GBDTEnsembleClassifier": "ensemble",
    "LesionBoostClassifier": "estimator",
    "cross_val_oof": "estimator",
    "tune": "tuning",
    "save_model": "persist",
    "load_model": "persist",
    "show_versions": "_utils",
}

__all__ = [
    "__version__",
    "LesionBoostError",
    "SchemaError",
    "ModelFileError",
    "ImageStoreError",
    "MissingImageError",
    "OptionalDependencyError",
    "OutputError",
    "StorageError",
    "TuningError",
    "DataWarning",
    *_LAZY,
]


# public modules, importable as attributes (``lb.image``) as well as by name
_SUBMODULES = (
    "calibration",
    "cli",
    "ensemble",
    "estimator",
    "evaluation",
    "exceptions",
    "features",
    "image",
    "io",
    "metrics",
    "model_selection",
    "persist",
    "report",
    "schema",
    "simulate",
    "tuning",
)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lesionboost' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._utils._show_versions import show_versions
    from .calibration import ScoreCalibrator
    from .ensemble import GBDTEnsembleClassifier
    from .estimator import LesionBoostClassifier, cross_val_oof
    from .evaluation import Evaluation, evaluate
    from .features import LesionFeaturizer
    from .io import ImageStore, read_metadata, write_submission
    from .metrics import lesions_per_cancer, pauc_above_tpr, pauc_scorer, top_k_sensitivity
    from .model_selection import centre_folds, patient_folds, repeated_patient_folds
    from .persist import load_model, save_model
    from .schema import split_xy
    from .simulate import simulate_slice3d
    from .tuning import tune

"""Every public name and public module path keeps working, and the package has one version."""

from __future__ import annotations

import importlib
import importlib.metadata
from pathlib import Path

import pytest
import tomllib

import lesionboost

#: module -> the public names it has always exported
PUBLIC = {
    "lesionboost.cli": ["main", "build_parser"],
    "lesionboost.cv": ["patient_folds"],
    "lesionboost.ensemble": ["GBDTEnsembleClassifier"],
    "lesionboost.estimator": ["LesionBoostClassifier", "cross_val_oof", "OOFResult"],
    "lesionboost.evaluation": ["evaluate", "Evaluation"],
    "lesionboost.features": ["LesionFeaturizer", "GROUPS", "OUTLIER_COLUMNS", "DERIVED_NAMES"],
    "lesionboost.image": [
        "OnnxEmbedder",
        "METADATA_KEYS",
        "write_model_metadata",
        "build_builtin_embedder",
        "builtin_model_path",
        "builtin_model_bytes",
        "BUILTIN_FEATURES",
        "train_embedder",
        "ImageModels",
        "image_feature_frame",
        "image_features",
        "decode_jpeg",
        "iter_decoded",
        "DecodeStats",
    ],
    "lesionboost.io": ["read_metadata", "ImageStore", "write_submission"],
    "lesionboost.metrics": ["pauc_above_tpr", "pauc_scorer"],
    "lesionboost.persist": ["save_model", "load_model", "fingerprint", "FORMAT_VERSION"],
    "lesionboost.report": [
        "plot_roc",
        "plot_fold_scores",
        "plot_history",
        "plot_importances",
        "plot_calibration",
        "write_report",
        "PLOT_FILES",
    ],
    "lesionboost.schema": [
        "SCHEMA_VERSION",
        "TRAIN_COLUMNS",
        "TEST_COLUMNS",
        "LEAK_COLUMNS",
        "ID_COLUMNS",
        "NUMERIC_COLUMNS",
        "CATEGORICAL_COLUMNS",
        "CATEGORY_LEVELS",
        "LOCATION_TO_SIMPLE",
        "SIMPLE_TO_SITE",
        "validate",
        "split_xy",
    ],
    "lesionboost.simulate": [
        "SimulatedSLICE3D",
        "simulate_slice3d",
        "write_slice3d",
        "render_images",
    ],
    "lesionboost.tuning": [
        "tune",
        "TuneResult",
        "SearchSpace",
        "PatientCVObjective",
        "StorageError",
        "TuningError",
        "build_config",
        "open_study",
        "trial_history",
        "DEFAULTS_ATTR",
    ],
    "lesionboost.exceptions": [
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
    ],
    "lesionboost.model_selection": [
        "patient_folds",
        "centre_folds",
        "repeated_patient_folds",
        "check_patient_folds",
    ],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_every_public_name_of_a_module_imports(module: str) -> None:
    imported = importlib.import_module(module)
    for name in PUBLIC[module]:
        assert getattr(imported, name) is not None, f"{module}.{name}"
        assert name in getattr(imported, "__all__", [name]), f"{module}.{name} not in __all__"


def test_top_level_names_resolve_and_submodules_are_attributes() -> None:
    for name in lesionboost.__all__:
        assert getattr(lesionboost, name) is not None, name
    for module in ("image", "simulate", "tuning", "features", "ensemble", "exceptions", "cli"):
        assert getattr(lesionboost, module) is importlib.import_module(f"lesionboost.{module}")
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        lesionboost.not_a_name  # noqa: B018


def test_exceptions_are_the_same_objects_everywhere() -> None:
    from lesionboost import exceptions, tuning

    assert tuning.StorageError is exceptions.StorageError is lesionboost.StorageError
    assert tuning.TuningError is exceptions.TuningError is lesionboost.TuningError
    assert issubclass(exceptions.OutputError, FileExistsError)


def test_one_version_source() -> None:
    from lesionboost._version import __version__

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"] == (
        "lesionboost._version.__version__"
    )
    assert lesionboost.__version__ == __version__
    assert importlib.metadata.version("lesionboost") == __version__


def test_importing_the_package_sets_no_process_environment() -> None:
    import os
    import subprocess
    import sys

    # the libraries lesionboost uses set their own variables on import; only ours count
    code = (
        "import os, json, numpy, polars, sklearn, scipy, optuna, lightgbm, xgboost, catboost; "
        "before = dict(os.environ); import lesionboost, lesionboost.ensemble, "
        "lesionboost.features, lesionboost.tuning; "
        "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"

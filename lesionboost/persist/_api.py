"""The public entry points: :func:`save_model` writes a fitted model as a folder of
native booster files, image model copies and ``manifest.json`` under a temporary
name and renames it into place; :func:`load_model` reads the manifest, restores the
ensemble and, for a :class:`~lesionboost.LesionBoostClassifier`, checks and
restores the estimator and image state.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._utils._atomic import atomic_directory
from .._utils._outputs import check_folder_output, claim
from ..ensemble._members import library_versions
from ..exceptions import ModelFileError, OutputError
from ..schema import SCHEMA_VERSION
from ._ensemble import _ensemble_state, _restore_ensemble
from ._estimator import _check_estimator_state
from ._image import _image_model_param, _restore_image, _write_image_files
from ._manifest import (
    _FORMAT,
    _MANIFEST,
    FORMAT_VERSION,
    WRITTEN_BY,
    _canonical,
    _jsonable,
    _read_manifest,
    _sha256,
    fingerprint,
)

logger = logging.getLogger("lesionboost.persist")  # the package's logger, as before the split


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    metrics: Any = None,
    training_data: Any = None,
    overwrite: bool = False,
) -> Path:
    """Save a fitted model as a directory of native booster files and ``manifest.json``.

    The directory is written next to ``path`` under a temporary name and renamed
    into place only when complete, so a crash never leaves a half-written model.
    A model with image features gets copies of its image models under
    ``image/``, so that the folder predicts wherever it is moved.

    Parameters
    ----------
    model : LesionBoostClassifier or GBDTEnsembleClassifier
        A fitted model.
    path : path-like
        The model directory to create.
    metrics : dict or OOFResult, optional
        Cross-validation metrics to record (an :class:`~lesionboost.estimator.OOFResult`
        is stored without its per-row scores).
    training_data : polars.DataFrame or pandas.DataFrame, optional
        The frame the model was fitted on; its :func:`fingerprint` is recorded.
    overwrite : bool, default=False
        Replace an existing model directory at ``path``.

    Returns
    -------
    pathlib.Path
        The model directory.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False, or it exists and is not a
        lesionboost model directory.
    ModelFileError
        The model has image features and an image model they were fitted with
        (an ``.onnx`` file, the model that made an embeddings table, or the
        fold models of a scorer) cannot be found or no longer has the SHA-256
        recorded at fit; the message says what to pass. Nothing is written.

    Examples
    --------
    >>> import lesionboost as lb
    >>> X, y = lb.split_xy(lb.simulate_slice3d(30, seed=0).train)
    >>> model = lb.GBDTEnsembleClassifier(members=("lightgbm",), n_bags=1,
    ...                                   lightgbm_params={"n_estimators": 10})
    >>> model = model.fit(X.select(lb.schema.NUMERIC_COLUMNS), y)
    >>> path = save_model(model, "model")
    >>> sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
    ['manifest.json', 'members']
    >>> reloaded = load_model("model")
    >>> bool((reloaded.predict_proba(X.select(lb.schema.NUMERIC_COLUMNS))
    ...       == model.predict_proba(X.select(lb.schema.NUMERIC_COLUMNS))).all())
    True
    """
    from sklearn.utils.validation import check_is_fitted

    from .._version import __version__
    from ..ensemble import GBDTEnsembleClassifier
    from ..estimator import LesionBoostClassifier

    if not isinstance(model, (GBDTEnsembleClassifier, LesionBoostClassifier)):
        raise TypeError(
            f"save_model saves a LesionBoostClassifier or GBDTEnsembleClassifier, got "
            f"{type(model).__name__}."
        )
    check_is_fitted(model)
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputError(
            f"{target} already exists. Pass overwrite=True to replace it, or choose another path."
        )
    check_folder_output(target, written_by=WRITTEN_BY, option="the model folder", replace=True)
    if hasattr(metrics, "to_dict"):
        metrics = metrics.to_dict()
    manifest: dict[str, Any] = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {},
        "schema_version": SCHEMA_VERSION,
        "metrics": _jsonable(metrics, "metrics") if metrics is not None else None,
        "training_data": fingerprint(training_data) if training_data is not None else None,
    }
    with atomic_directory(target) as tmp:
        if isinstance(model, LesionBoostClassifier):
            ensemble = model.ensemble_
            params = model.get_params(deep=False)
            estimator_state = model._persistent_state()
            if estimator_state.get("image_state") is not None:
                # the image models are copied in; the parameter names the copies
                manifest["image"], estimator_state["image_state"] = _write_image_files(model, tmp)
                params["image_model"] = _image_model_param(manifest["image"], None)
            images = params.get("images")
            if isinstance(images, os.PathLike) or hasattr(images, "path"):
                params["images"] = str(getattr(images, "path", images))  # a path or ImageStore
            manifest["params"] = _jsonable(params, "parameter")
            manifest["featurizer"] = model.featurizer_.to_dict()
            manifest["estimator"] = _jsonable(estimator_state, "estimator state")
        else:
            ensemble = model
            manifest["params"] = None
            manifest["featurizer"] = None
            manifest["estimator"] = None
        manifest["ensemble"] = _ensemble_state(ensemble, tmp, "")
        import polars
        import sklearn

        manifest["versions"] = {
            "lesionboost": __version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "polars": polars.__version__,
            "scikit-learn": sklearn.__version__,
            **library_versions(ensemble.members_),
        }
        manifest["manifest_sha256"] = _sha256(_canonical(manifest))
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        claim(tmp, [entry.name for entry in tmp.iterdir()], written_by=WRITTEN_BY)
    logger.info("saved %s to %s", type(model).__name__, target)
    return target


def load_model(path: str | os.PathLike[str]) -> Any:
    """Load a model directory written by :func:`save_model`.

    Never unpickles and never imports a name read from the file: the model
    class and the member kinds come from fixed tables, and every member file
    must match its SHA-256 and stay inside the directory. A model with image
    features gets ``image_model`` pointing at the copies inside the directory.

    Parameters
    ----------
    path : path-like
        The model directory.

    Returns
    -------
    LesionBoostClassifier or GBDTEnsembleClassifier
        The fitted model; it predicts bit-identically to the one saved.

    Raises
    ------
    ModelFileError
        The directory is missing, incomplete, tampered with, truncated,
        inconsistent (category levels, feature lists, booster widths, image
        files or image state; see the module documentation), or was written
        by a newer format or schema version.

    Examples
    --------
    >>> import lesionboost as lb
    >>> X, y = lb.split_xy(lb.simulate_slice3d(30, seed=0).train)
    >>> X = X.select(lb.schema.NUMERIC_COLUMNS)
    >>> model = lb.GBDTEnsembleClassifier(members=("lightgbm",), n_bags=1,
    ...                                   lightgbm_params={"n_estimators": 10}).fit(X, y)
    >>> _ = save_model(model, "model")
    >>> type(load_model("model")).__name__
    'GBDTEnsembleClassifier'
    """
    root = Path(path)
    manifest = _read_manifest(root)
    model_class = manifest.get("model_class")
    if model_class not in ("GBDTEnsembleClassifier", "LesionBoostClassifier"):
        raise ModelFileError(
            f"{root}: unknown model_class {model_class!r} in {_MANIFEST}; this lesionboost "
            "loads GBDTEnsembleClassifier and LesionBoostClassifier."
        )
    try:
        ensemble = _restore_ensemble(manifest["ensemble"], root)
        if model_class == "GBDTEnsembleClassifier":
            return ensemble
        from ..estimator import LesionBoostClassifier

        params, state = dict(manifest["params"]), dict(manifest["estimator"])
        _check_estimator_state(manifest["featurizer"], state, ensemble, root)
        _restore_image(manifest, root, params, state)
        return LesionBoostClassifier._from_persistent_state(
            params, state, manifest["featurizer"], ensemble
        )
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(
            f"{root}: {_MANIFEST} is incomplete or inconsistent ({type(exc).__name__}: {exc}). "
            "Save the model again."
        ) from exc

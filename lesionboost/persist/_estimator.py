"""The checks of a saved :class:`~lesionboost.LesionBoostClassifier`'s state at load:
the featurizer's category maps and feature names against the schema and the
restored ensemble, and the shapes and column names of the fitted image-feature
state (standardisation, PCA) against the featurizer's image columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..estimator import FollowupModel
from ..exceptions import ModelFileError
from ..schema import CATEGORICAL_COLUMNS
from ._ensemble import _check_levels
from ._manifest import _MANIFEST, _MODIFIED


def _check_estimator_state(featurizer: Any, state: Any, ensemble: Any, root: Path) -> None:
    """Refuse a featurizer/estimator state that disagrees with itself or with the ensemble."""
    if not isinstance(featurizer, dict) or not isinstance(state, dict):
        raise ModelFileError(
            f"{root}: the featurizer or estimator state in {_MANIFEST} is not a mapping; "
            f"{_MODIFIED}."
        )
    maps = featurizer.get("category_maps_")
    if not isinstance(maps, dict):
        raise ModelFileError(
            f"{root}: featurizer category_maps_ in {_MANIFEST} is not a mapping; {_MODIFIED}."
        )
    unknown = sorted(set(maps) - set(CATEGORICAL_COLUMNS))
    missing = sorted(set(CATEGORICAL_COLUMNS) - set(maps))
    if unknown or missing:
        raise ModelFileError(
            f"{root}: featurizer category_maps_ in {_MANIFEST} has levels for unknown column(s) "
            f"{unknown} and none for {missing} (expected exactly {list(CATEGORICAL_COLUMNS)}); "
            f"{_MODIFIED}."
        )
    for name, levels in maps.items():
        _check_levels(root, f"featurizer category_maps_[{name!r}]", levels)
    names = featurizer.get("feature_names_out_")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelFileError(
            f"{root}: featurizer feature_names_out_ in {_MANIFEST} is not a list of names; "
            f"{_MODIFIED}."
        )
    if len(set(names)) != len(names):
        raise ModelFileError(
            f"{root}: featurizer feature_names_out_ in {_MANIFEST} repeats a name; {_MODIFIED}."
        )
    if len(names) != ensemble.n_features_in_:
        raise ModelFileError(
            f"{root}: the featurizer writes {len(names)} features but the ensemble and its "
            f"booster files take {ensemble.n_features_in_}; {_MODIFIED}."
        )
    expected_names = getattr(ensemble, "feature_names_in_", None)
    if expected_names is not None and [str(n) for n in expected_names] != names:
        differing = [a for a, b in zip(names, expected_names, strict=True) if a != str(b)]
        raise ModelFileError(
            f"{root}: the featurizer's feature names differ from the ensemble's (first "
            f"differences: {differing[:5]}); {_MODIFIED}."
        )
    categorical = sorted(names.index(c) for c in CATEGORICAL_COLUMNS if c in names)
    if categorical != list(ensemble.categorical_features_):
        raise ModelFileError(
            f"{root}: the ensemble's categorical columns {ensemble.categorical_features_} are "
            f"not the featurizer's categorical codes (columns {categorical}); {_MODIFIED}."
        )
    inputs = state.get("feature_names_in")
    if not isinstance(inputs, list) or not all(isinstance(n, str) for n in inputs):
        raise ModelFileError(
            f"{root}: estimator feature_names_in in {_MANIFEST} is not a list of names; "
            f"{_MODIFIED}."
        )
    params = featurizer.get("params")
    extra = params.get("extra_numeric") if isinstance(params, dict) else None
    image_state = state.get("image_state")
    columns = [] if image_state is None else _check_image_state(image_state, root)
    followup = state.get("followup")
    if followup is not None:
        try:
            columns.append(FollowupModel.from_dict(followup).column)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(
                f"{root}: the follow-up model in {_MANIFEST} cannot be read ({exc}); {_MODIFIED}."
            ) from exc
    if extra != columns:
        raise ModelFileError(
            f"{root}: the featurizer's extra columns {extra} are not the image feature "
            f"columns and follow-up score {columns} of the estimator state in {_MANIFEST}; "
            f"{_MODIFIED}."
        )


def _check_image_state(state: Any, root: Path) -> list[str]:
    """Shapes of a fitted image-feature state (standardisation, PCA); its column names."""
    where = f"{root}: the image-feature state in {_MANIFEST}"
    if not isinstance(state, dict):
        raise ModelFileError(f"{where} is not a mapping; {_MODIFIED}.")
    try:
        dim = state["embedding_dim"]
        center = np.asarray(state["center"], dtype=np.float64)
        scale = np.asarray(state["scale"], dtype=np.float64)
        components = np.asarray(state["components"], dtype=np.float64)
        columns = state["columns"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where} is incomplete ({exc!r}); {_MODIFIED}.") from exc
    if (
        not isinstance(dim, int)
        or dim < 1
        or center.shape != (dim,)
        or scale.shape != (dim,)
        or not (np.isfinite(center).all() and np.isfinite(scale).all() and (scale > 0).all())
        or (components.size and (components.ndim != 2 or components.shape[1] != dim))
        or not np.isfinite(components).all()
    ):
        raise ModelFileError(
            f"{where} has centre, scale or components that do not fit an embedding of "
            f"{dim!r} columns; {_MODIFIED}."
        )
    k = components.shape[0] if components.size else 0
    expected = ["img_missing"]
    expected += ["img_score", "img_score_prank"] if state.get("scores") else []
    expected += [f"img_pc{j + 1}" for j in range(k)] + ["img_cos_patient", "img_cos_prank"]
    if columns != expected:
        raise ModelFileError(
            f"{where} lists the columns {columns} but its components give {expected}; {_MODIFIED}."
        )
    return list(columns)

"""The ensemble's part of a model folder: writing each booster of a fitted
:class:`~lesionboost.ensemble.GBDTEnsembleClassifier` as its library's native file
with its size and SHA-256, and restoring the ensemble from the manifest -- member
paths kept inside the folder, every file checked against its hash and parsed by its
own library, category levels, booster widths, blend weights, offsets and rank
references checked before the model is returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from ..ensemble._members import MEMBERS, member_kind
from ..exceptions import ModelFileError
from ._manifest import _MANIFEST, _MODIFIED, _jsonable, _read_listed, _sha256


def _ensemble_state(model: Any, folder: Path, prefix: str) -> dict[str, Any]:
    """Write the boosters of a fitted ensemble under ``folder``; return its JSON state."""
    files = []
    (folder / "members").mkdir(exist_ok=True)
    for member in model.members_:
        adapter = MEMBERS[member_kind(member)]
        stem = member.replace(":", "-")  # "lightgbm:raw" -> members/lightgbm-raw-0.txt
        for bag, booster in enumerate(model.boosters_[member]):
            relative = f"members/{prefix}{stem}-{bag}{adapter.suffix}"
            adapter.save(booster, folder / relative)
            blob = (folder / relative).read_bytes()
            files.append(
                {
                    "member": member,
                    "bag": bag,
                    "path": relative,
                    "bytes": len(blob),
                    "sha256": _sha256(blob),
                }
            )
    names = getattr(model, "feature_names_in_", None)
    return {
        "params": _jsonable(model.get_params(deep=False), f"{type(model).__name__} parameter"),
        "classes": _jsonable(model.classes_.tolist(), "classes_"),
        "n_features_in": int(model.n_features_in_),
        "feature_names_in": None if names is None else [str(n) for n in names],
        "categorical_features": [int(i) for i in model.categorical_features_],
        "category_maps": {str(i): list(v) for i, v in model.category_maps_.items()},
        "members": list(model.members_),
        "view_columns": {view: list(cols) for view, cols in model.view_columns_.items()},
        "weights": _jsonable(model.weights_, "weights_"),
        "offsets": _jsonable(model.offsets_, "offsets_"),
        "rank_knots": {
            kind: {"x": _jsonable(x, "rank knots"), "y": _jsonable(y, "rank knots")}
            for kind, (x, y) in model.rank_knots_.items()
        },
        "sampling": _jsonable(model.sampling_, "sampling_"),
        "offset": None
        if getattr(model, "offset_column_", None) is None
        else {
            "column": int(model.offset_column_),
            "center": _jsonable(model.offset_center_, "offset_center_"),
            "fits": _jsonable([list(fit) for fit in model.offset_fits_], "offset_fits_"),
        },
        "files": files,
    }


def _safe_member_path(root: Path, relative: Any) -> Path:
    if not isinstance(relative, str) or not relative:
        raise ModelFileError(f"{root}: a member path in {_MANIFEST} is {relative!r}, not a name.")
    posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
    if (
        posix.is_absolute()
        or windows.is_absolute()
        or windows.drive
        or ".." in posix.parts
        or ".." in windows.parts
    ):
        raise ModelFileError(
            f"{root}: member path {relative!r} in {_MANIFEST} points outside the model "
            "directory. The manifest has been tampered with; do not load this model."
        )
    path = root / relative
    resolved, base = path.resolve(), root.resolve()
    if not resolved.is_relative_to(base):  # e.g. a symbolic link leading elsewhere
        raise ModelFileError(
            f"{root}: member file {relative!r} resolves to {resolved}, outside the model "
            "directory. Do not load this model."
        )
    return path


def _read_member(root: Path, entry: Mapping[str, Any]) -> tuple[str, int, Any]:
    member = entry.get("member")
    if not isinstance(member, str) or member_kind(member) not in MEMBERS:
        raise ModelFileError(
            f"{root}: {_MANIFEST} lists a member of unknown kind {member!r}; this lesionboost "
            f"reads {sorted(MEMBERS)}."
        )
    kind = member_kind(member)
    adapter = MEMBERS[kind]
    path = _safe_member_path(root, entry.get("path"))
    blob = _read_listed(
        root,
        path,
        entry,
        what=f"member file {entry.get('path')!r}",
        damaged=": it is truncated or was modified. Save the model again.",
    )
    try:
        booster = adapter.load(blob, None)
    except Exception as exc:  # the libraries raise their own error types
        raise ModelFileError(
            f"{root}: {kind} could not parse {entry.get('path')!r}: {exc}"
        ) from exc
    bag = entry.get("bag")
    if not isinstance(bag, int):
        raise ModelFileError(f"{root}: member entry {entry.get('path')!r} has no bag number.")
    return member, bag, booster


def _check_levels(root: Path, where: str, levels: Any) -> list[str]:
    """Category levels as fit writes them: unique text, in sorted order (code = position)."""
    if not isinstance(levels, list) or not all(isinstance(v, str) for v in levels):
        raise ModelFileError(
            f"{root}: {where} in {_MANIFEST} must be a list of text levels, got "
            f"{str(levels)[:80]}; {_MODIFIED}."
        )
    seen: set[str] = set()
    for level in levels:
        if level in seen:
            raise ModelFileError(
                f"{root}: {where} in {_MANIFEST} lists the level {level!r} twice; {_MODIFIED}."
            )
        seen.add(level)
    if levels != sorted(levels):
        raise ModelFileError(
            f"{root}: the levels of {where} in {_MANIFEST} are not in the sorted order that "
            f"fit writes (a level's code is its position, so reordered levels would encode "
            f"every lesion differently); {_MODIFIED}."
        )
    return list(levels)


def _booster_width(kind: str, booster: Any) -> int | None:
    """Number of input features a loaded booster expects (None when it cannot tell)."""
    try:
        if kind == "lightgbm":
            return int(booster.num_feature())
        if kind == "xgboost":
            return int(booster.num_features())
        if kind == "catboost":
            return len(booster.feature_names_)
    except Exception:  # noqa: BLE001 - a library without the accessor: nothing to compare
        return None
    return None


def _check_views(root: Path, views: Any, members: list[str], model: Any) -> dict[str, list[int]]:
    """The column indices of every view a member uses: distinct, sorted and in range."""
    if not isinstance(views, dict):
        raise ModelFileError(f"{root}: view_columns in {_MANIFEST} is not a mapping; {_MODIFIED}.")
    needed = {m.partition(":")[2] for m in members if ":" in m}
    if set(views) != needed:
        raise ModelFileError(
            f"{root}: view_columns in {_MANIFEST} lists views {sorted(views)} but the members "
            f"use {sorted(needed)}; {_MODIFIED}."
        )
    out = {}
    for view, columns in views.items():
        if (
            not isinstance(columns, list)
            or not columns
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in columns)
            or columns != sorted(set(columns))
            or columns[0] < 0
            or columns[-1] >= model.n_features_in_
        ):
            raise ModelFileError(
                f"{root}: view_columns[{view!r}] in {_MANIFEST} must be sorted distinct column "
                f"indices below {model.n_features_in_}, got {str(columns)[:80]}; {_MODIFIED}."
            )
        out[str(view)] = list(columns)
    return out


def _restore_ensemble(state: Mapping[str, Any], root: Path) -> Any:
    from ..ensemble import GBDTEnsembleClassifier

    params = dict(state["params"])
    if isinstance(params.get("members"), list):
        params["members"] = tuple(params["members"])
    known = GBDTEnsembleClassifier().get_params(deep=False)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ModelFileError(f"{root}: unknown ensemble parameter(s) {unknown} in {_MANIFEST}.")
    model = GBDTEnsembleClassifier(**params)
    members = [str(m) for m in state["members"]]
    boosters: dict[str, dict[int, Any]] = {m: {} for m in members}
    for entry in state["files"]:
        member, bag, booster = _read_member(root, entry)
        if member not in boosters:
            raise ModelFileError(f"{root}: member file for {member!r}, which is not in members.")
        if bag in boosters[member]:
            raise ModelFileError(
                f"{root}: {_MANIFEST} lists bag {bag} of {member!r} twice "
                f"({entry.get('path')!r}); {_MODIFIED}."
            )
        boosters[member][bag] = booster
    for kind, bags in boosters.items():
        if not bags or sorted(bags) != list(range(len(bags))):
            raise ModelFileError(
                f"{root}: member {kind!r} is listed but its booster files are missing "
                f"(found bags {sorted(bags)}). Save the model again."
            )
    model.members_ = tuple(members)
    model.boosters_ = {k: [bags[i] for i in range(len(bags))] for k, bags in boosters.items()}
    model.classes_ = np.asarray(state["classes"])
    model.n_features_in_ = int(state["n_features_in"])
    model.view_columns_ = _check_views(root, state.get("view_columns", {}), members, model)
    if state["feature_names_in"] is not None:
        model.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)
        if model.feature_names_in_.size != model.n_features_in_:
            raise ModelFileError(
                f"{root}: the ensemble's feature_names_in and n_features_in in {_MANIFEST} "
                f"disagree; {_MODIFIED}."
            )
    for member, loaded in model.boosters_.items():
        view = member.partition(":")[2]
        expected = len(model.view_columns_[view]) if view else model.n_features_in_
        for bag, booster in enumerate(loaded):
            width = _booster_width(member_kind(member), booster)
            if width is not None and width != expected:
                raise ModelFileError(
                    f"{root}: booster {member!r} bag {bag} takes {width} features but "
                    f"{_MANIFEST} says it sees {expected}; {_MODIFIED}."
                )
    categorical = state["categorical_features"]
    if (
        not isinstance(categorical, list)
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in categorical)
        or categorical != sorted(set(categorical))
    ):
        raise ModelFileError(
            f"{root}: categorical_features in {_MANIFEST} must be sorted distinct column "
            f"indices, got {str(categorical)[:80]}; {_MODIFIED}."
        )
    model.categorical_features_ = list(categorical)
    maps = state["category_maps"]
    if not isinstance(maps, dict):
        raise ModelFileError(f"{root}: category_maps in {_MANIFEST} is not a mapping; {_MODIFIED}.")
    model.category_maps_ = {}
    for key, levels in maps.items():
        if not (key.isdigit() and int(key) in model.categorical_features_):
            raise ModelFileError(
                f"{root}: category_maps in {_MANIFEST} has levels for column {key!r}, which is "
                f"not one of the categorical columns {model.categorical_features_}; {_MODIFIED}."
            )
        model.category_maps_[int(key)] = _check_levels(root, f"category_maps[{key!r}]", levels)
    model.blend_ = model.blend  # saved models store the parameters they were fitted with
    model.weights_ = {k: float(state["weights"][k]) for k in members}
    model.offsets_ = {k: float(state["offsets"][k]) for k in members}
    weights = np.array(list(model.weights_.values()))
    # The hash only catches accidental damage (anyone can recompute it): values that
    # no fit produces would silently predict NaN, so refuse them here.
    if (
        not np.all(np.isfinite(weights))
        or np.any(weights <= 0)
        or abs(weights.sum() - 1.0) > 1e-6
        or not np.all(np.isfinite(list(model.offsets_.values())))
    ):
        raise ModelFileError(
            f"{root}: blend weights must be positive and sum to 1 and offsets finite; "
            f"found weights {model.weights_} and offsets {model.offsets_}. Save the model again."
        )
    model.rank_knots_ = {}
    for kind, knots in state["rank_knots"].items():
        x = np.asarray(knots["x"], dtype=np.float64)
        y = np.asarray(knots["y"], dtype=np.float64)
        if (
            x.shape != y.shape
            or x.ndim != 1
            or x.size == 0
            or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)))
            or np.any(np.diff(x) <= 0)
            or np.any(np.diff(y) <= 0)
        ):
            raise ModelFileError(f"{root}: the rank reference of {kind!r} is damaged.")
        model.rank_knots_[kind] = (x, y)
    if model.blend_ == "rank" and sorted(model.rank_knots_) != sorted(members):
        raise ModelFileError(f"{root}: rank references are missing for some members.")
    model.sampling_ = dict(state["sampling"])
    _restore_offset(root, model, state.get("offset"))
    if any(i < 0 or i >= model.n_features_in_ for i in model.categorical_features_):
        raise ModelFileError(f"{root}: categorical column indices are out of range.")
    return model


def _restore_offset(root: Path, model: Any, offset: Any) -> None:
    """The starting margin of the boosters (``offset_column``), checked like the offsets."""
    model.offset_column_, model.offset_center_, model.offset_fits_ = None, 0.0, []
    if offset is None:
        return
    try:
        column = offset["column"]
        center = float(offset["center"])
        fits = [(float(a), float(b)) for a, b in offset["fits"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{root}: the offset in {_MANIFEST} is damaged ({exc}); {_MODIFIED}."
        ) from exc
    bags = {len(bags) for bags in model.boosters_.values()}
    if (
        not isinstance(column, int)
        or isinstance(column, bool)
        or not 0 <= column < model.n_features_in_
        or column in model.categorical_features_
        or not np.all(np.isfinite([center, *np.ravel(fits)]))
        or bags != {len(fits)}
    ):
        raise ModelFileError(
            f"{root}: the offset in {_MANIFEST} (column {column!r}, {len(fits)} bag fit(s)) "
            f"does not fit the ensemble's {model.n_features_in_} columns and "
            f"{sorted(bags)} bag(s); {_MODIFIED}."
        )
    model.offset_column_, model.offset_center_, model.offset_fits_ = column, center, fits

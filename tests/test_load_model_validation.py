"""load_model refuses a crafted or modified folder at load time, never inside a prediction.

Each test edits manifest.json and recomputes its SHA-256 (anyone can), as a
tampering tool or a careless hand edit would, and expects a ModelFileError that
names the key or file and says to save the model again.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from _crops import write_crops
from _onnx_models import channel_mean_model
from conftest import make_tiny_metadata
from lesionboost import DataWarning, ModelFileError
from lesionboost.ensemble import GBDTEnsembleClassifier
from lesionboost.estimator import LesionBoostClassifier
from lesionboost.persist import _canonical, _sha256, load_model, save_model

pytest.importorskip("onnxruntime", reason="image features need onnxruntime")

FAST = {
    "members": ("lightgbm",),
    "n_bags": 1,
    "n_jobs": 1,
    "neg_ratio": None,
    "feature_groups": ("derived",),
    "lightgbm_params": {"n_estimators": 10, "min_data_in_leaf": 3},
}
SAVE_AGAIN = "modified after it was saved.*save the model again"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("validation")
    meta = make_tiny_metadata(n_patients=8, lesions=5, seed=2)
    images = write_crops(folder / "crops.hdf5", meta["isic_id"].to_list(), seed=3)
    onnx = channel_mean_model(folder / "mean.onnx", size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # leak columns dropped on purpose
        image_model = LesionBoostClassifier(**FAST, images=str(images), image_model=str(onnx)).fit(
            meta
        )
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"x0": rng.normal(size=300), "x1": rng.normal(size=300)}).with_columns(
        pl.Series("site", rng.choice(["arm", "leg", "torso"], 300))
    )
    y = (rng.random(300) < 0.2).astype(int)
    ensemble = GBDTEnsembleClassifier(**{k: v for k, v in FAST.items() if k != "feature_groups"})
    viewed = GBDTEnsembleClassifier(
        **{k: v for k, v in FAST.items() if k not in ("feature_groups", "members")},
        members=("lightgbm", "lightgbm:v"),
        views={"v": ["site", "x1"]},
    )
    return {
        "image": save_model(image_model, folder / "image-model"),
        "ensemble": save_model(ensemble.fit(frame, y), folder / "ensemble"),
        "viewed": save_model(viewed.fit(frame, y), folder / "viewed"),
        "viewed_scores": viewed.predict_proba(frame),
        "meta": meta,
        "images": images,
        "frame": frame,
    }


def _tampered(source: Path, tmp_path: Path, edit: Callable[[dict[str, Any], Path], None]) -> Path:
    """A copy of ``source`` whose manifest ``edit`` changed, re-hashed."""
    folder = Path(shutil.copytree(source, tmp_path / "copy"))
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest, folder)
    manifest["manifest_sha256"] = _sha256(_canonical(manifest))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _maps(manifest: dict[str, Any]) -> dict[str, list[str]]:
    return manifest["featurizer"]["category_maps_"]


def test_untouched_folders_load_and_predict(saved: dict[str, Any]) -> None:
    model = load_model(saved["image"])
    model.set_params(images=str(saved["images"]))
    assert model.predict_proba(saved["meta"]).shape == (saved["meta"].height, 2)
    assert load_model(saved["ensemble"]).predict_proba(saved["frame"]).shape == (300, 2)


def _duplicate_level(m: dict[str, Any], _: Path) -> None:
    _maps(m)["sex"] = sorted(_maps(m)["sex"] + [_maps(m)["sex"][0]])


def _reorder_levels(m: dict[str, Any], _: Path) -> None:
    _maps(m)["anatom_site_general"] = _maps(m)["anatom_site_general"][::-1]


def _unknown_column(m: dict[str, Any], _: Path) -> None:
    _maps(m)["skin_tone"] = _maps(m).pop("sex")


def _number_level(m: dict[str, Any], _: Path) -> None:
    _maps(m)["sex"] = [1, 2]


def _fewer_features(m: dict[str, Any], _: Path) -> None:
    m["featurizer"]["feature_names_out_"] = m["featurizer"]["feature_names_out_"][:-1]


def _ensemble_narrower_than_boosters(m: dict[str, Any], _: Path) -> None:
    m["ensemble"]["n_features_in"] -= 1
    m["ensemble"]["feature_names_in"] = m["ensemble"]["feature_names_in"][:-1]


def _renamed_feature(m: dict[str, Any], _: Path) -> None:
    m["featurizer"]["feature_names_out_"][-1] = "something_else"


def _moved_categorical(m: dict[str, Any], _: Path) -> None:
    m["ensemble"]["categorical_features"] = [0]


def _member_listed_twice(m: dict[str, Any], _: Path) -> None:
    m["ensemble"]["files"].append(dict(m["ensemble"]["files"][0]))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_duplicate_level, r"category_maps_\['sex'\].*lists the level '\w+' twice"),
        (_reorder_levels, r"category_maps_\['anatom_site_general'\].*not in the sorted order"),
        (_unknown_column, r"unknown column\(s\) \['skin_tone'\] and none for \['sex'\]"),
        (_number_level, r"category_maps_\['sex'\].*list of text levels"),
        (_fewer_features, r"featurizer writes \d+ features but the ensemble .* take \d+"),
        (_ensemble_narrower_than_boosters, r"booster 'lightgbm' bag 0 takes \d+ features"),
        (_renamed_feature, r"feature names differ from the ensemble's.*something_else"),
        (_moved_categorical, r"categorical columns \[0\] are not the featurizer's"),
        (_member_listed_twice, r"lists bag 0 of 'lightgbm' twice"),
    ],
    ids=lambda value: getattr(value, "__name__", "")[1:] or None,
)
def test_inconsistent_state_is_refused_at_load(
    saved: dict[str, Any], tmp_path: Path, edit: Callable[..., None], message: str
) -> None:
    folder = _tampered(saved["image"], tmp_path, edit)
    with pytest.raises(ModelFileError, match=f"{message}.*{SAVE_AGAIN}"):
        load_model(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda lv: lv[::-1], r"category_maps\['2'\].*not in the sorted order"),
        (lambda lv: lv + [lv[0]], r"category_maps\['2'\].*lists the level 'arm' twice"),
    ],
    ids=["reordered", "duplicated"],
)
def test_ensemble_category_levels_are_checked(
    saved: dict[str, Any],
    tmp_path: Path,
    change: Callable[[list[str]], list[str]],
    message: str,
) -> None:
    def edit(m: dict[str, Any], _: Path) -> None:
        m["ensemble"]["category_maps"]["2"] = change(m["ensemble"]["category_maps"]["2"])

    with pytest.raises(ModelFileError, match=f"{message}.*{SAVE_AGAIN}"):
        load_model(_tampered(saved["ensemble"], tmp_path, edit))


def test_a_view_member_is_saved_in_its_own_file_and_reloads_exactly(
    saved: dict[str, Any],
) -> None:
    members = sorted(p.name for p in (saved["viewed"] / "members").iterdir())
    assert members == ["lightgbm-0.txt", "lightgbm-v-0.txt"]
    model = load_model(saved["viewed"])
    assert model.view_columns_ == {"v": [1, 2]}
    np.testing.assert_array_equal(model.predict_proba(saved["frame"]), saved["viewed_scores"])


def _narrow_view(m: dict[str, Any], _: Path) -> None:
    m["ensemble"]["view_columns"]["v"] = [2]


def _view_out_of_range(m: dict[str, Any], _: Path) -> None:
    m["ensemble"]["view_columns"]["v"] = [1, 7]


def _view_dropped(m: dict[str, Any], _: Path) -> None:
    m["ensemble"]["view_columns"] = {}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_narrow_view, r"booster 'lightgbm:v' bag 0 takes 2 features but .* sees 1"),
        (_view_out_of_range, r"view_columns\['v'\] .* must be sorted distinct column indices"),
        (_view_dropped, r"lists views \[\] but the members use \['v'\]"),
    ],
    ids=lambda value: getattr(value, "__name__", "")[1:] or None,
)
def test_view_columns_are_checked_at_load(
    saved: dict[str, Any], tmp_path: Path, edit: Callable[..., None], message: str
) -> None:
    with pytest.raises(ModelFileError, match=f"{message}.*{SAVE_AGAIN}"):
        load_model(_tampered(saved["viewed"], tmp_path, edit))


def test_levels_for_a_numeric_column_are_refused(saved: dict[str, Any], tmp_path: Path) -> None:
    def edit(m: dict[str, Any], _: Path) -> None:
        m["ensemble"]["category_maps"]["0"] = ["a", "b"]

    with pytest.raises(ModelFileError, match=r"column '0', which is not one of the categorical"):
        load_model(_tampered(saved["ensemble"], tmp_path, edit))


def _embedder_entry(m: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in m["image"]["files"] if f["path"] == m["image"]["embedder"])


def _swap_embedder(m: dict[str, Any], folder: Path) -> None:
    # another valid ONNX file, listed with its own hash: the state was fitted on the first one
    other = channel_mean_model(folder / m["image"]["embedder"], size=16, logit_weights=(1, 1, 1))
    blob = other.read_bytes()
    _embedder_entry(m).update(bytes=len(blob), sha256=_sha256(blob))


def _unlisted_file(m: dict[str, Any], folder: Path) -> None:
    (folder / "image" / "embedder" / "weights.bin").write_bytes(b"\0" * 16)


def _unhashed_embedder(m: dict[str, Any], _: Path) -> None:
    m["image"]["files"] = []


def _no_image_section(m: dict[str, Any], _: Path) -> None:
    del m["image"]


def _outside_image_model(m: dict[str, Any], _: Path) -> None:
    m["params"]["image_model"] = "/tmp/elsewhere.onnx"


def _escaping_file(m: dict[str, Any], _: Path) -> None:
    _embedder_entry(m)["path"] = "image/../../elsewhere.onnx"


def _state_wider_than_components(m: dict[str, Any], _: Path) -> None:
    m["estimator"]["image_state"]["center"].append(0.0)


def _state_lists_other_columns(m: dict[str, Any], _: Path) -> None:
    m["estimator"]["image_state"]["columns"].remove("img_cos_prank")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_swap_embedder, r"not fitted with the embedder 'image/embedder/mean\.onnx'"),
        (_unlisted_file, r"\['image/embedder/weights\.bin'\] under image/ are not listed"),
        (_unhashed_embedder, r"not listed|not one of its hashed image files"),
        (_no_image_section, r"has an image-feature state but no 'image' section"),
        (_outside_image_model, r"image_model parameter '/tmp/elsewhere\.onnx'.*does not name"),
        (_escaping_file, r"outside the model directory"),
        (_state_wider_than_components, r"image-feature state .* centre, scale or components"),
        (_state_lists_other_columns, r"image-feature state .* lists the columns"),
    ],
    ids=lambda value: getattr(value, "__name__", "")[1:] or None,
)
def test_image_files_and_state_are_checked_at_load(
    saved: dict[str, Any], tmp_path: Path, edit: Callable[..., None], message: str
) -> None:
    folder = _tampered(saved["image"], tmp_path, edit)
    with pytest.raises(ModelFileError, match=message):
        load_model(folder)


def test_a_modified_image_file_is_refused(saved: dict[str, Any], tmp_path: Path) -> None:
    folder = Path(shutil.copytree(saved["image"], tmp_path / "copy"))
    manifest = json.loads((folder / "manifest.json").read_text())
    embedder = folder / manifest["image"]["embedder"]
    embedder.write_bytes(embedder.read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match=r"mean\.onnx.*does not match its SHA-256"):
        load_model(folder)
    embedder.unlink()
    with pytest.raises(ModelFileError, match=r"mean\.onnx.*is missing"):
        load_model(folder)


def test_a_version_1_folder_with_image_features_loads_with_a_warning(
    saved: dict[str, Any], tmp_path: Path
) -> None:
    onnx = saved["images"].parent / "mean.onnx"  # the model left outside the folder

    def as_version_1(m: dict[str, Any], folder: Path) -> None:
        shutil.rmtree(folder / "image")
        del m["image"]
        m["format_version"] = 1
        m["params"]["image_model"] = str(onnx)
        m["estimator"]["image_state"]["embedder"]["model"] = str(onnx)

    folder = _tampered(saved["image"], tmp_path, as_version_1)
    with pytest.warns(DataWarning, match="kept its image model outside the folder.*save_model"):
        model = load_model(folder)
    assert model.image_model == str(onnx)
    model.set_params(images=str(saved["images"]))
    assert model.predict_proba(saved["meta"]).shape == (saved["meta"].height, 2)

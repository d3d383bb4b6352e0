"""save_model / load_model: round trips, every tamper case, atomic writes, no pickle."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lesionboost import ModelFileError
from lesionboost.ensemble import GBDTEnsembleClassifier
from lesionboost.ensemble._members import MEMBERS
from lesionboost.persist import (
    FORMAT_VERSION,
    _canonical,
    _sha256,
    fingerprint,
    load_model,
    save_model,
)
from lesionboost.schema import SCHEMA_VERSION

FAST = {
    "n_bags": 2,
    "n_jobs": 1,
    "neg_ratio": 0.1,
    "lightgbm_params": {"n_estimators": 15, "min_data_in_leaf": 3, "learning_rate": 0.3},
    "xgboost_params": {"n_estimators": 15, "learning_rate": 0.3},
    "catboost_params": {"n_estimators": 15, "depth": 3, "learning_rate": 0.3, "border_count": 32},
}


def _data(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    site = rng.choice(["arm", "leg", "torso"], n).tolist()
    y = (rng.random(n) < 1 / (1 + np.exp(-(-3.5 + 1.5 * X[:, 0])))).astype(int)
    frame = pl.DataFrame({f"x{i}": X[:, i] for i in range(5)}).with_columns(
        pl.Series("site", site, dtype=pl.String)
    )
    frame = frame.with_columns(
        pl.when(pl.col("x2") > 1.2).then(None).otherwise(pl.col("x2")).alias("x2")
    )
    return frame, y


@pytest.fixture(scope="module")
def fitted():
    frame, y = _data()
    return GBDTEnsembleClassifier(**FAST).fit(frame, y), frame, y


@pytest.fixture
def saved(fitted, tmp_path):
    model, frame, _ = fitted
    return save_model(model, tmp_path / "model"), model, frame


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _write_manifest(path: Path, manifest: dict, *, rehash: bool = True) -> None:
    if rehash:
        manifest["manifest_sha256"] = _sha256(_canonical(manifest))
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("blend", ["rank", "mean"])
def test_round_trip_predicts_bit_identically(tmp_path, blend):
    frame, y = _data()
    model = GBDTEnsembleClassifier(**FAST, members=tuple(MEMBERS), blend=blend).fit(frame, y)
    path = save_model(model, tmp_path / "m", metrics={"pauc": 0.15}, training_data=frame)
    loaded = load_model(path)
    assert type(loaded) is GBDTEnsembleClassifier
    assert loaded.get_params() == model.get_params()
    for method in ("predict_proba", "decision_function", "predict", "feature_contributions"):
        assert np.array_equal(getattr(loaded, method)(frame), getattr(model, method)(frame))
    manifest = _manifest(path)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["metrics"] == {"pauc": 0.15}
    assert manifest["training_data"]["rows"] == frame.height
    assert {"lesionboost", "lightgbm", "xgboost", "catboost", "linear", "numpy"} <= set(
        manifest["versions"]
    )
    files = manifest["ensemble"]["files"]
    assert sorted(f["path"] for f in files) == sorted(
        f"members/{k}-{b}{MEMBERS[k].suffix}" for k in MEMBERS for b in range(2)
    )
    for entry in files:  # native formats, with their hashes
        assert _sha256((path / entry["path"]).read_bytes()) == entry["sha256"]
    assert (path / "members/lightgbm-0.txt").read_text().startswith("tree")
    assert manifest["ensemble"]["category_maps"] == {"5": ["arm", "leg", "torso"]}


def test_weighted_model_round_trips_with_its_sampling_record(tmp_path):
    frame, y = _data()
    weight = np.random.default_rng(5).uniform(0.2, 3.0, len(y))
    model = GBDTEnsembleClassifier(**FAST).fit(frame, y, sample_weight=weight)
    loaded = load_model(save_model(model, tmp_path / "w"))
    assert np.array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    assert loaded.sampling_["weighted"] is True
    assert loaded.sampling_["bag_weights"] == model.sampling_["bag_weights"]


def test_manifest_is_plain_json_and_members_are_not_pickles(saved):
    path, _, _ = saved
    for file in path.rglob("*"):
        if file.is_file():
            assert not file.read_bytes().startswith(b"\x80"), f"{file} looks like a pickle"


def test_loading_never_unpickles(saved, monkeypatch):
    path, model, frame = saved

    def refuse(*args, **kwargs):
        raise AssertionError("load_model called pickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    assert np.array_equal(load_model(path).predict_proba(frame), model.predict_proba(frame))


def test_a_pickle_in_place_of_a_member_is_rejected_not_run(saved, tmp_path):
    path, _, _ = saved
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    payload = pickle.dumps(Exploit())
    manifest = _manifest(path)
    for entry in manifest["ensemble"]["files"]:
        if entry["member"] == "lightgbm" and entry["bag"] == 0:
            (path / entry["path"]).write_bytes(payload)
            entry["bytes"], entry["sha256"] = len(payload), _sha256(payload)
    _write_manifest(path, manifest)
    with pytest.raises(ModelFileError, match="lightgbm could not parse"):
        load_model(path)
    assert not marker.exists()


def test_member_file_modified(saved):
    path, _, _ = saved
    file = path / "members/xgboost-1.ubj"
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"xgboost-1\.ubj.*does not match its SHA-256"):
        load_model(path)


def test_member_file_truncated(saved):
    path, _, _ = saved
    file = path / "members/catboost-0.cbm"
    file.write_bytes(file.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="truncated or was modified"):
        load_model(path)


def test_member_file_missing(saved):
    path, _, _ = saved
    (path / "members/lightgbm-1.txt").unlink()
    with pytest.raises(ModelFileError, match=r"lightgbm-1\.txt.*is missing"):
        load_model(path)


def test_member_dropped_from_the_manifest(saved):
    path, _, _ = saved
    manifest = _manifest(path)
    manifest["ensemble"]["files"] = [
        f for f in manifest["ensemble"]["files"] if f["member"] != "catboost"
    ]
    _write_manifest(path, manifest)
    with pytest.raises(ModelFileError, match="'catboost' is listed but its booster files"):
        load_model(path)


def test_manifest_edited_without_rehash(saved):
    path, _, _ = saved
    manifest = _manifest(path)
    manifest["ensemble"]["weights"]["lightgbm"] = 0.9
    _write_manifest(path, manifest, rehash=False)
    with pytest.raises(ModelFileError, match="does not match its own SHA-256"):
        load_model(path)


def test_manifest_truncated(saved):
    path, _, _ = saved
    text = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text(text[: len(text) // 2])
    with pytest.raises(ModelFileError, match="not valid JSON.*truncated"):
        load_model(path)


def test_newer_format_version(saved):
    path, _, _ = saved
    manifest = _manifest(path)
    manifest["format_version"] = FORMAT_VERSION + 1
    _write_manifest(path, manifest)
    with pytest.raises(ModelFileError, match="newer lesionboost.*Upgrade"):
        load_model(path)


@pytest.mark.parametrize(("delta", "advice"), [(1, "Upgrade lesionboost"), (-1, "Refit")])
def test_other_schema_version(saved, delta, advice):
    path, _, _ = saved
    manifest = _manifest(path)
    manifest["schema_version"] = SCHEMA_VERSION + delta
    _write_manifest(path, manifest)
    with pytest.raises(ModelFileError, match=f"schema version.*{advice}"):
        load_model(path)


@pytest.mark.parametrize(
    "escape",
    [
        "../outside.txt",
        "/etc/passwd",
        "members/../../outside.txt",
        "C:\\x\\y.txt",
        "..\\outside.txt",
    ],
)
def test_member_path_escaping_the_directory(saved, escape):
    path, _, _ = saved
    outside = path.parent / "outside.txt"
    shutil.copy(path / "members/lightgbm-0.txt", outside)
    manifest = _manifest(path)
    manifest["ensemble"]["files"][0]["path"] = escape
    _write_manifest(path, manifest)
    with pytest.raises(ModelFileError, match="outside the model directory"):
        load_model(path)


def test_member_symlink_escaping_the_directory(saved):
    path, _, _ = saved
    outside = path.parent / "elsewhere.txt"
    member = path / "members/lightgbm-0.txt"
    shutil.copy(member, outside)
    member.unlink()
    member.symlink_to(outside)
    with pytest.raises(ModelFileError, match="resolves to .* outside the model directory"):
        load_model(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model_class", "os.system", "unknown model_class"),
        ("member", "sklearn.ensemble.RandomForestClassifier", "member of unknown kind"),
    ],
)
def test_names_in_the_file_are_never_imported(saved, field, value, message):
    path, _, _ = saved
    manifest = _manifest(path)
    if field == "model_class":
        manifest["model_class"] = value
    else:
        manifest["ensemble"]["files"][0]["member"] = value
    _write_manifest(path, manifest)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelFileError, match="not a lesionboost model directory"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="has no manifest.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(ModelFileError, match="not a lesionboost model manifest"):
        load_model(tmp_path / "other")


def test_overwrite_rules(fitted, tmp_path):
    model, frame, _ = fitted
    target = save_model(model, tmp_path / "m")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_model(model, target)
    save_model(model, target, overwrite=True)
    assert load_model(target).predict(frame).shape == (frame.height,)
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="holds files lesionboost did not write"):
        save_model(model, tmp_path / "precious", overwrite=True)
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"
    # a file the user added to a model folder survives: the folder is not replaced
    (target / "my-notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="my-notes.txt"):
        save_model(model, target, overwrite=True)
    assert (target / "my-notes.txt").read_text() == "mine"


def test_failed_save_leaves_the_previous_model_intact(fitted, tmp_path, monkeypatch):
    model, frame, _ = fitted
    target = save_model(model, tmp_path / "m")
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    adapter = MEMBERS["catboost"]

    def crash(booster, path):
        path.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(adapter, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_model(model, target, overwrite=True)
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary leftovers


def test_unsaveable_parameters_are_reported(tmp_path):
    frame, y = _data(n=400)
    model = GBDTEnsembleClassifier(**{**FAST, "random_state": np.random.RandomState(0)})
    model.fit(frame, y)
    with pytest.raises(TypeError, match="random_state.*cannot be written"):
        save_model(model, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_unfitted_or_foreign_models_are_refused(tmp_path):
    from sklearn.exceptions import NotFittedError
    from sklearn.linear_model import LogisticRegression

    with pytest.raises(NotFittedError):
        save_model(GBDTEnsembleClassifier(), tmp_path / "m")
    with pytest.raises(TypeError, match="LesionBoostClassifier or GBDTEnsembleClassifier"):
        save_model(LogisticRegression(), tmp_path / "m")


def test_fingerprint_follows_the_content():
    frame, _ = _data(n=50)
    first = fingerprint(frame)
    assert first == fingerprint(frame.clone())
    assert first == fingerprint(frame.to_pandas())
    changed = frame.with_columns(pl.col("x0") * 1.0000001)
    assert fingerprint(changed)["sha256"] != first["sha256"]
    assert fingerprint(frame.with_columns(pl.lit("x").alias("site")))["sha256"] != first["sha256"]


@pytest.mark.parametrize(
    "damage",
    ["negative_weight", "weights_not_normalised", "reversed_ranks", "infinite_knot", "nan_offset"],
)
def test_rehashed_nonsense_blend_values_are_refused(saved, damage):
    # Anyone can recompute the manifest hash; values no fit produces must still be
    # refused instead of predicting NaN.
    path, _, _ = saved
    manifest = _manifest(path)
    ensemble = manifest["ensemble"]
    first = next(iter(ensemble["weights"]))
    if damage == "negative_weight":
        ensemble["weights"][first] = -1.0
    elif damage == "weights_not_normalised":
        ensemble["weights"] = {k: 1.0 for k in ensemble["weights"]}
    elif damage == "reversed_ranks":
        knots = ensemble["rank_knots"][first]
        knots["y"] = knots["y"][::-1]
    elif damage == "infinite_knot":
        ensemble["rank_knots"][first]["x"][-1] = float("inf")
    else:
        ensemble["offsets"][first] = float("nan")
    _write_manifest(path, manifest)
    with pytest.raises(ModelFileError, match="rank reference|blend weights"):
        load_model(path)


def test_a_loaded_model_keeps_its_fitted_blend(saved):
    path, model, frame = saved
    loaded = load_model(path)
    assert loaded.blend_ == model.blend_ == "rank"
    before = loaded.predict_proba(frame)
    loaded.set_params(blend="mean")
    np.testing.assert_array_equal(loaded.predict_proba(frame), before)


def test_a_model_with_an_offset_column_round_trips_and_a_damaged_offset_is_refused(tmp_path):
    frame, y = _data()
    model = GBDTEnsembleClassifier(**FAST, members=tuple(MEMBERS), offset_column="x0").fit(frame, y)
    path = save_model(model, tmp_path / "offset")
    loaded = load_model(path)
    assert loaded.offset_column_ == 0 and loaded.offset_fits_ == model.offset_fits_
    for method in ("decision_function", "feature_contributions"):
        assert np.array_equal(getattr(loaded, method)(frame), getattr(model, method)(frame))
    manifest = _manifest(path)
    assert manifest["ensemble"]["offset"]["column"] == 0
    manifest["ensemble"]["offset"]["fits"] = manifest["ensemble"]["offset"]["fits"][:1]
    _write_manifest(path, manifest)
    with pytest.raises(ModelFileError, match=r"offset .*1 bag fit\(s\).*\[2\] bag\(s\)"):
        load_model(path)


def test_a_manifest_without_an_offset_loads_without_one(saved):
    path, model, frame = saved
    manifest = _manifest(path)
    assert manifest["ensemble"]["offset"] is None
    del manifest["ensemble"]["offset"]
    _write_manifest(path, manifest)
    loaded = load_model(path)
    assert loaded.offset_column_ is None
    assert np.array_equal(loaded.predict_proba(frame), model.predict_proba(frame))

"""The built-in label-free embedder: a valid ONNX file, cached on disk, with meaningful features."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lesionboost.image import (
    BUILTIN_FEATURES,
    OnnxEmbedder,
    build_builtin_embedder,
    builtin_model_path,
    decode_jpeg,
)

onnx = pytest.importorskip("onnx", reason="onnx is needed to build the built-in embedder")
pytest.importorskip("onnxruntime", reason="onnxruntime runs the built-in embedder")


def _lesion(
    radius: float, *, lesion=(90, 55, 40), skin=(205, 150, 120), size: int = 131, offset: int = 0
) -> np.ndarray:
    image = Image.new("RGB", (size, size), skin)
    draw = ImageDraw.Draw(image)
    c = size / 2 + offset
    draw.ellipse([c - radius, size / 2 - radius, c + radius, size / 2 + radius], fill=lesion)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return decode_jpeg(buffer.getvalue(), 64)


@pytest.fixture(scope="module")
def embedder() -> OnnxEmbedder:
    return OnnxEmbedder(providers="cpu")


def _features(embedder: OnnxEmbedder, images: list[np.ndarray]) -> dict[str, np.ndarray]:
    out = embedder.embed_images(np.stack(images))
    return {name: out[:, j] for j, name in enumerate(BUILTIN_FEATURES)}


def test_written_file_is_a_checked_onnx_model(tmp_path: Path) -> None:
    path = build_builtin_embedder(tmp_path / "builtin.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8 and model.opset_import[0].version == 17
    props = {p.key: p.value for p in model.metadata_props}
    assert props["lesionboost.input_size"] == "64" and props["lesionboost.layout"] == "NHWC"
    assert props["lesionboost.feature_names"].split(",") == BUILTIN_FEATURES
    loaded = OnnxEmbedder(path, providers="cpu")
    assert loaded.input_dtype == np.uint8 and len(BUILTIN_FEATURES) == 132
    assert loaded.sha256 == OnnxEmbedder(providers="cpu").sha256  # same bytes as in memory


def test_cache_path_is_written_once_and_repaired(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LESIONBOOST_CACHE", str(tmp_path / "cache"))
    path = builtin_model_path()
    assert path.parent == tmp_path / "cache" and path.name.endswith("64px.onnx")
    stamp = path.stat().st_mtime_ns
    assert builtin_model_path() == path and path.stat().st_mtime_ns == stamp
    path.write_bytes(b"damaged")
    assert OnnxEmbedder(builtin_model_path(), providers="cpu").input_size == 64


def test_other_input_sizes(tmp_path: Path) -> None:
    embedder = OnnxEmbedder(build_builtin_embedder(tmp_path / "b.onnx", input_size=96))
    assert embedder.input_size == 96
    assert embedder.embed_images(np.zeros((2, 96, 96, 3), np.uint8)).shape == (2, 132)
    with pytest.raises(ValueError, match="even integer >= 32"):
        build_builtin_embedder(tmp_path / "odd.onnx", input_size=63)


def test_plain_skin_has_no_lesion(embedder: OnnxEmbedder) -> None:
    skin = np.empty((1, 64, 64, 3), np.uint8)
    skin[:] = (205, 150, 120)
    f = _features(embedder, [skin[0]])
    assert f["mask_all"][0] < 0.05
    assert abs(f["contrast_L"][0]) < 0.02 and f["L_std_all"][0] < 1e-3
    assert f["gradx1_all"][0] < 1e-3 and f["asym_lr_all"][0] < 1e-6
    np.testing.assert_allclose(
        f["L_mean_all"][0], (0.299 * 205 + 0.587 * 150 + 0.114 * 120) / 255, atol=2e-3
    )


def test_features_track_size_contrast_and_asymmetry(embedder: OnnxEmbedder) -> None:
    small, large = _lesion(14), _lesion(34)
    faint = _lesion(24, lesion=(170, 120, 95))
    dark = _lesion(24, lesion=(60, 35, 25))
    off_centre = _lesion(20, offset=25)
    f = _features(embedder, [small, large, faint, dark, off_centre])
    assert f["mask_all"][1] > 2.5 * f["mask_all"][0]  # area grows with radius^2
    assert f["mask_r0"][0] > 0.9 and f["mask_r2"][0] < 0.1 < f["mask_r2"][1]
    assert f["contrast_L"][3] < f["contrast_L"][2] < 0  # darker lesion, stronger contrast
    assert f["lesion_L"][3] < f["lesion_L"][2]
    assert f["asym_lr_all"][4] > 3 * f["asym_lr_all"][1]  # an off-centre lesion is asymmetric
    assert f["asym_ud_all"][4] < f["asym_lr_all"][4]  # ... only left-right
    assert f["gradx1_all"][1] > f["gradx1_all"][0]  # longer border, more edge energy


def test_embedding_is_rotation_stable(embedder: OnnxEmbedder) -> None:
    # Ring pooling makes most features invariant to rotating the crop by 90 degrees.
    image = _lesion(20, offset=8)
    rotated = np.ascontiguousarray(np.rot90(image))
    f = _features(embedder, [image, rotated])
    for name in ("mask_all", "L_mean_r1", "L_std_all", "lesion_L", "lap2_all"):
        np.testing.assert_allclose(f[name][0], f[name][1], rtol=0.02, atol=1e-3)
    # ... and swaps the horizontal and vertical edge energy.
    np.testing.assert_allclose(f["gradx2_all"][1], f["grady2_all"][0], rtol=0.02)

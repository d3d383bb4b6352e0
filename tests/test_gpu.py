"""The CUDA paths: each member's GPU option, a GPU-trained model on disk, the image code on CUDA.

The image tests check the embedder's parity default (fp32: CUDA's TF32 off, CPU and
CUDA within ``CUDA_FP32_ATOL``), the opt-in tf32 and fp16 precisions, and the input
prepared inside the graph from uint8 batches bound to the GPU.

Every test needs a CUDA device and a GPU build of the library it exercises, and
skips with the reason otherwise: CI has no GPU, so ``pytest -m gpu`` is run on a
GPU machine (README, "GPU"). The CPU side of the same code (parameter
mapping, the warnings and errors without CUDA) is tested in the other files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from lesionboost import (
    GBDTEnsembleClassifier,
    LesionBoostClassifier,
    cross_val_oof,
    load_model,
    patient_folds,
    save_model,
    simulate_slice3d,
)
from lesionboost.ensemble._members import lightgbm_has_learner

pytestmark = pytest.mark.gpu


def _nvidia_gpu() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def _need_xgboost_cuda() -> None:
    xgboost = pytest.importorskip("xgboost")
    if not xgboost.build_info().get("USE_CUDA"):
        pytest.skip("this xgboost has no CUDA (xgboost-cpu); `pip install xgboost` has it")
    if not _nvidia_gpu():
        pytest.skip("no NVIDIA GPU visible")


def _need_catboost_gpu() -> None:
    pytest.importorskip("catboost")
    from catboost.utils import get_gpu_device_count

    if get_gpu_device_count() == 0:
        pytest.skip("CatBoost sees no GPU")


def _data(n: int = 20_000, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    # A rare positive class and one native categorical, like the lesion table.
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    site = rng.choice(["arm", "leg", "torso", None], n)
    logit = -4.5 + 1.5 * X[:, 0] + 0.8 * X[:, 1] - 0.6 * X[:, 2] ** 2 + 1.0 * (site == "arm")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pl.DataFrame({f"x{i}": X[:, i] for i in range(8)}).with_columns(
        pl.Series("site", site.tolist(), dtype=pl.String)
    )
    return frame, y


def _member(device: str, kind: str, **extra) -> GBDTEnsembleClassifier:
    # The library defaults (all of them reach the GPU trainer), fewer rounds.
    return GBDTEnsembleClassifier(
        members=(kind,),
        device=device,
        n_bags=1,
        random_state=0,
        **{f"{kind}_params": {"n_estimators": 60}},
        **extra,
    )


def test_xgboost_cuda_model_predicts_on_cpu_like_a_cpu_model() -> None:
    _need_xgboost_cuda()
    frame, y = _data()
    with warnings.catch_warnings():
        # XGBoost warns when a CUDA booster meets host data ("mismatched devices"):
        # the member moves its booster to the CPU after training, so none may appear.
        warnings.simplefilter("error")
        gpu = _member("cuda", "xgboost").fit(frame, y)
        p_gpu = gpu.predict_proba(frame)[:, 1]
    booster = gpu.boosters_["xgboost"][0]
    config = json.loads(booster.save_config())
    assert config["learner"]["generic_param"]["device"] == "cpu"
    p_cpu = _member("cpu", "xgboost").fit(frame, y).predict_proba(frame)[:, 1]
    # Same algorithm, other floating-point order: close, not identical.
    assert spearmanr(p_gpu, p_cpu).statistic > 0.95
    assert abs(roc_auc_score(y, p_gpu) - roc_auc_score(y, p_cpu)) < 0.02


def test_catboost_gpu_trains_with_the_library_defaults() -> None:
    _need_catboost_gpu()
    frame, y = _data()
    gpu = _member("cuda", "catboost").fit(frame, y)
    assert gpu.boosters_["catboost"][0].get_all_params()["task_type"] == "GPU"
    p_gpu = gpu.predict_proba(frame)[:, 1]
    p_cpu = _member("cpu", "catboost").fit(frame, y).predict_proba(frame)[:, 1]
    assert np.isfinite(p_gpu).all()
    assert spearmanr(p_gpu, p_cpu).statistic > 0.9
    assert abs(roc_auc_score(y, p_gpu) - roc_auc_score(y, p_cpu)) < 0.03


def test_default_members_train_with_device_cuda() -> None:
    # GBDTEnsembleClassifier's default members (the three libraries): XGBoost and
    # CatBoost on the GPU, and LightGBM on the GPU
    # when its build has a CUDA learner, else on the CPU with a warning.
    _need_xgboost_cuda()
    _need_catboost_gpu()
    frame, y = _data(5_000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = GBDTEnsembleClassifier(device="cuda", n_bags=1, random_state=0).fit(frame, y)
    fallbacks = [w for w in caught if "LightGBM cannot train" in str(w.message)]
    assert len(fallbacks) == (0 if lightgbm_has_learner("cuda") else 1)
    assert set(model.boosters_) == {"lightgbm", "xgboost", "catboost"}
    assert np.isfinite(model.predict_proba(frame)).all()


def test_gpu_trained_model_round_trips_bit_identically(tmp_path: Path) -> None:
    _need_xgboost_cuda()
    _need_catboost_gpu()
    sim = simulate_slice3d(n_patients=40, seed=3)
    model = LesionBoostClassifier(
        members=("xgboost", "catboost"),
        device="cuda",
        n_bags=1,
        random_state=0,
        xgboost_params={"n_estimators": 40},
        catboost_params={"n_estimators": 40},
    ).fit(sim.train)
    path = save_model(model, tmp_path / "model")
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict_proba(sim.train), model.predict_proba(sim.train))


def test_cuda_cross_validation_matches_cpu_quality() -> None:
    _need_xgboost_cuda()
    _need_catboost_gpu()
    sim = simulate_slice3d(n_patients=250, seed=1)
    folds = patient_folds(sim.train, n_splits=3, seed=0)
    results = {}
    for device in ("cpu", "cuda"):
        model = LesionBoostClassifier(
            members=("xgboost", "catboost"), device=device, n_bags=1, random_state=0
        )
        results[device] = cross_val_oof(model, sim.train, folds, progress=False)
    assert np.isfinite(results["cuda"].oof).all()
    # ~95 cancers: pAUC is noisy, so only a gross failure of the GPU path shows here.
    assert abs(results["cuda"].pauc - results["cpu"].pauc) < 0.03
    assert spearmanr(results["cuda"].oof, results["cpu"].oof).statistic > 0.9


def _need_onnxruntime_cuda() -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers() or not _nvidia_gpu():
        pytest.skip("this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")


#: CUDA against CPU at precision="fp32" (TF32 off). Measured on an H200 with
#: onnxruntime-gpu 1.31.1, the built-in embedder: max |diff| 6e-4 with use_tf32=0, and
#: 0.015 with onnxruntime's default TF32. The tolerance is ~3x the fp32 figure and
#: well below TF32's, so this test fails if TF32 is back on.
CUDA_FP32_ATOL = 2e-3


def test_onnx_embedder_runs_on_cuda_and_matches_cpu(tmp_path: Path) -> None:
    _need_onnxruntime_cuda()
    from _crops import write_crops
    from lesionboost.image import OnnxEmbedder, build_builtin_embedder

    ids = [f"ISIC_{i:07d}" for i in range(300)]
    crops = write_crops(tmp_path / "crops.hdf5", ids, seed=2)
    model = build_builtin_embedder(tmp_path / "builtin.onnx")
    gpu = OnnxEmbedder(model, providers="cuda")  # precision="fp32": the parity default
    assert gpu.device == "cuda" and gpu.providers[0] == "CUDAExecutionProvider"
    assert gpu.precision == "fp32" and gpu._io_binding and gpu.batch_size == 256
    options = gpu._session.get_provider_options()["CUDAExecutionProvider"]
    assert options["use_tf32"] == "0"
    on_gpu = gpu.embed(crops, ids, progress=False)
    on_cpu = OnnxEmbedder(model, providers="cpu").embed(crops, ids, progress=False)
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=0, atol=CUDA_FP32_ATOL)


def test_tf32_and_fp16_on_cuda_are_opt_in_and_close(tmp_path: Path) -> None:
    _need_onnxruntime_cuda()
    from _crops import write_crops
    from lesionboost.image import OnnxEmbedder

    ids = [f"ISIC_{i:07d}" for i in range(300)]
    crops = write_crops(tmp_path / "crops.hdf5", ids, seed=4)
    on_cpu = OnnxEmbedder(providers="cpu").embed(crops, ids, progress=False)
    tf32 = OnnxEmbedder(providers="cuda", precision="tf32")
    assert tf32._session.get_provider_options()["CUDAExecutionProvider"]["use_tf32"] == "1"
    # 0.015 measured on an H200 for TF32; fp16 on the CPU provider: 0.017.
    np.testing.assert_allclose(tf32.embed(crops, ids, progress=False), on_cpu, rtol=0, atol=0.05)
    try:
        half = OnnxEmbedder(providers="cuda", precision="fp16")
    except ImportError as exc:  # a stripped onnxruntime-gpu without its float16 converter
        pytest.skip(str(exc))
    out = half.embed(crops, ids, progress=False)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, on_cpu, rtol=0, atol=0.05)


def test_in_graph_preprocessing_on_cuda_matches_the_cpu(tmp_path: Path) -> None:
    # An NCHW float model with mean/std: the uint8 batch is bound to the GPU and cast,
    # normalised and transposed there; the CPU runs the same graph.
    _need_onnxruntime_cuda()
    from _onnx_models import channel_mean_model
    from lesionboost.image import OnnxEmbedder

    metadata = {"lesionboost.mean": "0.485,0.456,0.406", "lesionboost.std": "0.229,0.224,0.225"}
    model = channel_mean_model(tmp_path / "m.onnx", layout="NCHW", size=64, metadata=metadata)
    gpu = OnnxEmbedder(model, providers="cuda")
    assert gpu.device == "cuda" and gpu.preprocessing == "graph"
    images = np.random.default_rng(0).integers(0, 256, (600, 64, 64, 3), dtype=np.uint8)
    cpu = OnnxEmbedder(model, providers="cpu")
    np.testing.assert_allclose(
        gpu.embed_images(images), cpu.embed_images(images), rtol=0, atol=CUDA_FP32_ATOL
    )


def test_image_trainer_runs_on_cuda(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    if not torch.cuda.is_available():
        pytest.skip("this PyTorch sees no CUDA device")
    from _crops import write_crops
    from lesionboost.image import OnnxEmbedder, train_embedder

    n_patients, per_patient = 24, 4
    n = n_patients * per_patient
    rng = np.random.default_rng(0)
    target = (rng.random(n) < 0.2).astype(np.int64)
    target[:2] = 1
    frame = pl.DataFrame(
        {
            "isic_id": [f"ISIC_{i:07d}" for i in range(n)],
            "patient_id": [f"IP_{i // per_patient:03d}" for i in range(n)],
            "target": target,
        }
    )
    ids = frame["isic_id"].to_list()
    store = write_crops(tmp_path / "crops.hdf5", ids, atypical=target == 1, seed=1)
    folds = (np.arange(n) // per_patient) % 2
    # The export is checked against PyTorch inside train_embedder (ModelFileError
    # beyond 1e-4), so a CUDA-trained model that exports wrongly fails here.
    result = train_embedder(
        frame,
        store,
        folds,
        out_dir=tmp_path / "models",
        epochs=2,
        batch_size=32,
        width=4,
        negatives_per_positive=2,
        seed=3,
        device="cuda",
        progress=False,
    )
    assert result.oof_scores.shape == (n,) and np.isfinite(result.oof_scores).all()
    embedder = OnnxEmbedder(result.model_paths[0], providers="cpu")
    assert np.isfinite(embedder.embed(store, ids[:8], progress=False)).all()

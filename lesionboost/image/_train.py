"""``train_embedder``: a small CNN per fold, exported to ONNX, giving out-of-fold image scores.

Needs PyTorch (``pip install "lesionboost[train-image]"``); runs on CPU or CUDA
and downloads nothing. For each patient-grouped fold ``f``:

1. train a small CNN (:class:`_SmallCNN`) from scratch on all positives of the
   other folds plus a fresh draw of their negatives every epoch (downsampling),
   with augmentation (random rotation, scale, shift, flips, brightness and
   contrast jitter);
2. export it to ONNX (``torch.onnx.export``, dynamic batch) with the
   ``metadata_props`` that :class:`~lesionboost.image.OnnxEmbedder` reads, and
   check onnxruntime against PyTorch on held-out crops (max abs diff < 1e-4);
3. score fold ``f``'s lesions with that ONNX model -- the model never saw those
   patients, so the score is out-of-fold and can become a GBDT feature.

Test-time score = mean of the fold models' logits (:meth:`ImageModels.score`).
The result is saved as ONNX files + ``image-models.json`` + ``oof.parquet``
in ``out_dir`` (no pickles).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from .._utils._atomic import atomic_path
from .._utils._frame import to_polars
from .._utils._imports import import_optional
from ..exceptions import ModelFileError, OptionalDependencyError
from ..io import ImageStore
from ..model_selection import check_patient_folds
from ._decode import DecodeStats, iter_decoded
from ._embedder import OnnxEmbedder
from ._metadata import METADATA_KEYS

__all__ = ["train_embedder", "ImageModels"]

logger = logging.getLogger(__name__)

MANIFEST = "image-models.json"
PARITY_TOLERANCE = 1e-4


def _torch() -> Any:
    torch = import_optional("torch", purpose="training the image model (train_embedder)")
    try:
        import onnxscript  # noqa: F401  -- torch.onnx.export(dynamo=True) needs it
    except ImportError as exc:
        raise OptionalDependencyError(
            "Exporting the trained image model to ONNX needs 'onnxscript' "
            f'({exc}). Install it with: pip install "lesionboost[train-image]"'
        ) from exc
    return torch


def _build_cnn(torch: Any, width: int) -> Any:
    nn = torch.nn

    def block(c_in: int, c_out: int) -> list[Any]:
        return [
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]

    class _SmallCNN(nn.Module):  # type: ignore[name-defined]  # torch is imported at run time
        """Four conv blocks (64 -> 32 -> 16 -> 8 px), global average pooling, a linear head.

        ``forward`` returns ``(embedding, logit)``; both become ONNX outputs.
        """

        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                *block(3, width),
                nn.MaxPool2d(2),
                *block(width, 2 * width),
                nn.MaxPool2d(2),
                *block(2 * width, 4 * width),
                nn.MaxPool2d(2),
                *block(4 * width, 4 * width),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.dropout = nn.Dropout(0.2)
            self.head = nn.Linear(4 * width, 1)

        def forward(self, x: Any) -> tuple[Any, Any]:
            embedding = self.features(x)
            return embedding, self.head(self.dropout(embedding))

    return _SmallCNN()


def _augment(torch: Any, x: Any, generator: Any) -> Any:
    """Random rotation/scale/shift (one affine warp), flips, brightness and contrast."""
    n = x.shape[0]
    device = x.device

    def uniform(low: float, high: float) -> Any:
        return torch.rand(n, generator=generator, device=device) * (high - low) + low

    angle = uniform(0.0, 2 * np.pi)
    scale = uniform(0.9, 1.12)
    flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(-0.06, 0.06)], dim=1),
            torch.stack([sin * flip, cos, uniform(-0.06, 0.06)], dim=1),
        ],
        dim=1,
    )
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, padding_mode="reflection", align_corners=False)
    brightness = uniform(-0.08, 0.08).view(n, 1, 1, 1)
    contrast = uniform(0.85, 1.15).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast + mean + brightness).clamp(0.0, 1.0)


@dataclass
class ImageModels:
    """Fold models of :func:`train_embedder` and their out-of-fold scores.

    Attributes
    ----------
    directory : pathlib.Path
        Folder holding the ONNX files, ``image-models.json`` and ``oof.parquet``.
    model_paths : list of pathlib.Path
        One ONNX model per fold, ``model_paths[f]`` trained without fold ``f``.
    isic_ids : list of str
        The lesions scored out of fold, in the order of the training metadata.
    oof_scores : numpy.ndarray of float32
        Out-of-fold logit per lesion (NaN where its crop was missing or corrupt).
    folds : numpy.ndarray of int8
        The fold of each lesion, i.e. the model that scored it.
    train_ids : list of list of str
        The lesions each fold model trained on.
    parity : list of float
        Max abs difference between onnxruntime and PyTorch outputs, per fold.
    history : list of dict
        Per fold: training loss per epoch, seconds, numbers of crops.
    image_size : int
    """

    directory: Path
    model_paths: list[Path]
    isic_ids: list[str]
    oof_scores: np.ndarray
    folds: np.ndarray
    train_ids: list[list[str]]
    parity: list[float]
    history: list[dict[str, Any]] = field(default_factory=list)
    image_size: int = 64

    def oof_table(self) -> dict[str, float]:
        """``isic_id -> out-of-fold score`` for every lesion that has one."""
        return {
            i: float(s)
            for i, s in zip(self.isic_ids, self.oof_scores, strict=True)
            if np.isfinite(s)
        }

    def score(
        self,
        store: ImageStore | str | os.PathLike[str],
        isic_ids: Sequence[str],
        *,
        providers: Any = "auto",
        progress: bool | None = None,
    ) -> np.ndarray:
        """Test-time image score: the mean logit of the fold models (NaN where no crop).

        Use it only for lesions whose patients no fold model trained on (new
        patients); training lesions have :attr:`oof_scores`.
        """
        total = np.zeros(len(isic_ids), dtype=np.float64)
        for path in self.model_paths:
            embedder = OnnxEmbedder(path, providers=providers)
            logits = embedder.embed(store, list(isic_ids), outputs=["logit"], progress=progress)
            total += logits[0][:, 0] if len(isic_ids) else 0.0
        return (total / max(len(self.model_paths), 1)).astype(np.float32)

    def save(self) -> Path:
        """Write ``image-models.json`` and ``oof.parquet`` into :attr:`directory`."""
        oof = pl.DataFrame(
            {
                "isic_id": self.isic_ids,
                "fold": self.folds.astype(np.int8),
                "image_score": self.oof_scores.astype(np.float32),
            }
        )
        with atomic_path(self.directory / "oof.parquet") as tmp:
            oof.write_parquet(tmp)
        manifest = {
            "kind": "lesionboost-image-models",
            "version": 1,
            "image_size": self.image_size,
            # Relative to the folder (which then moves as one piece), else absolute.
            "models": [_relative(p, self.directory) for p in self.model_paths],
            "parity_max_abs_diff": self.parity,
            "history": self.history,
            "train_ids": self.train_ids,
        }
        with atomic_path(self.directory / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        return self.directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ImageModels:
        """Read fold models written by :func:`train_embedder` (or :meth:`save`)."""
        folder = Path(directory)
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise ModelFileError(
                f"{folder} holds no {MANIFEST}; pass the out_dir of train_embedder()."
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            oof = pl.read_parquet(folder / "oof.parquet")
            paths = [folder / name for name in manifest["models"]]
        except (OSError, ValueError, KeyError, pl.exceptions.PolarsError) as exc:
            raise ModelFileError(f"Could not read the image models in {folder} ({exc}).") from exc
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ModelFileError(
                f"Image model files are missing: {missing}; copy the folder again."
            )
        return cls(
            directory=folder,
            model_paths=paths,
            isic_ids=oof["isic_id"].to_list(),
            oof_scores=oof["image_score"].to_numpy().astype(np.float32),
            folds=oof["fold"].to_numpy().astype(np.int8),
            train_ids=[list(v) for v in manifest.get("train_ids", [])],
            parity=[float(v) for v in manifest.get("parity_max_abs_diff", [])],
            history=list(manifest.get("history", [])),
            image_size=int(manifest["image_size"]),
        )


def _relative(path: Path, folder: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        return str(Path(path).resolve())


def _check_folds(frame: pl.DataFrame, folds: np.ndarray) -> np.ndarray:
    folds = np.asarray(folds).ravel()
    if folds.shape[0] != frame.height:
        raise ValueError(
            f"folds has {folds.shape[0]} entries but the metadata has {frame.height} rows; "
            "pass patient_folds(metadata)."
        )
    present = np.unique(folds)
    if present.size < 2 or not np.array_equal(present, np.arange(present.size)):
        raise ValueError(
            f"folds must number at least two folds 0..k-1 (patient_folds() does), got ids "
            f"{present[:10].tolist()}."
        )
    check_patient_folds(frame["patient_id"], folds, what="train_embedder's folds")
    return folds.astype(np.int64)


def _export_onnx(torch: Any, model: Any, example: Any, path: Path, props: dict[str, str]) -> None:
    onnx = import_optional("onnx", purpose="writing the trained image model")
    from onnx import helper

    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        # torch's exporter emits deprecation chatter from its own internals.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # The exporter and its optimiser log every pass at INFO; keep only problems.
        # (torch.onnx warns that torchvision's detection ops are not registered: irrelevant.)
        chatty = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "onnx_ir")]
        levels = [log.level for log in chatty]
        for log in chatty:
            log.setLevel(logging.ERROR if log.name == "torch.onnx" else logging.WARNING)
        try:
            program = torch.onnx.export(
                model,
                (example,),
                None,
                dynamo=True,
                input_names=["image"],
                output_names=["embedding", "logit"],
                dynamic_shapes=({0: batch},),
                opset_version=18,
                verbose=False,
                external_data=False,
            )
        finally:
            for log, level in zip(chatty, levels, strict=True):
                log.setLevel(level)
    proto = program.model_proto
    helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def train_embedder(
    metadata: Any,
    store: ImageStore | str | os.PathLike[str],
    folds: Sequence[int] | np.ndarray,
    *,
    out_dir: str | os.PathLike[str] | None = None,
    image_size: int = 64,
    epochs: int = 8,
    batch_size: int = 128,
    negatives_per_positive: int = 6,
    max_negatives: int = 50_000,
    width: int = 16,
    learning_rate: float = 3e-3,
    device: str = "auto",
    seed: int = 0,
    progress: bool | None = None,
) -> ImageModels:
    """Train one small CNN per patient fold; return out-of-fold scores and ONNX fold models.

    Parameters
    ----------
    metadata : polars.DataFrame or pandas.DataFrame
        Training lesions with ``isic_id``, ``patient_id`` and ``target``.
    store : ImageStore or path
        HDF5 crops of those lesions.
    folds : array-like of int, shape (n_rows,)
        Patient-grouped fold of each row (:func:`lesionboost.patient_folds`).
    out_dir : path, optional
        Folder for the ONNX models and manifest (created); default a new temporary folder.
    image_size : int, default=64
        Crop side in pixels (64-128 works well for SLICE-3D's ~131 px crops).
    epochs : int, default=8
        Fixed number of epochs (no early stopping, which would make OOF scores optimistic).
    batch_size : int, default=128
    negatives_per_positive : int, default=6
        Negatives drawn afresh each epoch for every positive of the training folds.
    max_negatives : int, default=50000
        Negatives decoded into memory once, as the pool the epochs draw from.
    width : int, default=16
        Channels of the first block (embedding size ``4 * width``).
    learning_rate : float, default=3e-3
        Peak AdamW learning rate of a one-cycle schedule.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where PyTorch trains; "auto" picks CUDA when available.
    seed : int, default=0
    progress : bool, optional
        Progress bars (default: only on a terminal).

    Returns
    -------
    ImageModels

    Raises
    ------
    OptionalDependencyError
        PyTorch (or onnxscript, for the export) is missing.
    ValueError
        Folds that split a patient, no positives, wrong lengths.
    ModelFileError
        An exported model does not reproduce PyTorch within 1e-4.

    Examples
    --------
    >>> from lesionboost import patient_folds
    >>> from lesionboost.image import train_embedder
    >>> result = train_embedder(meta, "train-image.hdf5", patient_folds(meta),  # doctest: +SKIP
    ...                         out_dir="runs/image")
    >>> result.oof_scores.shape  # doctest: +SKIP
    (401059,)
    """
    torch = _torch()
    from tqdm.auto import tqdm

    frame = to_polars(metadata, what="metadata")
    for column in ("isic_id", "patient_id", "target"):
        if column not in frame.columns:
            raise ValueError(f"train_embedder needs a {column!r} column in the metadata.")
    fold_of = _check_folds(frame, np.asarray(folds))
    labels = frame["target"].cast(pl.Int64).to_numpy()
    ids = frame["isic_id"].cast(pl.String).to_list()
    n_folds = int(fold_of.max()) + 1
    if labels.sum() == 0:
        raise ValueError("train_embedder needs malignant lesions (target = 1) to learn from.")
    if not isinstance(store, ImageStore):
        store = ImageStore(store)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' but this PyTorch sees no CUDA device; pass device='cpu' or 'auto', "
            "or install a CUDA build of torch."
        )
    torch_device = torch.device(device)
    directory = (
        Path(out_dir)
        if out_dir is not None
        else Path(tempfile.mkdtemp(prefix="lesionboost-image-"))
    )
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    disable = None if progress is None else not progress

    # The pool of crops held in memory: every positive and a capped draw of negatives.
    positives = np.flatnonzero(labels == 1)
    negatives = np.flatnonzero(labels == 0)
    if negatives.size > max_negatives:
        negatives = np.sort(rng.choice(negatives, max_negatives, replace=False))
    pool = np.concatenate([positives, negatives])
    stats = DecodeStats()
    images = np.zeros((pool.size, image_size, image_size, 3), dtype=np.uint8)
    ok = np.ones(pool.size, dtype=bool)
    with tqdm(total=pool.size, unit="crop", desc="decode", disable=disable) as bar:
        for chunk in iter_decoded(store, [ids[i] for i in pool], image_size, stats=stats):
            end = chunk.start + len(chunk.failed)
            images[chunk.start : end] = chunk.images
            ok[chunk.start : end] = ~chunk.failed
            bar.update(len(chunk.failed))
    pool, images = pool[ok], images[ok]
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    mean = pixels.mean(axis=0)
    std = pixels.std(axis=0) + 1e-6
    del pixels
    mean_t = torch.tensor(mean, dtype=torch.float32, device=torch_device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=torch_device).view(1, 3, 1, 1)
    logger.info(
        "train_embedder: %d positives and %d negatives in memory at %d px on %s; %s.",
        int(labels[pool].sum()),
        int((labels[pool] == 0).sum()),
        image_size,
        device,
        stats.summary(),
    )

    def to_tensor(batch: np.ndarray) -> Any:
        x = torch.from_numpy(batch).to(torch_device).permute(0, 3, 1, 2).float() / 255.0
        return x

    oof = np.full(frame.height, np.nan, dtype=np.float32)
    model_paths: list[Path] = []
    train_ids: list[list[str]] = []
    parity: list[float] = []
    history: list[dict[str, Any]] = []
    pool_fold = fold_of[pool]
    pool_label = labels[pool]
    for fold in range(n_folds):
        started = time.perf_counter()
        torch.manual_seed(seed * 1000 + fold)
        generator = torch.Generator(device=torch_device).manual_seed(seed * 1000 + fold)
        fold_rng = np.random.default_rng([seed, fold])
        train_pos = np.flatnonzero((pool_fold != fold) & (pool_label == 1))
        train_neg = np.flatnonzero((pool_fold != fold) & (pool_label == 0))
        if train_pos.size == 0:
            raise ValueError(
                f"Fold {fold}: no positive lesion outside the fold to train on; use fewer folds."
            )
        per_epoch = min(train_neg.size, negatives_per_positive * train_pos.size)
        steps = epochs * int(np.ceil((train_pos.size + per_epoch) / batch_size))
        model = _build_cnn(torch, width).to(torch_device)
        optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=learning_rate, total_steps=max(steps, 1)
        )
        loss_fn = torch.nn.BCEWithLogitsLoss()
        used: set[int] = set(train_pos.tolist())
        losses: list[float] = []
        model.train()
        with tqdm(total=steps, unit="batch", desc=f"fold {fold}", disable=disable) as bar:
            for _ in range(epochs):
                drawn = fold_rng.choice(train_neg, per_epoch, replace=False)
                used.update(drawn.tolist())
                order = fold_rng.permutation(np.concatenate([train_pos, drawn]))
                total, count = 0.0, 0
                for start in range(0, order.size, batch_size):
                    rows = order[start : start + batch_size]
                    x = _augment(torch, to_tensor(images[rows]), generator)
                    y = torch.from_numpy(pool_label[rows].astype(np.float32)).to(torch_device)
                    _, logit = model((x - mean_t) / std_t)
                    loss = loss_fn(logit[:, 0], y)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    schedule.step()
                    total += float(loss.detach()) * rows.size
                    count += rows.size
                    bar.update(1)
                losses.append(total / max(count, 1))
        model.eval().cpu()
        path = directory / f"image-fold{fold}.onnx"
        props = {
            METADATA_KEYS["input_size"]: str(image_size),
            METADATA_KEYS["layout"]: "NCHW",
            METADATA_KEYS["mean"]: ",".join(f"{v:.8g}" for v in mean),
            METADATA_KEYS["std"]: ",".join(f"{v:.8g}" for v in std),
            METADATA_KEYS["output"]: "embedding",
            METADATA_KEYS["score_output"]: "logit",
            "lesionboost.kind": "trained-cnn",
            "lesionboost.fold": str(fold),
            "lesionboost.n_folds": str(n_folds),
        }
        example = torch.zeros(2, 3, image_size, image_size)
        _export_onnx(torch, model, example, path, props)
        # Parity on crops the model did not train on (or any crops when none are left).
        check_rows = np.flatnonzero(pool_fold == fold)[:64]
        if check_rows.size == 0:
            check_rows = np.arange(min(64, pool.size))
        # Parity is checked CPU against CPU: CUDA kernels (TF32, other reductions)
        # legitimately differ by more than the tolerance.
        checker = OnnxEmbedder(path, providers="cpu")
        onnx_emb, onnx_logit = checker.run_outputs(images[check_rows], ["embedding", "logit"])
        with torch.no_grad():
            # The same float32 preprocessing onnxruntime gets from OnnxEmbedder.
            prepared = checker._prepare(images[check_rows])
            torch_emb, torch_logit = model(torch.from_numpy(prepared))
        diff = float(
            max(
                np.abs(onnx_emb - torch_emb.numpy()).max(),
                np.abs(onnx_logit - torch_logit.numpy()).max(),
            )
        )
        if not diff < PARITY_TOLERANCE:
            raise ModelFileError(
                f"The ONNX export of fold {fold} ({path}) differs from PyTorch by {diff:.2e} "
                f"(tolerance {PARITY_TOLERANCE:g}); the file is not trustworthy. Check the "
                "torch/onnx/onnxruntime versions (lesionboost show-versions)."
            )
        # Out-of-fold scores: every lesion of this fold, read and decoded afresh.
        embedder = OnnxEmbedder(path, providers="auto" if device == "cuda" else "cpu")
        rows = np.flatnonzero(fold_of == fold)
        (logits,), failed = embedder.embed(
            store,
            [ids[i] for i in rows],
            outputs=["logit"],
            return_failed=True,
            progress=progress,
        )
        oof[rows] = np.where(failed, np.nan, logits[:, 0])
        model_paths.append(path)
        train_ids.append(sorted(ids[pool[i]] for i in used))
        parity.append(diff)
        history.append(
            {
                "fold": fold,
                "loss": losses,
                "seconds": round(time.perf_counter() - started, 2),
                "positives": int(train_pos.size),
                "negatives_per_epoch": int(per_epoch),
                "scored": int(rows.size),
            }
        )
        logger.info(
            "fold %d: %d epochs, final loss %.4f, ONNX parity %.1e, %d lesions scored out of fold.",
            fold,
            epochs,
            losses[-1] if losses else float("nan"),
            diff,
            rows.size,
        )
    result = ImageModels(
        directory=directory,
        model_paths=model_paths,
        isic_ids=ids,
        oof_scores=oof,
        folds=fold_of.astype(np.int8),
        train_ids=train_ids,
        parity=parity,
        history=history,
        image_size=image_size,
    )
    result.save()
    return result

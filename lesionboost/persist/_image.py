"""The image models of a model folder: copying the ONNX embedder and the fold models
of a ``train_embedder()`` scorer under ``image/`` at save, hashing every copy, and at
load checking that the listed files (and no others) are there with their hashes and
agree with the fitted image state before ``image_model`` is pointed at the copies.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..exceptions import DataWarning, ModelFileError
from ._ensemble import _safe_member_path
from ._manifest import _IMAGE, _MANIFEST, _MODIFIED, _read_listed, _sha256


def _image_model_param(section: Mapping[str, Any], root: Path | None) -> Any:
    """``image_model`` naming the folder's image files: None, one path, or [embedder, scorer].

    Paths are relative to the folder in the manifest (``root=None``) and
    absolute inside ``root`` once loaded.
    """
    embedder = None if section["embedder"] == "builtin" else section["embedder"]
    parts = [
        p if root is None else str(root / p) for p in (embedder, section["scorer"]) if p is not None
    ]
    return None if not parts else parts[0] if len(parts) == 1 else parts


def _write_image_files(model: Any, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Copy what predict needs under ``folder/image``: the manifest section and saved state.

    Raises :class:`ModelFileError` (before anything is written) when a model the
    image features were fitted with cannot be found or no longer matches.
    """
    from ..image import ImageModels
    from ..image._portable import portable_image_model

    fitted = model.image_state_
    try:
        plan = portable_image_model(model.image_model, fitted)
    except ModelFileError as exc:
        raise ModelFileError(
            f"save_model cannot store the image model that new crops need, so the model folder "
            f"would not stand alone: {exc}"
        ) from exc
    image = folder / _IMAGE
    image.mkdir()
    embedder = "builtin"
    if plan.embedder is not None:
        (image / "embedder").mkdir()
        name = "embedder.onnx" if isinstance(plan.embedder, bytes) else plan.embedder.name
        embedder = f"{_IMAGE}/embedder/{name}"
        if isinstance(plan.embedder, bytes):
            (folder / embedder).write_bytes(plan.embedder)
        else:
            shutil.copyfile(plan.embedder, folder / embedder)
        for relative, source in plan.embedder_data:
            (image / "embedder" / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, image / "embedder" / relative)
    scorer = None
    if plan.scorer is not None:
        source_models = plan.scorer
        target = image / "scorer"
        target.mkdir()
        paths = [target / f"fold-{k}.onnx" for k in range(len(source_models.model_paths))]
        for origin, copy in zip(source_models.model_paths, paths, strict=True):
            shutil.copyfile(origin, copy)
        ImageModels(
            directory=target,
            model_paths=paths,
            isic_ids=source_models.isic_ids,
            oof_scores=source_models.oof_scores,
            folds=source_models.folds,
            train_ids=source_models.train_ids,
            parity=source_models.parity,
            history=source_models.history,
            image_size=source_models.image_size,
        ).save()
        scorer = f"{_IMAGE}/scorer"
    files: list[dict[str, Any]] = []
    if not any(image.iterdir()):  # the built-in embedder and no scorer: nothing to hold
        image.rmdir()
    for path in sorted(p for p in folder.glob(f"{_IMAGE}/**/*") if p.is_file()):
        blob = path.read_bytes()
        files.append(
            {
                "path": path.relative_to(folder).as_posix(),
                "bytes": len(blob),
                "sha256": _sha256(blob),
            }
        )
    recorded = dict(fitted.get("embedder") or {})
    if embedder != "builtin":
        copied = next(f["sha256"] for f in files if f["path"] == embedder)
        if copied != recorded.get("sha256"):  # the file changed while it was being copied
            raise ModelFileError(
                f"save_model: the image model {plan.embedder!r:.80} changed while it was copied "
                f"(SHA-256 {copied[:12]}..., fitted with {str(recorded.get('sha256'))[:12]}...). "
                "Save the model again."
            )
    section = {"embedder": embedder, "scorer": scorer, "files": files}
    # The numeric precision of the embeddings the model was fitted on ("fp32", "tf32",
    # "fp16"; None before it was recorded): predict embeds new crops at it.
    section["precision"] = recorded.get("precision")
    state = dict(fitted)
    recorded.pop("table", None)
    recorded["model"] = embedder
    state["embedder"] = recorded
    state["scorer"] = scorer
    return section, state


def _check_image_files(section: Any, root: Path) -> dict[str, dict[str, Any]]:
    """Every file of the ``image`` section present with its hash, and no unlisted one."""
    entries = section.get("files") if isinstance(section, dict) else None
    if not isinstance(entries, list):
        raise ModelFileError(
            f"{root}: the image section of {_MANIFEST} lists no files; {_MODIFIED}."
        )
    files: dict[str, dict[str, Any]] = {}
    for entry in entries:
        relative = entry.get("path") if isinstance(entry, dict) else None
        path = _safe_member_path(root, relative)
        assert isinstance(relative, str) and isinstance(entry, dict)  # checked just above
        if not relative.startswith(f"{_IMAGE}/") or relative in files:
            raise ModelFileError(
                f"{root}: image file {relative!r} in {_MANIFEST} is listed twice or lies outside "
                f"{_IMAGE}/; {_MODIFIED}."
            )
        _read_listed(root, path, entry, what=f"image file {relative!r}", damaged=f"; {_MODIFIED}.")
        files[relative] = entry
    on_disk = (
        {p.relative_to(root).as_posix() for p in (root / _IMAGE).rglob("*") if p.is_file()}
        if (root / _IMAGE).is_dir()
        else set()
    )
    unlisted = sorted(on_disk - set(files))
    if unlisted:
        raise ModelFileError(
            f"{root}: {unlisted[:5]} under {_IMAGE}/ are not listed in {_MANIFEST}, so their "
            f"content is not checked; {_MODIFIED}."
        )
    return files


def _restore_image(
    manifest: Mapping[str, Any], root: Path, params: dict[str, Any], state: dict[str, Any]
) -> None:
    """Point ``image_model`` and the image state at the verified copies inside ``root``."""
    fitted = state.get("image_state")
    section = manifest.get("image")
    if fitted is None:
        if section is not None or params.get("image_model") is not None:
            raise ModelFileError(
                f"{root}: {_MANIFEST} names an image model but holds no image-feature state; "
                f"{_MODIFIED}."
            )
        return
    if section is None:
        if manifest.get("format_version") == 1:
            warnings.warn(
                f"{root} was saved by an earlier lesionboost that kept its image model outside "
                f"the folder ({params.get('image_model') or 'the built-in embedder'}); it "
                "predicts only while those files stay in place. Save it again with save_model() "
                "to copy them into the folder.",
                DataWarning,
                stacklevel=3,
            )
            return
        raise ModelFileError(
            f"{root}: {_MANIFEST} has an image-feature state but no 'image' section listing its "
            f"image model files; {_MODIFIED}."
        )
    files = _check_image_files(section, root)
    embedder, scorer = section.get("embedder"), section.get("scorer")
    if embedder != "builtin" and embedder not in files:
        raise ModelFileError(
            f"{root}: the image embedder {embedder!r} named in {_MANIFEST} is not one of its "
            f"hashed image files; {_MODIFIED}."
        )
    recorded = fitted.get("embedder") if isinstance(fitted, dict) else None
    if (
        not isinstance(recorded, dict)
        or recorded.get("model") != embedder
        or (embedder != "builtin" and recorded.get("sha256") != files[embedder]["sha256"])
    ):
        raise ModelFileError(
            f"{root}: the image-feature state was not fitted with the embedder {embedder!r} "
            f"that the folder holds; {_MODIFIED}."
        )
    precision = section.get("precision")
    if precision not in (None, "fp32", "tf32", "fp16") or precision != recorded.get("precision"):
        raise ModelFileError(
            f"{root}: the image section of {_MANIFEST} records the embedding precision "
            f"{precision!r} but the image-feature state {recorded.get('precision')!r}; {_MODIFIED}."
        )
    if scorer is not None:
        listing = f"{scorer}/image-models.json"
        needed = [listing, f"{scorer}/oof.parquet"]
        if not isinstance(scorer, str) or any(name not in files for name in needed):
            raise ModelFileError(
                f"{root}: the image scorer {scorer!r} in {_MANIFEST} lacks its hashed "
                f"image-models.json or oof.parquet; {_MODIFIED}."
            )
        try:
            models = json.loads((root / listing).read_text(encoding="utf-8"))["models"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{root}: {listing} cannot be read ({exc}); {_MODIFIED}.") from exc
        if (
            not isinstance(models, list)
            or not models
            or any(not isinstance(m, str) or f"{scorer}/{m}" not in files for m in models)
        ):
            raise ModelFileError(
                f"{root}: {listing} names fold models {str(models)[:80]} that are not hashed "
                f"files of the folder; {_MODIFIED}."
            )
    if fitted.get("scorer") != scorer or params.get("image_model") != _image_model_param(
        section, None
    ):
        raise ModelFileError(
            f"{root}: the image_model parameter {params.get('image_model')!r} or the image "
            f"state's scorer does not name the image files the folder holds; {_MODIFIED}."
        )
    base = root.resolve()
    image_model = _image_model_param(section, base)
    params["image_model"] = tuple(image_model) if isinstance(image_model, list) else image_model
    state["image_state"] = {**fitted, "scorer": None if scorer is None else str(base / scorer)}

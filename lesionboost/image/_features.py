"""Image features for the GBDT: an image score, embedding components and patient context.

:func:`image_features` turns per-lesion arrays (an embedding, an optional
malignancy score) into GBDT columns; :func:`image_feature_frame` does the I/O
around it (embed the crops of a metadata frame, look up or compute the score)
and is what :class:`~lesionboost.LesionBoostClassifier` calls.

Columns (``k`` = ``n_components``):

``img_missing``
    1 when the crop was missing or corrupt; every other image column is then null.
``img_score``, ``img_score_prank``
    A label-trained model's malignancy logit (out-of-fold for training rows) and
    its percentile rank among the patient's lesions in the frame.
``img_pc1`` .. ``img_pc{k}``
    Principal components of the standardised label-free embedding.
``img_cos_patient``, ``img_cos_prank``
    Cosine distance of the lesion's standardised embedding to the mean
    embedding of its patient's other lesions in the frame (the image "ugly
    duckling"; leave-one-out so that an odd lesion does not pull the mean
    towards itself), and its percentile rank within the patient.

Patient context follows the tabular rule of :mod:`lesionboost.features`: it is
computed over the lesions of the same patient present in the frame being
transformed (new patients at predict time are handled like the Kaggle test
set), with ranks ``(rank - 1) / (n - 1)`` (ties averaged) and 0.5 for a patient
with one usable lesion. Only the standardisation and the PCA are fitted, on the
training frame, and kept as a JSON-safe ``dict`` (never a pickle).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from scipy import sparse

from .._utils._frame import to_polars
from ..exceptions import DataWarning, ModelFileError, SchemaError
from ..io import ImageStore

if TYPE_CHECKING:
    from ._train import ImageModels

__all__ = ["image_features", "image_feature_frame", "check_unique_ids", "portable_image_model"]

logger = logging.getLogger(__name__)

STATE_VERSION = 1
_EPS = 1e-12
_CHUNK = 65_536


def check_unique_ids(frame: pl.DataFrame, *, what: str) -> None:
    """Refuse a frame whose ``isic_id`` column is absent, has empty values or repeats a value.

    Image features are looked up and joined to the lesions by ``isic_id``: a
    repeated id would add rows to the result and shift every later score, and
    an empty one has no crop. Cheap (one hash pass), so callers run it before
    any embedding.

    Raises
    ------
    SchemaError
        Naming the first offending ids or rows and what to do.
    """
    if "isic_id" not in frame.columns:
        raise SchemaError(
            f"{what}: image features need an 'isic_id' column to find the crops; pass the "
            "SLICE-3D metadata with its isic_id column."
        )
    ids = frame.get_column("isic_id")
    if ids.null_count():
        rows = ids.is_null().arg_true().head(5).to_list()
        raise SchemaError(
            f"{what}: 'isic_id' is empty at row(s) {rows}; image features are joined to the "
            "lesions by isic_id, so every lesion needs one. Fill them in or drop those rows."
        )
    repeated = ids.filter(ids.is_duplicated())
    if repeated.len():
        first = repeated.unique(maintain_order=True)
        shown = ", ".join(repr(v) for v in first.head(5).to_list())
        more = f" and {first.len() - 5} more" if first.len() > 5 else ""
        raise SchemaError(
            f"{what}: isic_id must be unique when image features are used, but {first.len()} "
            f"id(s) appear more than once ({repeated.len()} rows): {shown}{more}. Image "
            "features are joined by isic_id, so a repeated id would add rows and misalign "
            "every later score. Keep one row per lesion (polars: "
            "X.unique(subset='isic_id', keep='first', maintain_order=True); pandas: "
            "X.drop_duplicates('isic_id')) or give each lesion its own isic_id."
        )


def _patient_codes(frame: pl.DataFrame) -> np.ndarray:
    if "patient_id" not in frame.columns:
        raise ValueError(
            "Image features need a 'patient_id' column: patient-relative image features are "
            "computed over each patient's lesions. Pass the SLICE-3D metadata frame."
        )
    patients = frame.get_column("patient_id")
    if patients.null_count():
        rows = patients.is_null().arg_true().head(5).to_list()
        raise ValueError(
            f"'patient_id' is empty at row(s) {rows}; every lesion needs its patient for the "
            "patient-relative image features. Fill it in or drop those rows."
        )
    return patients.cast(pl.String).cast(pl.Categorical).to_physical().to_numpy()


def _rank_within(values: np.ndarray, codes: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Percentile rank ``(rank - 1) / (n - 1)`` within each patient over valid rows, else NaN."""
    frame = pl.DataFrame({"g": codes[valid], "x": values[valid]})
    ranked = (
        frame.select(
            pl.when(pl.len().over("g") > 1)
            .then((pl.col("x").rank("average").over("g") - 1.0) / (pl.len().over("g") - 1.0))
            .otherwise(0.5)
        )
        .to_series()
        .to_numpy()
    )
    out = np.full(values.shape[0], np.nan)
    out[valid] = ranked
    return out


def _fit_state(embeddings: np.ndarray, n_components: int) -> dict[str, Any]:
    from sklearn.decomposition import PCA

    centre = embeddings.mean(axis=0)
    scale = embeddings.std(axis=0)
    scale = np.where(scale > 1e-8, scale, 1.0)  # constant columns stay 0 after centring
    z = (embeddings - centre) / scale
    k = int(min(n_components, max(z.shape[0] - 1, 0), z.shape[1]))
    components = np.zeros((0, z.shape[1]))
    if k > 0:
        components = PCA(n_components=k, svd_solver="covariance_eigh").fit(z).components_
    return {
        "center": centre.tolist(),
        "scale": scale.tolist(),
        "components": components.tolist(),
        "n_components": int(n_components),
        "embedding_dim": int(embeddings.shape[1]),
    }


def image_features(
    metadata: Any,
    embeddings: np.ndarray,
    *,
    failed: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    fitted_state: Mapping[str, Any] | None = None,
    n_components: int = 8,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Compute the image feature columns from per-lesion arrays (no I/O).

    Parameters
    ----------
    metadata : polars.DataFrame or pandas.DataFrame
        Rows aligned with ``embeddings``; needs ``isic_id`` and ``patient_id``.
    embeddings : numpy.ndarray, shape (n, d)
        Label-free embedding per lesion (NaN rows for missing crops).
    failed : numpy.ndarray of bool, shape (n,), optional
        Rows without a usable crop; default: rows with a non-finite embedding.
    scores : numpy.ndarray, shape (n,), optional
        Malignancy score per lesion -- out-of-fold for rows the GBDT trains on.
    fitted_state : dict, optional
        State returned by an earlier call on the training frame; when given,
        the standardisation and PCA are applied, not refitted.
    n_components : int, default=8
        Principal components of the embedding to keep (when fitting).

    Returns
    -------
    features : polars.DataFrame
        ``isic_id`` then the image columns, in the row order of ``metadata``.
    state : dict
        JSON-safe fitted state (pass it back as ``fitted_state`` at predict time).

    Examples
    --------
    >>> import numpy as np, polars as pl
    >>> meta = pl.DataFrame({"isic_id": ["a", "b", "c"], "patient_id": ["p", "p", "q"]})
    >>> emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> features, state = image_features(meta, emb, n_components=1)
    >>> features.columns
    ['isic_id', 'img_missing', 'img_pc1', 'img_cos_patient', 'img_cos_prank']
    """
    frame = to_polars(metadata, what="metadata")
    if "isic_id" not in frame.columns:
        raise ValueError("Image features need an 'isic_id' column to key the rows.")
    codes = _patient_codes(frame)
    emb = np.asarray(embeddings, dtype=np.float32)  # float32 halves memory on 401k rows
    n = frame.height
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(
            f"embeddings must have shape (n_rows, d) = ({n}, d) to match the metadata, got "
            f"{emb.shape}."
        )
    bad = ~np.isfinite(emb).all(axis=1)
    missing = bad if failed is None else (np.asarray(failed, dtype=bool) | bad)
    valid = ~missing
    if fitted_state is None:
        if not valid.any():
            raise ValueError(
                "No lesion of the training frame has a usable image (all crops missing or "
                "corrupt); check that the image file matches the metadata."
            )
        state = _fit_state(emb[valid], n_components)
        state["scores"] = scores is not None
    else:
        state = dict(fitted_state)
        if int(state["embedding_dim"]) != emb.shape[1]:
            raise ValueError(
                f"The embedding has {emb.shape[1]} columns but the image features were fitted "
                f"on {state['embedding_dim']}; use the same image model as at fit time."
            )
        if bool(state.get("scores")) != (scores is not None):
            raise ValueError(
                "The image features were fitted "
                + ("with" if state.get("scores") else "without")
                + " an image score but this call has "
                + ("none" if scores is None else "one")
                + "; pass the same kind of image model as at fit time."
            )
    centre = np.asarray(state["center"])
    scale = np.asarray(state["scale"])
    components = np.asarray(state["components"], dtype=np.float64).reshape(-1, emb.shape[1])

    z = np.zeros_like(emb)
    z[valid] = (emb[valid] - centre) / scale
    columns: dict[str, Any] = {
        "isic_id": frame.get_column("isic_id"),
        "img_missing": missing.astype(np.int8),
    }
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64).ravel()
        if s.shape[0] != n:
            raise ValueError(f"scores has {s.shape[0]} values for {n} rows; pass one per row.")
        score_ok = valid & np.isfinite(s)
        columns["img_score"] = np.where(score_ok, s, np.nan)
        columns["img_score_prank"] = _rank_within(s, codes, score_ok)
    projected = z @ components.T
    for j in range(components.shape[0]):
        columns[f"img_pc{j + 1}"] = np.where(valid, projected[:, j], np.nan)
    # Mean standardised embedding of the patient's *other* usable lesions: one odd
    # lesion must not pull the reference towards itself.
    n_groups = int(codes.max()) + 1 if n else 0
    counts = np.bincount(codes[valid], minlength=n_groups).astype(np.float64)
    # Per-patient sums as one sparse product (np.add.at is ~10x slower at this size).
    member = sparse.csr_matrix(
        (np.ones(int(valid.sum())), (codes[valid], np.flatnonzero(valid))), shape=(n_groups, n)
    )
    sums = np.asarray(member @ z, dtype=np.float64)
    others = counts[codes] - 1.0
    dot = np.empty(n)
    norms = np.empty(n)
    for start in range(0, n, _CHUNK):  # bounded memory on the full 401k-row file
        rows = slice(start, start + _CHUNK)
        zc = z[rows].astype(np.float64)
        reference = (sums[codes[rows]] - zc) / np.maximum(others[rows], 1.0)[:, None]
        dot[rows] = np.einsum("ij,ij->i", zc, reference)
        norms[rows] = np.linalg.norm(zc, axis=1) * np.linalg.norm(reference, axis=1)
    # A lone lesion has no other lesion to differ from: distance 0, as the tabular z is 0.
    cosine = np.where((others > 0) & (norms > _EPS), 1.0 - dot / np.maximum(norms, _EPS), 0.0)
    columns["img_cos_patient"] = np.where(valid, cosine, np.nan)
    columns["img_cos_prank"] = _rank_within(cosine, codes, np.asarray(valid))
    features = pl.DataFrame(columns).with_columns(
        pl.col(pl.Float64).fill_nan(None).cast(pl.Float32)
    )
    state["version"] = STATE_VERSION
    state["columns"] = [c for c in features.columns if c != "isic_id"]
    return features, state


# --------------------------------------------------------------------------- I/O wrapper
#: Parquet key-value metadata written by ``lesionboost embed`` next to the embeddings.
TABLE_MODEL_KEY, TABLE_SHA_KEY = "lesionboost.model", "lesionboost.model_sha256"
_TABLE_OUTPUT_KEY = "lesionboost.output"
#: The numeric precision the table was embedded at ("fp32", "tf32" or "fp16"); tables
#: written before it existed have none and are taken as they are.
TABLE_PRECISION_KEY = "lesionboost.precision"
_PRECISIONS = ("fp32", "tf32", "fp16")


def _file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@functools.lru_cache(maxsize=1)
def _builtin_sha256() -> str:
    """SHA-256 of this lesionboost's built-in embedder (the model that ``None`` names)."""
    from ._builtin import builtin_model_bytes

    return hashlib.sha256(builtin_model_bytes()).hexdigest()


def _table_model(recorded: Mapping[str, Any]) -> Path | None:
    """The ONNX model that wrote an embeddings table: ``None`` for the built-in, else its file.

    ``recorded`` is the table's fingerprint: ``model`` and ``sha256`` from its
    Parquet metadata and ``table``, its path. A model with the SHA-256 of the
    built-in embedder is the built-in; any other must be a file with the
    recorded SHA-256, at the recorded path or, for a relative path, next to
    the table.

    Raises
    ------
    ModelFileError
        The table records no model, or its model is missing or has changed.
    """
    model, sha, table = recorded.get("model"), recorded.get("sha256"), recorded.get("table")
    where = f"The embeddings table {table}" if table else "The embeddings table"
    if isinstance(sha, str) and sha == _builtin_sha256():
        return None
    advice = (
        "Fit with image_model=<the .onnx that made the table> instead (it embeds the training "
        "crops again), or write the table with `lesionboost embed --model <that .onnx>`, which "
        "records the model."
    )
    if not isinstance(model, str) or not isinstance(sha, str):
        raise ModelFileError(
            f"{where} does not record the image model that made it (no {TABLE_MODEL_KEY!r} and "
            f"{TABLE_SHA_KEY!r} Parquet metadata), so crops it does not hold cannot be embedded "
            f"the same way. {advice}"
        )
    if model == "builtin":
        raise ModelFileError(
            f"{where} was made by another version of the built-in embedder (SHA-256 "
            f"{sha[:12]}..., this lesionboost's is {_builtin_sha256()[:12]}...), so new crops "
            "would be embedded differently. Embed the training crops again with `lesionboost "
            "embed`, or fit with image_model=None to embed them with this version."
        )
    candidates = [Path(model)]
    if not Path(model).is_absolute() and table:
        candidates.append(Path(table).parent / model)
    changed = []
    for candidate in candidates:
        if candidate.is_file():
            if _file_sha256(candidate) == sha:
                return candidate.resolve()
            changed.append(str(candidate))
    found = f"{' and '.join(changed)} now has another SHA-256" if changed else "it is not there"
    raise ModelFileError(
        f"{where} was made with the image model {model} (SHA-256 {sha[:12]}...), but {found}; "
        f"new crops must be embedded with that same model. Put the file back, or: {advice}"
    )


class _TableEmbedder:
    """Precomputed embeddings (``lesionboost embed`` output) looked up by ``isic_id``.

    Lets cross-validation and tuning reuse one embedding pass. Ids flagged
    ``image_failed`` count as missing crops. Ids absent from the table (new
    lesions at predict time, or a table of a subset) are embedded from the
    image store with the model that made the table (see :func:`_table_model`),
    so that they get the embedding a full table would have given them; with no
    store they count as missing crops, and so they do, with a warning, when
    that model is unknown or gone.
    """

    def __init__(
        self,
        table: pl.DataFrame,
        *,
        source: str,
        model: str | None,
        sha256: str | None,
        output: str | None = None,
        precision: str | None = None,
    ) -> None:
        if "isic_id" not in table.columns:
            raise ValueError(f"The embeddings table {source} has no isic_id column.")
        self._columns = [c for c in table.columns if c.startswith("emb_")]
        if not self._columns:
            raise ValueError(
                f"The embeddings table {source} has no emb_* columns; write it with "
                "`lesionboost embed`."
            )
        if table.get_column("isic_id").is_duplicated().any():
            raise ValueError(f"The embeddings table {source} repeats isic_ids (shards overlap?).")
        self._table = table
        self.source = source
        self.recorded_model = model
        self.model_path = model or source
        self.sha256 = sha256
        self.output = output or "embedding"
        if precision is not None and precision not in _PRECISIONS:
            raise ValueError(
                f"The embeddings table {source} records {TABLE_PRECISION_KEY}={precision!r}; "
                f"expected one of {_PRECISIONS}. Write it again with `lesionboost embed`."
            )
        self.precision = precision
        self.stats = None

    @classmethod
    def from_parquet(cls, path: Path) -> _TableEmbedder:
        meta = pl.read_parquet_metadata(path)
        return cls(
            pl.read_parquet(path),
            source=str(Path(path).resolve()),
            model=meta.get(TABLE_MODEL_KEY),
            sha256=meta.get(TABLE_SHA_KEY),
            output=meta.get(_TABLE_OUTPUT_KEY),
            precision=meta.get(TABLE_PRECISION_KEY),
        )

    def fingerprint(self) -> dict[str, Any]:
        """The model that made the table, as recorded in the fitted state."""
        return {
            "model": self.recorded_model,
            "sha256": self.sha256,
            "output": self.output,
            "precision": self.precision,
            "table": self.source,
        }

    def _live_embedder(self, n_absent: int, n: int) -> Any:
        """The table's own model as an :class:`OnnxEmbedder`, or None (with a warning)."""
        from ._embedder import OnnxEmbedder

        try:
            model = _table_model(self.fingerprint())
        except ModelFileError as exc:
            warnings.warn(
                f"{n_absent} of {n} lesions are not in the embeddings table and count as "
                f"missing crops: {exc}",
                DataWarning,
                stacklevel=5,
            )
            return None
        # New crops get the embedding the table would have given them: same model, same
        # output, same precision (a table of before precisions were recorded: fp32).
        return OnnxEmbedder(model, output=self.output, precision=self.precision)  # type: ignore[arg-type]

    def embed(
        self,
        store: Any,
        isic_ids: list[str],
        *,
        return_failed: bool = False,
        progress: bool | None = None,
    ) -> Any:
        ids = list(isic_ids)
        wanted = pl.DataFrame({"isic_id": pl.Series(ids, dtype=pl.String)})
        table = self._table.with_columns(pl.lit(True).alias("__in_table"))
        joined = wanted.join(table, on="isic_id", how="left", maintain_order="left")
        present = joined.get_column("__in_table").fill_null(False).to_numpy()
        values = joined.select(self._columns).to_numpy().astype(np.float32)
        failed = ~np.isfinite(values).all(axis=1)
        if "image_failed" in joined.columns:
            failed |= joined.get_column("image_failed").fill_null(True).to_numpy().astype(bool)
        absent = np.flatnonzero(~present)
        if absent.size and store is not None:
            live = self._live_embedder(int(absent.size), len(ids))
            if live is not None:
                fresh, bad = live.embed(
                    store, [ids[i] for i in absent], return_failed=True, progress=progress
                )
                if fresh.size and fresh.shape[1] != values.shape[1]:
                    raise ModelFileError(
                        f"The model that made the embeddings table {self.source} gives "
                        f"{fresh.shape[1]} columns but the table has {values.shape[1]}; the "
                        "table was edited. Write it again with `lesionboost embed`."
                    )
                if fresh.size:
                    values[absent] = fresh
                failed[absent] = bad
                logger.info(
                    "Embedded %d of %d lesions that the table does not hold with %s.",
                    int(absent.size),
                    len(ids),
                    live,
                )
        if failed.any():
            logger.info(
                "%d of %d lesions have no embedding (no usable crop, or absent from the table).",
                int(failed.sum()),
                len(ids),
            )
        values[failed] = np.nan
        return (values, failed) if return_failed else values


def _fitted_options(embedder: Any, recorded: Mapping[str, Any] | None) -> dict[str, Any]:
    """The output and input settings recorded at fit, when ``embedder`` is the fitted model.

    A model file, its bytes or ``None`` (the built-in) with the SHA-256 recorded
    at fit runs exactly as it did then: a model folder's copy of an ONNX file
    that was fitted as ``OnnxEmbedder(path, mean=..., output=...)`` or through
    an embeddings table of another output gets those settings back. Another
    model gets none (and its SHA-256 is refused afterwards).
    """
    if not recorded or not isinstance(recorded.get("sha256"), str):
        return {}
    sha = recorded["sha256"]
    if embedder is None:
        same = sha == _builtin_sha256()
    elif isinstance(embedder, (bytes, bytearray)):
        same = hashlib.sha256(embedder).hexdigest() == sha
    else:
        path = Path(embedder)
        same = path.is_file() and _file_sha256(path) == sha
    if not same:
        return {}
    options: dict[str, Any] = {}
    if isinstance(recorded.get("output"), str):
        options["output"] = recorded["output"]
    if recorded.get("precision") in _PRECISIONS:
        options["precision"] = recorded["precision"]
    config = recorded.get("config")
    if isinstance(config, Mapping):
        for name in ("input_size", "layout", "mean", "std"):
            if config.get(name) is not None:
                value = config[name]
                options[name] = tuple(value) if isinstance(value, list) else value
    return options


def _resolve_embedder(embedder: Any, recorded: Mapping[str, Any] | None = None) -> Any:
    from ._embedder import OnnxEmbedder

    if isinstance(embedder, pl.DataFrame):
        return _TableEmbedder(embedder, source="(in-memory frame)", model=None, sha256=None)
    if isinstance(embedder, (str, os.PathLike)) and Path(embedder).suffix == ".parquet":
        return _TableEmbedder.from_parquet(Path(embedder))
    if isinstance(embedder, bytearray):
        embedder = bytes(embedder)
    if embedder is None or isinstance(embedder, (str, os.PathLike, bytes)):
        return OnnxEmbedder(embedder, **_fitted_options(embedder, recorded))
    if not hasattr(embedder, "embed"):
        raise TypeError(
            f"embedder must be an OnnxEmbedder, an .onnx path, an embeddings .parquet or None "
            f"(built-in), got {type(embedder).__name__}."
        )
    return embedder


def _model_fingerprint(embedder: Any) -> dict[str, Any]:
    if isinstance(embedder, _TableEmbedder):
        return embedder.fingerprint()
    path = getattr(embedder, "model_path", None)
    out: dict[str, Any] = {
        "model": str(Path(path).resolve()) if path is not None else "builtin",
        "sha256": getattr(embedder, "sha256", None),
        "output": getattr(embedder, "output", None),
        "precision": getattr(embedder, "precision", None),
    }
    size, layout = getattr(embedder, "input_size", None), getattr(embedder, "layout", None)
    mean, std = getattr(embedder, "mean", None), getattr(embedder, "std", None)
    if size is not None and layout is not None and mean is not None and std is not None:
        out["config"] = {
            "input_size": int(size),
            "layout": str(layout),
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
        }
    return out


@dataclass(frozen=True)
class PortableImageModel:
    """What predicting with a fitted image-feature state needs besides the state.

    Attributes
    ----------
    embedder : pathlib.Path, bytes or None
        The embedding model: an ONNX file, its bytes, or None for the built-in.
    embedder_data : tuple of (str, pathlib.Path)
        External weight files of that ONNX file: name relative to its folder, path.
    scorer : ImageModels or None
        The :func:`train_embedder` fold models behind ``img_score``.
    """

    embedder: Path | bytes | None
    embedder_data: tuple[tuple[str, Path], ...]
    scorer: ImageModels | None


def _external_data(path: Path) -> tuple[tuple[str, Path], ...]:
    """External weight files that an ONNX model names (relative to its folder)."""
    from .._utils._imports import import_optional

    onnx = import_optional("onnx", purpose="finding an ONNX model's external weight files")
    from onnx import external_data_helper as helper

    model = onnx.load(str(path), load_external_data=False)
    names = sorted(
        {
            helper.ExternalDataInfo(tensor).location
            for tensor in helper._get_all_tensors(model)
            if helper.uses_external_data(tensor)
        }
    )
    files = []
    for name in names:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or not (path.parent / name).is_file():
            raise ModelFileError(
                f"{path} keeps weights in {name!r}, which is not a file in its folder; a model "
                "folder can hold only weights stored next to the model. Save the ONNX model "
                "as one file (onnx.save(model, path, save_as_external_data=False))."
            )
        files.append((name, path.parent / name))
    return tuple(files)


def _fitted_embedder(image_model: Any, recorded: Mapping[str, Any]) -> Path | bytes | None:
    """The embedding model of a state fitted with an ONNX model (not a table), verified.

    Looks for the SHA-256 recorded at fit in the recorded model file, then in
    the files, embedders and bytes that ``image_model`` names now (a loaded
    model names the copy in its folder), then in the built-in embedder.
    """
    model, sha = recorded.get("model"), recorded.get("sha256")
    if not isinstance(sha, str):
        raise ModelFileError(
            "The image features record no SHA-256 of their image model, so it cannot be "
            "checked. Fit with image_model=<an .onnx file> or None (the built-in embedder)."
        )
    sources = list(image_model) if isinstance(image_model, (list, tuple)) else [image_model]
    paths = [Path(model)] if isinstance(model, str) and model != "builtin" else []
    for source in sources:
        if isinstance(source, (bytes, bytearray)):
            if hashlib.sha256(source).hexdigest() == sha:
                return bytes(source)
            continue
        location = getattr(source, "model_path", source)  # an OnnxEmbedder: its file
        if isinstance(location, (str, os.PathLike)) and Path(location).suffix == ".onnx":
            paths.append(Path(location))
    changed = []
    for path in paths:
        if path.is_file():
            if _file_sha256(path) == sha:
                return path.resolve()
            changed.append(str(path))
    if sha == _builtin_sha256():
        return None
    found = (
        f"{' and '.join(changed)} now has another SHA-256"
        if changed
        else "that file is not there"
        if paths
        else "it was not given as a file"
    )
    raise ModelFileError(
        f"The image features were fitted with the image model {model} (SHA-256 {sha[:12]}...), "
        f"but {found}, so it cannot be stored with the model. Put the file back, or fit again "
        "with image_model=<the .onnx file> (or None for the built-in embedder)."
    )


def portable_image_model(image_model: Any, state: Mapping[str, Any]) -> PortableImageModel:
    """Find and verify the models that a fitted image-feature state needs at predict time.

    Parameters
    ----------
    image_model : str, path, bytes, OnnxEmbedder, tuple or None
        The ``image_model`` the state was fitted with.
    state : dict
        The state returned by :func:`image_feature_frame` at fit.

    Returns
    -------
    PortableImageModel

    Raises
    ------
    ModelFileError
        A model cannot be found, or no longer has the SHA-256 recorded at fit;
        the message says what to pass instead.
    """
    recorded = state.get("embedder") or {}
    embedder: Path | bytes | None
    if "table" in recorded:
        embedder = _table_model(recorded)
    else:
        embedder = _fitted_embedder(image_model, recorded)
    data = _external_data(embedder) if isinstance(embedder, Path) else ()
    scorer = None
    if state.get("scorer"):
        from ._train import ImageModels

        scorer = ImageModels.load(state["scorer"])
        expected = state.get("scorer_sha256")
        if expected is not None and [_file_sha256(p) for p in scorer.model_paths] != list(expected):
            raise ModelFileError(
                f"The fold models in {scorer.directory} have changed since the image features "
                "were fitted on them. Put the original files back, or fit again with "
                f"image_model={str(scorer.directory)!r}."
            )
    return PortableImageModel(embedder, data, scorer)


def embedder_at_precision(
    image_model: Any, fitted_state: Mapping[str, Any] | None, precision: str
) -> Any:
    """``image_model`` with its ONNX embedder rebuilt to run at ``precision`` on purpose.

    The fitted embedder's other settings (output, input size, layout, mean and
    std) are kept; the precision is given explicitly, so predicting with it is
    allowed (with a warning) even when the features were fitted at another one.
    ``lesionboost predict --precision`` uses it.

    Parameters
    ----------
    image_model : None, str, path, bytes or a tuple holding one of them
        A fitted :class:`~lesionboost.LesionBoostClassifier`'s ``image_model``
        (``None``: the built-in embedder); a :func:`train_embedder` folder in a
        tuple is kept as it is.
    fitted_state : dict or None
        The estimator's ``image_state_``.
    precision : {"fp32", "tf32", "fp16"}

    Returns
    -------
    The new ``image_model``: an :class:`OnnxEmbedder` (in a tuple where
    ``image_model`` was one).

    Raises
    ------
    ValueError
        For an unknown precision, or an embeddings table (``.parquet``), whose
        precision was fixed when it was made.
    TypeError
        For an embedder object: build it with ``precision=`` yourself.

    Examples
    --------
    >>> embedder_at_precision(None, None, "tf32").precision
    'tf32'
    """
    from ._embedder import OnnxEmbedder

    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {list(_PRECISIONS)}, got {precision!r}.")
    recorded = None if fitted_state is None else fitted_state.get("embedder")
    sources = list(image_model) if isinstance(image_model, (list, tuple)) else [image_model]

    def rebuilt(source: Any) -> Any:
        if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
            return source  # fold models of train_embedder(): no precision of their own
        if isinstance(source, (str, os.PathLike)) and Path(source).suffix == ".parquet":
            raise ValueError(
                f"The image features come from the embeddings table {source}, made at the "
                "precision it records; embed the crops again at the precision wanted "
                "(lesionboost embed --precision) instead."
            )
        if source is not None and not isinstance(source, (str, os.PathLike, bytes)):
            raise TypeError(
                f"image_model is a {type(source).__name__}; build it with precision= yourself "
                "(OnnxEmbedder(<model>, precision=...))."
            )
        options = {**_fitted_options(source, recorded), "precision": precision}
        return OnnxEmbedder(source, **options)

    out = [rebuilt(s) for s in sources]
    return tuple(out) if isinstance(image_model, (list, tuple)) else out[0]


def _check_precision(expected: Mapping[str, Any], now: Mapping[str, Any], model: Any) -> None:
    """Refuse embeddings of another precision than the fitted ones, bar an explicit override.

    The override is an :class:`OnnxEmbedder` built with ``precision=`` given;
    a model or table that records no precision (written before precisions were
    recorded) is taken as it is.
    """
    fitted, given = expected.get("precision"), now.get("precision")
    if not fitted or not given or fitted == given:
        return
    if getattr(model, "_precision_given", False):
        logger.warning(
            "Predicting with %s image embeddings from a model fitted on %s ones, as asked "
            "(OnnxEmbedder(precision=%r)).",
            given,
            fitted,
            given,
        )
        return
    if now.get("table"):
        source = f"the embeddings table {now['table']} holds {given} embeddings"
        fix = (
            f"Embed the crops again at {fitted} (OnnxEmbedder(precision={fitted!r})) or drop "
            "the table to let the model embed them"
        )
    else:
        source = f"the image model {now.get('model')} runs at {given}"
        fix = f"Pass image_model=OnnxEmbedder(<the model>, precision={fitted!r}) to match"
    raise ValueError(
        f"The image features were fitted on {fitted} embeddings but {source}; embeddings of "
        "another precision shift every image feature (CUDA's TF32 moved the built-in "
        f"embedding by up to 0.015). {fix}, or pass OnnxEmbedder(<the model>, precision="
        f"{given!r}) explicitly to predict with {given} embeddings on purpose."
    )


def _align_scores(frame: pl.DataFrame, oof_scores: Any) -> np.ndarray:
    """Scores aligned with ``frame``: an array in row order, or a mapping isic_id -> score."""
    if isinstance(oof_scores, Mapping):
        return np.array([oof_scores.get(i, np.nan) for i in frame["isic_id"].to_list()], float)
    if isinstance(oof_scores, pl.DataFrame):
        table = oof_scores
        joined = frame.select("isic_id").join(
            table.select("isic_id", pl.col(table.columns[-1]).alias("s")),
            on="isic_id",
            how="left",
            maintain_order="left",
        )
        return joined.get_column("s").cast(pl.Float64).to_numpy()
    values = np.asarray(oof_scores, dtype=np.float64).ravel()
    if values.shape[0] != frame.height:
        raise ValueError(
            f"oof_scores has {values.shape[0]} values but the metadata has {frame.height} rows; "
            "pass one score per row (or a mapping isic_id -> score)."
        )
    return values


def image_feature_frame(
    metadata: Any,
    store: ImageStore | str | os.PathLike[str] | None,
    *,
    embedder: Any = None,
    oof_scores: Any = None,
    scorer: Any = None,
    fitted_state: Mapping[str, Any] | None = None,
    n_components: int = 8,
    progress: bool | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Embed the crops of ``metadata`` and return the image feature columns keyed by ``isic_id``.

    Parameters
    ----------
    metadata : polars.DataFrame or pandas.DataFrame
        Lesions to featurise; needs ``isic_id`` and ``patient_id``.
    store : ImageStore or path
        HDF5 crops keyed by ``isic_id`` (may be None with precomputed embeddings).
    embedder : OnnxEmbedder, path, polars.DataFrame or None, default=None
        Label-free embeddings: an ``.onnx`` model or an :class:`OnnxEmbedder`
        (None: the built-in embedder), or precomputed embeddings -- a
        ``lesionboost embed`` Parquet file or a frame with ``isic_id`` and
        ``emb_*`` columns -- so that CV folds and tuning trials embed once.
        Lesions a table does not hold (new crops at predict time) are embedded
        from ``store`` with the model recorded in the table's metadata (the
        built-in embedder, or the ``.onnx`` file with the recorded SHA-256).
        With ``fitted_state``, a model file with the SHA-256 it was fitted with
        runs with the output and input settings recorded at fit.
        A :class:`~lesionboost.image.ImageModels` (from :func:`train_embedder`)
        or its folder is taken as ``scorer`` and the built-in model embeds; a
        list or tuple may hold one embedding source and one such folder.
    oof_scores : array-like, mapping or DataFrame, optional
        Out-of-fold image scores of the training rows (array in row order, or
        ``isic_id -> score``), e.g. ``train_embedder(...).oof_scores``.
    scorer : ImageModels or path to its folder, optional
        Fold models of :func:`train_embedder`. A row whose ``isic_id`` has an
        out-of-fold score gets it; any other row gets the mean of the fold
        models' logits (the test-time rule), so validation rows never see a
        model that trained on their patient.
    fitted_state : dict, optional
        The state returned when fitting on the training frame; None fits.
    n_components : int, default=8
        Principal components of the embedding (when fitting).
    progress : bool, optional
        Progress bars (default: only on a terminal).

    Returns
    -------
    features : polars.DataFrame
        ``isic_id`` and the image columns (see the module docstring), one row
        per row of ``metadata``, in its order.
    state : dict
        JSON-safe fitted state to pass back as ``fitted_state``.

    Raises
    ------
    SchemaError
        ``metadata`` has no ``isic_id`` column, or an empty or repeated
        ``isic_id`` (checked before anything is read or embedded).

    Examples
    --------
    >>> from lesionboost import simulate_slice3d
    >>> from lesionboost.image import image_feature_frame
    >>> from lesionboost.simulate import write_slice3d
    >>> sim = simulate_slice3d(6, n_test_patients=2, images=True, seed=0)
    >>> paths = write_slice3d(sim, "data")
    >>> features, state = image_feature_frame(sim.train, paths["train_images"])
    >>> features.height == sim.train.height, "img_missing" in features.columns
    (True, True)
    >>> test_features, _ = image_feature_frame(sim.test, paths["test_images"], fitted_state=state)
    >>> test_features.height == sim.test.height
    True
    """
    from ._train import ImageModels

    frame = to_polars(metadata, what="metadata")
    check_unique_ids(frame, what="image_feature_frame")

    def is_scorer(source: Any) -> bool:
        return isinstance(source, ImageModels) or (
            isinstance(source, (str, os.PathLike)) and Path(source).is_dir()
        )

    # One image_model argument may name both sources, e.g. (embeddings, fold models).
    sources = list(embedder) if isinstance(embedder, (list, tuple)) else [embedder]
    scorers = [s for s in sources if s is not None and is_scorer(s)]
    embedders = [s for s in sources if s is not None and not is_scorer(s)]
    if len(scorers) > 1 or len(embedders) > 1 or (scorers and scorer is not None):
        raise ValueError(
            "Pass at most one embedding source (.onnx, embeddings .parquet, OnnxEmbedder) and "
            f"one train_embedder() folder; got {sources!r} and scorer={scorer!r}."
        )
    embedder = embedders[0] if embedders else None
    scorer = scorers[0] if scorers else scorer
    if scorer is None and fitted_state is not None and fitted_state.get("scorer"):
        scorer = fitted_state["scorer"]
    if scorer is not None and not isinstance(scorer, ImageModels):
        scorer = ImageModels.load(scorer)
    if store is not None and not isinstance(store, ImageStore):
        store = ImageStore(store)
    model = _resolve_embedder(
        embedder, None if fitted_state is None else fitted_state.get("embedder")
    )
    if fitted_state is None and isinstance(model, _TableEmbedder):
        try:  # said at fit, not after a long tuning run when the model is saved
            _table_model(model.fingerprint())
        except ModelFileError as exc:
            warnings.warn(
                f"{exc} Until then, new lesions count as missing crops and save_model refuses "
                "the fitted model.",
                DataWarning,
                stacklevel=2,
            )
    if store is None and (not isinstance(model, _TableEmbedder) or scorer is not None):
        raise ValueError(
            "image_feature_frame needs the image file (store) unless the embeddings are "
            "precomputed and no image scorer is used."
        )
    fingerprint = _model_fingerprint(model)
    if fitted_state is not None:
        expected = fitted_state.get("embedder", {})
        if (
            expected.get("sha256")
            and fingerprint["sha256"]
            and (expected["sha256"] != fingerprint["sha256"])
        ):
            raise ValueError(
                f"The image model ({fingerprint['model'] or fingerprint.get('table')}) differs "
                "from the one the image features were fitted with "
                f"({expected.get('model') or expected.get('table')}); pass the same model."
            )
        _check_precision(expected, fingerprint, model)
    ids = frame.get_column("isic_id").cast(pl.String).to_list()
    embeddings, failed = model.embed(store, ids, return_failed=True, progress=progress)
    scores = None
    if oof_scores is not None:
        scores = _align_scores(frame, oof_scores)
    if scorer is not None:
        known = scorer.oof_table()
        aligned = _align_scores(frame, known)
        need = ~np.isfinite(aligned) & ~failed
        if scores is None:
            scores = aligned
        else:
            need &= ~np.isfinite(scores)
            scores = np.where(np.isfinite(scores), scores, aligned)
        if need.any():
            index = np.flatnonzero(need)
            scores[index] = scorer.score(store, [ids[i] for i in index], progress=progress)
    features, state = image_features(
        frame,
        embeddings,
        failed=failed,
        scores=scores,
        fitted_state=fitted_state,
        n_components=n_components,
    )
    state["embedder"] = fingerprint
    state["scorer"] = str(scorer.directory) if scorer is not None else None
    if fitted_state is None:  # what save_model checks before it copies the fold models
        state["scorer_sha256"] = (
            None if scorer is None else [_file_sha256(Path(p)) for p in scorer.model_paths]
        )
    return features, state

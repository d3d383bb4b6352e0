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

import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy import sparse

from .._utils._frame import to_polars
from ..exceptions import DataWarning, ModelFileError, OptionalDependencyError, SchemaError
from ..io import ImageStore
from ._sources import (
    _PRECISIONS,
    TABLE_PRECISION_KEY,
    _check_precision,
    _file_sha256,
    _model_fingerprint,
    _resolve_embedder,
    _table_model,
    _TableEmbedder,
)

__all__ = ["image_features", "image_feature_frame", "check_unique_ids", "check_image_model"]

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


def check_image_model(source: str | os.PathLike[str]) -> None:
    """Open an image-model path as fitting would, so that a bad one fails before any work.

    ``source`` is what ``LesionBoostClassifier(image_model=...)`` takes as a path: a
    ``train_embedder`` folder, an embeddings table (``.parquet``, from
    ``lesionboost embed``) or an ONNX model file.

    Raises
    ------
    ValueError
        ``source`` is none of these; the message names it and what it should be.
    """
    from ._embedder import OnnxEmbedder
    from ._train import ImageModels

    path = Path(source)
    opener: Callable[[Path], object]
    if path.is_dir():
        kind, opener = "a train_embedder folder", ImageModels.load
    elif path.suffix == ".parquet":
        kind, opener = "an embeddings table (lesionboost embed)", _check_embeddings_table
    else:
        kind, opener = "an ONNX image model", OnnxEmbedder
    try:
        opener(path)
    except OptionalDependencyError:
        raise
    except Exception as exc:  # onnxruntime and polars raise their own exception types
        raise ValueError(
            f"{path} could not be opened as {kind} ({type(exc).__name__}: {exc}); pass an "
            ".onnx file, an embeddings .parquet written by `lesionboost embed`, or a "
            "train_embedder folder."
        ) from exc


def _check_embeddings_table(path: Path) -> None:
    """What fitting needs of an embeddings table, read from its header and ids only."""
    columns = pl.read_parquet_schema(path)  # tables can be large
    if "isic_id" not in columns or not any(c.startswith("emb_") for c in columns):
        raise ValueError("it needs an isic_id column and emb_* columns")
    ids = pl.scan_parquet(path).select(pl.col("isic_id").is_duplicated().any())
    if ids.collect().item():
        raise ValueError("it repeats isic_ids (overlapping shards?)")
    precision = pl.read_parquet_metadata(path).get(TABLE_PRECISION_KEY)
    if precision is not None and precision not in _PRECISIONS:
        raise ValueError(f"it records {TABLE_PRECISION_KEY}={precision!r}")

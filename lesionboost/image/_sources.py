"""Where a fitted model's embeddings come from, and the checks that they are the fitted ones.

An embedding source is an ONNX model (a file, its bytes, an :class:`OnnxEmbedder`
or ``None`` for the built-in embedder) or a precomputed ``lesionboost embed``
table (:class:`_TableEmbedder`, with the Parquet keys ``TABLE_*_KEY`` naming
the model, its SHA-256, output and precision); :func:`_resolve_embedder` turns
an ``image_model`` into one, :func:`_model_fingerprint` records it in the
fitted state, :func:`_table_model` finds and verifies a table's model,
:func:`_fitted_options` and :func:`embedder_at_precision` rebuild the fitted
model's settings, and :func:`_check_precision` refuses embeddings of another
precision than the fitted ones.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..exceptions import DataWarning, ModelFileError

__all__ = [
    "embedder_at_precision",
    "TABLE_MODEL_KEY",
    "TABLE_SHA_KEY",
    "TABLE_PRECISION_KEY",
]

logger = logging.getLogger(__name__)

#: Parquet key-value metadata written by ``lesionboost embed`` next to the embeddings.
TABLE_MODEL_KEY, TABLE_SHA_KEY = "lesionboost.model", "lesionboost.model_sha256"
_TABLE_OUTPUT_KEY = "lesionboost.output"
#: The numeric precision the table was embedded at ("fp32", "tf32" or "fp16"); a table
#: without it (one written by other tools) is taken as it is.
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
        failed = np.asarray(~np.isfinite(values).all(axis=1), dtype=bool)
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

"""Data frames in, numeric matrix out: how the ensemble reads categorical columns.

Text columns (polars ``String``/``Categorical``/``Enum``, pandas ``object``,
``string`` or ``category``) are replaced by integer codes with the same
convention as :class:`~lesionboost.features.LesionFeaturizer`: 0 = missing,
1 = a level not seen at fit, 2.. = the levels seen at fit, sorted. Numeric
columns named in ``categorical_features`` must already hold such codes
(non-negative integers, NaN for missing). Column positions, not names, key the
levels, so frames whose column names are not strings work too.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["frame_kind", "encode_frame", "check_codes", "column_position"]


def frame_kind(X: Any) -> str | None:
    """``"polars"``, ``"pandas"`` or ``None`` (anything else: array-likes)."""
    module = type(X).__module__
    if module.startswith("polars") and hasattr(X, "columns"):
        return "polars"
    if module.startswith("pandas") and hasattr(X, "columns"):
        return "pandas"
    return None


def _is_text_dtype(kind: str, dtype: Any) -> bool:
    if kind == "polars":
        import polars as pl

        return dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum))
    import pandas as pd

    return (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or isinstance(dtype, pd.StringDtype)
    )


def check_codes(values: np.ndarray, name: str) -> None:
    """Raise when a numeric categorical column holds negative or fractional codes."""
    finite = values[~np.isnan(values)]
    bad = finite[(finite < 0) | (finite != np.floor(finite))]
    if bad.size:
        raise ValueError(
            f"Categorical column {name} must hold non-negative integer codes (or missing), "
            f"got {bad[:3].tolist()}. Pass text columns as strings, or encode levels as "
            "0, 1, 2, ..."
        )


def column_position(spec: Any, names: list[str]) -> int:
    """Position of a ``categorical_features`` entry (a name or an index) among ``names``."""
    if isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
        if not 0 <= int(spec) < len(names):
            raise ValueError(
                f"categorical_features index {spec} is out of range for X with "
                f"{len(names)} columns."
            )
        return int(spec)
    if str(spec) not in names:
        raise ValueError(
            f"categorical_features names column {str(spec)!r}, which X does not have; "
            f"X has {names[:5]}{' ...' if len(names) > 5 else ''}."
        )
    return names.index(str(spec))


def _categorical_positions(spec: Any, names: list[str], text: list[int]) -> list[int]:
    if spec == "auto":
        return list(text)
    if spec is None:
        cats: list[int] = []
    elif isinstance(spec, str):
        raise ValueError(
            f"categorical_features must be 'auto', None or a list of columns, got {spec!r}."
        )
    else:
        cats = [column_position(c, names) for c in spec]
    stray = [names[i] for i in text if i not in cats]
    if stray:
        raise ValueError(
            f"Column(s) {stray[:5]} hold text but are not in categorical_features={spec!r}; "
            "list them there or drop them."
        )
    return cats


def encode_frame(
    X: Any,
    kind: str,
    *,
    spec: Any,
    levels: dict[int, list[str]] | None,
    owner: str = "GBDTEnsembleClassifier",
) -> tuple[Any, list[int], dict[int, list[str]]]:
    """Replace text columns of a polars or pandas frame by integer codes.

    Parameters
    ----------
    X : polars.DataFrame or pandas.DataFrame
    kind : {"polars", "pandas"}
    spec : "auto", None or sequence of str or int
        ``categorical_features`` of the estimator (used when fitting).
    levels : dict of int -> list of str, or None
        Levels learned at fit, by column position; ``None`` learns them.
    owner : str
        Estimator name for messages.

    Returns
    -------
    frame, categorical positions (when fitting), levels by position
    """
    columns = list(X.columns)
    names = [str(c) for c in columns]
    text = [i for i, c in enumerate(columns) if _is_text_dtype(kind, X[c].dtype)]
    if levels is None:
        cats = _categorical_positions(spec, names, text)
        levels = {}
        for position in text:
            series = X[columns[position]]
            if kind == "polars":
                levels[position] = series.cast(str).drop_nulls().unique().sort().to_list()
            else:
                levels[position] = sorted(series.dropna().astype(str).unique().tolist())
    else:
        cats = []
        stray = [names[i] for i in text if i not in levels]
        lost = [names[i] for i in levels if i < len(names) and i not in text]
        if lost:
            raise ValueError(
                f"Column(s) {lost[:5]} held text when {owner} was fitted but are numeric now; "
                "pass the same columns as in fit."
            )
        if stray:
            raise ValueError(
                f"Column(s) {stray[:5]} hold text, but they were not text columns when "
                f"{owner} was fitted; pass the same columns as in fit."
            )
    if kind == "polars":
        import polars as pl

        exprs = []
        for position, name in enumerate(names):
            dtype = X.schema[name]
            if position in text:
                mapping = {lv: float(i + 2) for i, lv in enumerate(levels[position])}
                # replace_strict sends null to its default too, so missing is set first
                code = pl.col(name).cast(pl.String)
                exprs.append(
                    pl.when(code.is_null())
                    .then(pl.lit(0.0, dtype=pl.Float32))
                    .otherwise(code.replace_strict(mapping, default=1.0, return_dtype=pl.Float32))
                    .alias(name)
                )
            elif dtype.is_numeric() or dtype == pl.Boolean:
                exprs.append(pl.col(name).cast(pl.Float32))
            else:
                raise ValueError(
                    f"Column {name!r} has dtype {dtype}, which is neither numeric nor text; "
                    "convert or drop it."
                )
        return X.select(exprs), cats, levels
    import pandas as pd

    out = {}
    for position, column in enumerate(columns):
        series = X[column]
        if position in text:
            mapping = {lv: float(i + 2) for i, lv in enumerate(levels[position])}
            values = series.astype(object).where(series.notna(), None)
            out[column] = values.map(
                lambda v, m=mapping: 0.0 if v is None else m.get(str(v), 1.0)
            ).astype(np.float32)
        else:
            out[column] = series
    return pd.DataFrame(out, index=X.index), cats, levels

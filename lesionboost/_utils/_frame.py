"""Conversion at the boundary: pandas or polars in, polars inside."""

from __future__ import annotations

from typing import Any

import polars as pl

__all__ = ["to_polars"]


def to_polars(frame: Any, *, what: str = "X") -> pl.DataFrame:
    """Return ``frame`` as a polars DataFrame (pandas and polars accepted, lazy frames collected).

    Raises
    ------
    TypeError
        ``frame`` is not a data frame; the message says what to pass instead.
    """
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    module = type(frame).__module__
    if module.startswith("pandas"):
        import pandas as pd

        if isinstance(frame, pd.DataFrame):
            frame = frame.copy()
            frame.columns = [str(c) for c in frame.columns]
            # Categorical and object columns become plain strings so levels compare equal;
            # an object column holding only None/NaN carries no type at all and becomes a
            # column of nulls, which numeric and categorical checks both accept.
            empty = []
            for name in frame.columns:
                dtype = frame[name].dtype
                if pd.api.types.is_object_dtype(dtype) and frame[name].isna().all():
                    empty.append(name)
                elif isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(dtype):
                    frame[name] = frame[name].astype("string")
            converted = pl.from_pandas(frame.drop(columns=empty))
            nulls = [pl.lit(None, dtype=pl.Null).alias(name) for name in empty]
            return converted.with_columns(nulls).select(frame.columns) if empty else converted
    raise TypeError(
        f"{what} must be a polars or pandas DataFrame of SLICE-3D metadata, got "
        f"{type(frame).__name__}. Read files with lesionboost.read_metadata()."
    )

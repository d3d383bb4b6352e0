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
            # Categorical and object columns become plain strings so levels compare equal.
            for name in frame.columns:
                dtype = frame[name].dtype
                if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_object_dtype(dtype):
                    frame[name] = frame[name].astype("string")
            return pl.from_pandas(frame)
    raise TypeError(
        f"{what} must be a polars or pandas DataFrame of SLICE-3D metadata, got "
        f"{type(frame).__name__}. Read files with lesionboost.read_metadata()."
    )

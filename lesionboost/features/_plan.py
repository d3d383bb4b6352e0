"""The lazy polars plan behind :class:`lesionboost.LesionFeaturizer`.

One query, in three parts:

1. ``prepared`` (cached, computed once): the cleaned inputs (numerics as
   Float64 with NaN/inf as null, categoricals as strings), one integer key per
   grouping (patient, patient x location, patient x site), the group sizes and
   the derived lesion attributes;
2. branches that each select a slice of the window expressions (z-scores,
   ranks, counts) from ``prepared``, stacked side by side with a parallel
   horizontal concat -- inside one projection polars evaluates window
   expressions one after the other, so the branches are what lets both cores
   work; the raw, code and derived outputs form one more branch;
3. the outlier summaries, which read the patient z-scores of every branch, and
   the output selection in the documented order.

Integer keys hash faster than strings; the per-column count of non-missing
values is only computed for columns that hold nulls in the frame at hand (the
others use the shared group size).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import polars as pl

from ..schema import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS
from ._derived import DERIVED_FEATURES, OUTLIER_COLUMNS

__all__ = ["GROUPINGS", "output_names", "build_plan", "z_name", "rank_name"]

#: Grouping name -> partition keys.
GROUPINGS: dict[str, tuple[str, ...]] = {
    "patient": ("patient_id",),
    "patient_location": ("patient_id", "tbp_lv_location_simple"),
    "patient_site": ("patient_id", "anatom_site_general"),
}

#: Feature group -> the groupings it produces z-scores and ranks for.
_GROUP_GROUPINGS: dict[str, tuple[str, ...]] = {
    "patient": ("patient",),
    "region": ("patient_location", "patient_site"),
}

COUNT_FEATURES: tuple[str, ...] = (
    "n_lesions_patient",
    "n_lesions_patient_site",
    "n_lesions_patient_location",
    "area_sum_patient",
    "area_sum_patient_site",
)
OUTLIER_FEATURES: tuple[str, ...] = (
    "ud_count_abs_z_gt",
    "ud_max_abs_z",
    "ud_std_abs_z",
    "outlier_score",
)
_AREA = "tbp_lv_areaMM2"


def z_name(column: str, grouping: str) -> str:
    """Name of the z-score of ``column`` within ``grouping``."""
    return f"{column}__z_{grouping}"


def rank_name(column: str, grouping: str) -> str:
    """Name of the percentile rank of ``column`` within ``grouping``."""
    return f"{column}__rank_{grouping}"


def _size_name(grouping: str) -> str:
    return f"__n_{grouping}"


def _numeric_columns(groups: Sequence[str], extra: Sequence[str]) -> list[str]:
    columns = [*NUMERIC_COLUMNS, *extra]
    if "derived" in groups:
        columns += [d.name for d in DERIVED_FEATURES]
    return columns


def _ranked(columns: Sequence[str], extra: Sequence[str], rank_columns: str) -> list[str]:
    if rank_columns == "all":
        return list(columns)
    if rank_columns == "raw":
        return [c for c in columns if c in NUMERIC_COLUMNS or c in extra]
    if rank_columns == "key":
        return [c for c in columns if c in OUTLIER_COLUMNS or c in extra]
    return []


def _groupings(groups: Sequence[str]) -> list[str]:
    return [g for group in groups for g in _GROUP_GROUPINGS.get(group, ())]


def output_names(*, groups: Sequence[str], extra: Sequence[str], rank_columns: str) -> list[str]:
    """Output columns for the given parameters, in order (independent of the data)."""
    numeric = _numeric_columns(groups, extra)
    names = [*NUMERIC_COLUMNS, *extra, *CATEGORICAL_COLUMNS]
    names += [d.name for d in DERIVED_FEATURES] if "derived" in groups else []
    ranked = _ranked(numeric, extra, rank_columns)
    for grouping in _groupings(groups):
        names += [z_name(c, grouping) for c in numeric]
        names += [rank_name(c, grouping) for c in ranked]
    if "counts" in groups:
        names += COUNT_FEATURES
    if "outlier" in groups:
        names += OUTLIER_FEATURES
    return names


def _nullable(frame: pl.DataFrame, columns: Iterable[str]) -> set[str]:
    """Raw numeric columns holding a null, NaN or inf in ``frame``."""
    columns = list(columns)
    if not columns or frame.height == 0:
        return set()
    probes = []
    for name in columns:
        col = pl.col(name)
        if frame.schema[name].is_float():
            probes.append((col.is_null() | ~col.is_finite()).any().alias(name))
        else:
            probes.append(col.is_null().any().alias(name))
    flags = frame.select(probes).row(0, named=True)
    return {name for name, flag in flags.items() if flag}


#: Largest finite Float32: derived products of large (accepted) inputs are computed in
#: Float64 and clipped here, so every feature stays finite.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _as_float32(name: str) -> pl.Expr:
    return pl.col(name).clip(-_FLOAT32_MAX, _FLOAT32_MAX).cast(pl.Float32)


def _z(column: str, grouping: str, *, nullable: bool, eps: float) -> pl.Expr:
    key = _key_name(grouping)
    x = pl.col(column)
    # Sample SD is null for a group with one value: z is defined as 0 there.
    z = ((x - x.mean().over(key)) / (x.std().over(key) + eps)).fill_null(0.0)
    if nullable:
        z = pl.when(x.is_not_null()).then(z)
    return z.cast(pl.Float32).alias(z_name(column, grouping))


def _rank(column: str, grouping: str, *, nullable: bool) -> pl.Expr:
    key = _key_name(grouping)
    x = pl.col(column)
    n = x.count().over(key) if nullable else pl.col(_size_name(grouping))
    rank = pl.when(n > 1).then((x.rank("average").over(key) - 1.0) / (n - 1.0)).otherwise(0.5)
    if nullable:
        rank = pl.when(x.is_not_null()).then(rank)
    return rank.cast(pl.Float32).alias(rank_name(column, grouping))


def _key_name(grouping: str) -> str:
    return f"__key_{grouping}"


def _group_keys() -> list[pl.Expr]:
    """One integer key per grouping (hashing one integer beats hashing strings)."""

    def code(name: str) -> pl.Expr:
        # Categorical codes (process-global UInt32 in polars 2) are only compared within
        # this query, so their values never leave it; 0 stands for missing.
        physical = pl.col(name).cast(pl.String).cast(pl.Categorical).to_physical()
        return (physical.cast(pl.UInt64) + 1).fill_null(0)

    patient = code("patient_id")
    return [
        patient.alias(_key_name("patient")),
        (patient * 2**32 + code("tbp_lv_location_simple")).alias(_key_name("patient_location")),
        (patient * 2**32 + code("anatom_site_general")).alias(_key_name("patient_site")),
    ]


def _branches(exprs: list[tuple[pl.Expr, float]], budget: float) -> list[list[pl.Expr]]:
    """Cut a list of (expression, cost) into consecutive chunks of about ``budget``."""
    chunks: list[list[pl.Expr]] = [[]]
    spent = 0.0
    for expr, cost in exprs:
        if chunks[-1] and spent + cost > budget:
            chunks.append([])
            spent = 0.0
        chunks[-1].append(expr)
        spent += cost
    return [c for c in chunks if c]


def _clean_numeric(name: str) -> pl.Expr:
    x = pl.col(name).cast(pl.Float64)
    return pl.when(x.is_finite()).then(x).alias(name)


def _category_codes(name: str, levels: Sequence[str]) -> pl.Expr:
    text = pl.col(name)
    codes = text.replace_strict(
        list(levels), list(range(2, len(levels) + 2)), default=1, return_dtype=pl.Int32
    )
    return pl.when(text.is_null()).then(pl.lit(0, dtype=pl.Int32)).otherwise(codes).alias(name)


# Relative cost of a rank and a z-score (a sort per group against two aggregations),
# and the cost of one branch of the plan. Window expressions over the same keys run
# one after the other inside a polars projection, so the plan splits them into
# branches that polars evaluates in parallel and stacks side by side.
_RANK_COST = 4.0
_BRANCH_BUDGET = 48.0


def build_plan(
    frame: pl.DataFrame,
    *,
    groups: Sequence[str],
    extra: Sequence[str],
    rank_columns: str,
    eps: float,
    z_threshold: float,
    category_maps: Mapping[str, Sequence[str]],
) -> pl.LazyFrame:
    """The lazy query computing every output column of :func:`output_names`."""
    raw = [*NUMERIC_COLUMNS, *extra]
    nullable = _nullable(frame, raw)
    prepared = frame.lazy().select(
        *[_clean_numeric(c) for c in raw],
        *[pl.col(c).cast(pl.String) for c in CATEGORICAL_COLUMNS],
        *_group_keys(),
    )
    if "derived" in groups:
        prepared = prepared.with_columns(d.polars() for d in DERIVED_FEATURES)
        nullable |= {d.name for d in DERIVED_FEATURES if nullable.intersection(d.inputs())}
    prepared = prepared.with_columns(
        pl.len().over(_key_name(g)).cast(pl.Float64).alias(_size_name(g)) for g in GROUPINGS
    ).cache()

    numeric = _numeric_columns(groups, extra)
    ranked = set(_ranked(numeric, extra, rank_columns))
    groupings = _groupings(groups)
    outlier = "outlier" in groups
    # The outlier summaries need patient z-scores even when "patient" is not output.
    z_groupings = groupings if (not outlier or "patient" in groupings) else ["patient", *groupings]

    categorical = set(CATEGORICAL_COLUMNS)
    base = [*raw, *CATEGORICAL_COLUMNS]
    if "derived" in groups:
        base += [d.name for d in DERIVED_FEATURES]
    parts = [
        prepared.select(
            _category_codes(name, category_maps[name]) if name in categorical else _as_float32(name)
            for name in base
        )
    ]
    for grouping in z_groupings:
        window = [(_z(c, grouping, nullable=c in nullable, eps=eps), 1.0) for c in numeric]
        if grouping in groupings:
            window += [
                (_rank(c, grouping, nullable=c in nullable), _RANK_COST)
                for c in numeric
                if c in ranked
            ]
        parts += [prepared.select(chunk) for chunk in _branches(window, _BRANCH_BUDGET)]
    if "counts" in groups:
        area = pl.col(_AREA)
        parts.append(
            prepared.select(
                pl.col(_size_name("patient")).cast(pl.Float32).alias("n_lesions_patient"),
                pl.col(_size_name("patient_site")).cast(pl.Float32).alias("n_lesions_patient_site"),
                pl.col(_size_name("patient_location"))
                .cast(pl.Float32)
                .alias("n_lesions_patient_location"),
                area.sum().over(_key_name("patient")).cast(pl.Float32).alias("area_sum_patient"),
                area.sum()
                .over(_key_name("patient_site"))
                .cast(pl.Float32)
                .alias("area_sum_patient_site"),
            )
        )
    plan = pl.concat(parts, how="horizontal", parallel=True)

    if outlier:
        # The z-scores are Float32 already; summarising them in Float32 is exact
        # enough for counts, maxima and spreads, and saves a cast per column.
        zs = [pl.col(z_name(c, "patient")) for c in numeric]
        absz = [z.abs() for z in zs]
        key = [pl.col(z_name(c, "patient")) for c in OUTLIER_COLUMNS]
        mean_abs = pl.mean_horizontal(absz)
        mean_sq = pl.mean_horizontal([z * z for z in zs])
        plan = plan.with_columns(
            pl.sum_horizontal([a > z_threshold for a in absz])
            .cast(pl.Float32)
            .alias("ud_count_abs_z_gt"),
            pl.max_horizontal(absz).alias("ud_max_abs_z"),
            (mean_sq - mean_abs * mean_abs)
            .clip(lower_bound=0.0)
            .sqrt()
            .cast(pl.Float32)
            .alias("ud_std_abs_z"),
            # Over the key columns the lesion has (missing ones are skipped, as
            # in ud_std_abs_z); 0 when it has none.
            pl.mean_horizontal([k * k for k in key])
            .sqrt()
            .fill_null(0.0)
            .cast(pl.Float32)
            .alias("outlier_score"),
        )
    return plan.select(output_names(groups=groups, extra=extra, rank_columns=rank_columns))

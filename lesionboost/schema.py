"""The SLICE-3D column contract: names, dtypes, categorical levels and leak columns.

The Kaggle ISIC 2024 ``train-metadata.csv`` has 55 columns and ``test-metadata.csv``
the 44 of them that are not train-only. :func:`validate` checks a polars frame
against that contract and casts it to the canonical dtypes; it is what
:func:`lesionboost.read_metadata` runs on every file.

Train-only ("leak") columns -- ``target``, ``lesion_id``, ``iddx_*``, ``mel_*`` and
``tbp_lv_dnn_lesion_confidence`` -- describe the diagnosis or how the lesion was
picked for biopsy; they are absent from the test file and must never become
model features.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import polars as pl

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

from .exceptions import DataWarning, SchemaError

__all__ = [
    "SCHEMA_VERSION",
    "TRAIN_COLUMNS",
    "TEST_COLUMNS",
    "LEAK_COLUMNS",
    "ID_COLUMNS",
    "NUMERIC_COLUMNS",
    "CATEGORICAL_COLUMNS",
    "CATEGORY_LEVELS",
    "LOCATION_TO_SIMPLE",
    "SIMPLE_TO_SITE",
    "validate",
    "split_xy",
]

#: Bumped whenever the column contract changes; saved with every model.
SCHEMA_VERSION = 1

_F = pl.Float64
_S = pl.String
_I = pl.Int64

#: Every column of ``train-metadata.csv`` in file order, with its canonical dtype.
TRAIN_COLUMNS: dict[str, PolarsDataType] = {
    "isic_id": _S,
    "target": _I,
    "patient_id": _S,
    "age_approx": _F,
    "sex": _S,
    "anatom_site_general": _S,
    "clin_size_long_diam_mm": _F,
    "image_type": _S,
    "tbp_tile_type": _S,
    "tbp_lv_A": _F,
    "tbp_lv_Aext": _F,
    "tbp_lv_B": _F,
    "tbp_lv_Bext": _F,
    "tbp_lv_C": _F,
    "tbp_lv_Cext": _F,
    "tbp_lv_H": _F,
    "tbp_lv_Hext": _F,
    "tbp_lv_L": _F,
    "tbp_lv_Lext": _F,
    "tbp_lv_areaMM2": _F,
    "tbp_lv_area_perim_ratio": _F,
    "tbp_lv_color_std_mean": _F,
    "tbp_lv_deltaA": _F,
    "tbp_lv_deltaB": _F,
    "tbp_lv_deltaL": _F,
    "tbp_lv_deltaLB": _F,
    "tbp_lv_deltaLBnorm": _F,
    "tbp_lv_eccentricity": _F,
    "tbp_lv_location": _S,
    "tbp_lv_location_simple": _S,
    "tbp_lv_minorAxisMM": _F,
    "tbp_lv_nevi_confidence": _F,
    "tbp_lv_norm_border": _F,
    "tbp_lv_norm_color": _F,
    "tbp_lv_perimeterMM": _F,
    "tbp_lv_radial_color_std_max": _F,
    "tbp_lv_stdL": _F,
    "tbp_lv_stdLExt": _F,
    "tbp_lv_symm_2axis": _F,
    "tbp_lv_symm_2axis_angle": _I,
    "tbp_lv_x": _F,
    "tbp_lv_y": _F,
    "tbp_lv_z": _F,
    "attribution": _S,
    "copyright_license": _S,
    "lesion_id": _S,
    "iddx_full": _S,
    "iddx_1": _S,
    "iddx_2": _S,
    "iddx_3": _S,
    "iddx_4": _S,
    "iddx_5": _S,
    "mel_mitotic_index": _S,
    "mel_thick_mm": _F,
    "tbp_lv_dnn_lesion_confidence": _F,
}

#: The 11 train-only columns; they leak the label and never become features.
LEAK_COLUMNS: tuple[str, ...] = (
    "target",
    "lesion_id",
    "iddx_full",
    "iddx_1",
    "iddx_2",
    "iddx_3",
    "iddx_4",
    "iddx_5",
    "mel_mitotic_index",
    "mel_thick_mm",
    "tbp_lv_dnn_lesion_confidence",
)

#: The 44 columns of ``test-metadata.csv`` in file order.
TEST_COLUMNS: dict[str, PolarsDataType] = {
    name: dtype for name, dtype in TRAIN_COLUMNS.items() if name not in LEAK_COLUMNS
}

#: Identifier columns: required, never null, never features.
ID_COLUMNS: tuple[str, ...] = ("isic_id", "patient_id")

#: Numeric columns available at test time (the raw numeric features).
NUMERIC_COLUMNS: tuple[str, ...] = tuple(
    name for name, dtype in TEST_COLUMNS.items() if dtype != pl.String
)

#: 21 -> 8 -> 5 body-location hierarchy (deterministic in the real data).
LOCATION_TO_SIMPLE: dict[str, str] = {
    "Head & Neck": "Head & Neck",
    "Left Arm": "Left Arm",
    "Left Arm - Lower": "Left Arm",
    "Left Arm - Upper": "Left Arm",
    "Left Leg": "Left Leg",
    "Left Leg - Lower": "Left Leg",
    "Left Leg - Upper": "Left Leg",
    "Right Arm": "Right Arm",
    "Right Arm - Lower": "Right Arm",
    "Right Arm - Upper": "Right Arm",
    "Right Leg": "Right Leg",
    "Right Leg - Lower": "Right Leg",
    "Right Leg - Upper": "Right Leg",
    "Torso Back": "Torso Back",
    "Torso Back Bottom Third": "Torso Back",
    "Torso Back Middle Third": "Torso Back",
    "Torso Back Top Third": "Torso Back",
    "Torso Front": "Torso Front",
    "Torso Front Bottom Half": "Torso Front",
    "Torso Front Top Half": "Torso Front",
    "Unknown": "Unknown",
}

#: ``tbp_lv_location_simple`` -> ``anatom_site_general`` (``Unknown`` <-> missing site).
SIMPLE_TO_SITE: dict[str, str | None] = {
    "Head & Neck": "head/neck",
    "Left Arm": "upper extremity",
    "Right Arm": "upper extremity",
    "Left Leg": "lower extremity",
    "Right Leg": "lower extremity",
    "Torso Back": "posterior torso",
    "Torso Front": "anterior torso",
    "Unknown": None,
}

#: Known levels of the categorical columns (train centres plus the two test-only ones).
CATEGORY_LEVELS: dict[str, tuple[str, ...]] = {
    "sex": ("female", "male"),
    "anatom_site_general": (
        "anterior torso",
        "head/neck",
        "lower extremity",
        "posterior torso",
        "upper extremity",
    ),
    "image_type": ("TBP tile: close-up",),
    "tbp_tile_type": ("3D: XP", "3D: white"),
    "tbp_lv_location": tuple(LOCATION_TO_SIMPLE),
    "tbp_lv_location_simple": tuple(sorted(set(LOCATION_TO_SIMPLE.values()))),
    "attribution": (
        "ACEMID MIA",
        "Department of Dermatology, Hospital Clínic de Barcelona",
        "Department of Dermatology, University of Athens, Andreas Syggros Hospital of Skin and "
        "Venereal Diseases, Alexander Stratigos, Konstantinos Liopyris",
        "Frazer Institute, The University of Queensland, Dermatology Research Centre",
        "Memorial Sloan Kettering Cancer Center",
        "University Hospital of Basel",
        "ViDIR Group, Department of Dermatology, Medical University of Vienna",
        "FNQH Cairns",
        "Alfred Hospital",
    ),
    "copyright_license": ("CC-0", "CC-BY", "CC-BY-NC"),
}

#: Categorical columns used as model features.
CATEGORICAL_COLUMNS: tuple[str, ...] = (
    "sex",
    "anatom_site_general",
    "tbp_tile_type",
    "tbp_lv_location",
    "tbp_lv_location_simple",
    "attribution",
)

# Physically possible ranges: values outside them are suspicious (a warning, not an error).
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "age_approx": (0.0, 120.0),
    "clin_size_long_diam_mm": (0.0, None),
    "tbp_lv_areaMM2": (0.0, None),
    "tbp_lv_area_perim_ratio": (0.0, None),
    "tbp_lv_perimeterMM": (0.0, None),
    "tbp_lv_minorAxisMM": (0.0, None),
    "tbp_lv_color_std_mean": (0.0, None),
    "tbp_lv_radial_color_std_max": (0.0, None),
    "tbp_lv_stdL": (0.0, None),
    "tbp_lv_stdLExt": (0.0, None),
    "tbp_lv_C": (0.0, None),
    "tbp_lv_Cext": (0.0, None),
    "tbp_lv_L": (0.0, 100.0),
    "tbp_lv_Lext": (0.0, 100.0),
    "tbp_lv_eccentricity": (0.0, 1.0),
    "tbp_lv_nevi_confidence": (0.0, 100.0),
    "tbp_lv_norm_border": (0.0, 10.0),
    "tbp_lv_norm_color": (0.0, 10.0),
    "tbp_lv_symm_2axis": (0.0, None),
    "tbp_lv_symm_2axis_angle": (0.0, 180.0),
    "tbp_lv_dnn_lesion_confidence": (0.0, 100.0),
    "mel_thick_mm": (0.0, None),
}

_NULL_STRINGS = ("", "NA", "N/A", "NaN", "nan", "null", "None")


def _preview(values: Sequence[object], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:limit])
    return shown + (", ..." if len(values) > limit else "")


def _where(source: str | None) -> str:
    return f" in {source}" if source else ""


def _rows(row_numbers: Sequence[int], limit: int = 5) -> str:
    # 1-based data-row numbers, the way a spreadsheet user counts them.
    return _preview([int(r) + 1 for r in row_numbers], limit)


def validate(
    frame: pl.DataFrame,
    *,
    kind: Literal["auto", "train", "test"] = "auto",
    source: str | None = None,
) -> pl.DataFrame:
    """Check ``frame`` against the SLICE-3D contract and cast it to canonical dtypes.

    Parameters
    ----------
    frame : polars.DataFrame
        Metadata as read from a file; columns may be strings.
    kind : {"auto", "train", "test"}, default="auto"
        ``"train"`` requires ``target``; ``"test"`` requires the 44 test columns and
        warns when train-only columns are present; ``"auto"`` picks ``"train"`` when a
        ``target`` column exists.
    source : str, optional
        File name used in messages.

    Returns
    -------
    polars.DataFrame
        The frame with known columns cast to their dtypes, NaN/inf numeric values as
        nulls, and extra columns kept after the known ones.

    Raises
    ------
    SchemaError
        A required column is missing, a numeric column holds text, an id is null or
        duplicated, ``target`` is not 0/1, or the frame has no rows.
    """
    where = _where(source)
    if frame.width == 0 or frame.height == 0:
        what = "no columns" if frame.width == 0 else "a header but no rows"
        raise SchemaError(
            f"The metadata{where} has {what}. Pass a SLICE-3D metadata file with one row "
            "per lesion (for example train-metadata.csv or test-metadata.csv from Kaggle)."
        )
    present = list(frame.columns)
    duplicated = sorted({c for c in present if present.count(c) > 1})
    if duplicated:  # polars renames duplicates on read; catch both spellings
        raise SchemaError(f"Duplicated columns{where}: {_preview(duplicated)}. Keep one of each.")
    renamed = [c for c in present if c.rsplit("_duplicated_", 1)[0] != c]
    if renamed:
        raise SchemaError(
            f"Duplicated column names{where} (read as {_preview(renamed)}). "
            "Remove the repeated header entries."
        )
    if kind == "auto":
        kind = "train" if "target" in present else "test"
    # Training needs the label; the other train-only columns are optional because
    # they are never used as features.
    required = list(TEST_COLUMNS) + (["target"] if kind == "train" else [])
    missing = [c for c in required if c not in present]
    if missing:
        unexpected = [c for c in present if c not in TRAIN_COLUMNS]
        hint = ""
        if len(present) == 1 and any(sep in present[0] for sep in (";", "\t", "|")):
            hint = " The file looks delimited by something other than a comma; save it as CSV."
        elif kind == "train" and "target" in missing:
            hint = (
                " It has no 'target' column: this looks like a test file. "
                "Training needs train-metadata.csv."
            )
        raise SchemaError(
            f"Missing required column(s){where}: {_preview(missing)}"
            + (f"; unexpected column(s): {_preview(unexpected)}" if unexpected else "")
            + f". A SLICE-3D {kind} file needs the 44 test columns of the Kaggle files"
            + (" plus 'target'" if kind == "train" else "")
            + f" (see lesionboost.schema.TEST_COLUMNS).{hint}"
        )
    if kind == "test":
        leaks = [c for c in LEAK_COLUMNS if c in present]
        if leaks:
            warnings.warn(
                f"Train-only column(s){where} in a file read as test data: {_preview(leaks)}. "
                "They are kept in the frame but never used as features.",
                DataWarning,
                stacklevel=3,
            )
    extra = [c for c in present if c not in TRAIN_COLUMNS]
    if extra:
        warnings.warn(
            f"Extra column(s){where} kept but not part of the SLICE-3D schema: {_preview(extra)}.",
            DataWarning,
            stacklevel=3,
        )

    frame = _cast_known_columns(frame, where)
    _check_ids(frame, where)
    if "target" in frame.columns:
        _check_target(frame, where)
    _warn_out_of_range(frame, where)
    ordered = [c for c in TRAIN_COLUMNS if c in frame.columns] + extra
    return frame.select(ordered)


def _cast_known_columns(frame: pl.DataFrame, where: str) -> pl.DataFrame:
    exprs = []
    for name in frame.columns:
        dtype = TRAIN_COLUMNS.get(name)
        if dtype is None:
            continue
        column = frame.get_column(name)
        if dtype == pl.String:
            text = column.cast(pl.String).str.strip_chars()
            exprs.append(
                pl.when(text.is_in(list(_NULL_STRINGS))).then(None).otherwise(text).alias(name)
                if column.dtype == pl.String
                else pl.lit(text).alias(name)
            )
            continue
        if column.dtype.is_numeric():
            cast = column.cast(pl.Float64)
        else:
            text = column.cast(pl.String).str.strip_chars()
            text = pl.Series(name, text).set(text.is_in(list(_NULL_STRINGS)), None)
            cast = text.cast(pl.Float64, strict=False)
            bad = text.is_not_null() & cast.is_null()
            if bad.any():
                rows = bad.arg_true().to_list()
                raise SchemaError(
                    f"Column {name!r}{where} must be numeric but holds text: "
                    f"{_preview(text.filter(bad).unique(maintain_order=True).to_list())} "
                    f"at data row(s) {_rows(rows)}. Fix or blank those cells "
                    "(an empty cell means missing)."
                )
        # NaN and inf carry no information a model can use safely: store them as missing.
        nonfinite = cast.is_not_null() & ~cast.is_finite()
        n_nonfinite = int(nonfinite.sum())
        if n_nonfinite:
            warnings.warn(
                f"Column {name!r}{where} has {n_nonfinite} NaN/infinite value(s) "
                f"(first at data row(s) {_rows(nonfinite.arg_true().to_list())}); "
                "they are treated as missing.",
                DataWarning,
                stacklevel=4,
            )
            cast = cast.set(nonfinite, None)
        if dtype == pl.Int64:
            fractional = cast.is_not_null() & (cast != cast.round(0))
            if fractional.any():
                raise SchemaError(
                    f"Column {name!r}{where} must hold whole numbers but has "
                    f"{_preview(cast.filter(fractional).to_list())} at data row(s) "
                    f"{_rows(fractional.arg_true().to_list())}."
                )
            exprs.append(pl.lit(cast.cast(pl.Int64)).alias(name))
        else:
            exprs.append(pl.lit(cast).alias(name))
    return frame.with_columns(exprs)


def _check_ids(frame: pl.DataFrame, where: str) -> None:
    for name in ID_COLUMNS:
        if name not in frame.columns:
            continue
        column = frame.get_column(name)
        empty = column.is_null()
        if empty.any():
            raise SchemaError(
                f"Column {name!r}{where} is empty at data row(s) "
                f"{_rows(empty.arg_true().to_list())}. Every lesion needs an "
                f"{'image id' if name == 'isic_id' else 'patient id'}: fill it in or drop the rows."
            )
    ids = frame.get_column("isic_id")
    dup = ids.is_duplicated()
    if dup.any():
        raise SchemaError(
            f"Column 'isic_id'{where} has duplicate value(s) "
            f"{_preview(ids.filter(dup).unique(maintain_order=True).to_list())} at data row(s) "
            f"{_rows(dup.arg_true().to_list())}. Each lesion image must appear once: "
            "remove the repeated rows."
        )


def _check_target(frame: pl.DataFrame, where: str) -> None:
    target = frame.get_column("target")
    bad = target.is_null() | ~target.is_in([0, 1])
    if bad.any():
        raise SchemaError(
            f"Column 'target'{where} must be 0 (benign) or 1 (malignant) but has "
            f"{_preview(target.filter(bad).unique(maintain_order=True).to_list())} at data row(s) "
            f"{_rows(bad.arg_true().to_list())}."
        )


def _warn_out_of_range(frame: pl.DataFrame, where: str) -> None:
    for name, (low, high) in _RANGES.items():
        if name not in frame.columns:
            continue
        column = frame.get_column(name)
        bad = pl.Series([False] * frame.height)
        if low is not None:
            bad = bad | (column < low).fill_null(False)
        if high is not None:
            bad = bad | (column > high).fill_null(False)
        if bad.any():
            warnings.warn(
                f"Column {name!r}{where} has {int(bad.sum())} value(s) outside the physically "
                f"possible range [{low}, {high if high is not None else 'inf'}] "
                f"(e.g. {_preview(column.filter(bad).to_list(), 3)}). Check the file; "
                "the values are kept.",
                DataWarning,
                stacklevel=4,
            )
    if {"tbp_lv_stdLExt", "tbp_lv_Lext"} <= set(frame.columns):
        std, lext = frame.get_column("tbp_lv_stdLExt"), frame.get_column("tbp_lv_Lext")
        both = std.is_not_null() & lext.is_not_null()
        if both.any() and bool(((std - lext).abs() < 1e-9).filter(both).all()):
            warnings.warn(
                f"Column 'tbp_lv_stdLExt'{where} equals 'tbp_lv_Lext' on every row, a known bug "
                "in one public copy of the Kaggle test file. Use a correct copy of the file; "
                "predictions that use stdLExt will be unreliable.",
                DataWarning,
                stacklevel=4,
            )


def split_xy(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """Split validated training metadata into features ``X`` and the label ``y``.

    ``X`` keeps every column except the train-only (leak) columns, so it still
    carries ``patient_id`` for the patient-relative features.

    Parameters
    ----------
    frame : polars.DataFrame
        Output of :func:`lesionboost.read_metadata` for a training file.

    Returns
    -------
    X : polars.DataFrame
    y : polars.Series
        The ``target`` column as ``Int64``.
    """
    if "target" not in frame.columns:
        raise SchemaError(
            "The frame has no 'target' column, so it cannot be split into X and y. "
            "Pass training metadata (train-metadata.csv)."
        )
    return frame.drop([c for c in LEAK_COLUMNS if c in frame.columns]), frame.get_column("target")

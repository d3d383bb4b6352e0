"""Leave-one-centre-out folds and repeated patient-grouped folds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

import lesionboost
from lesionboost import cv
from lesionboost.exceptions import SchemaError
from lesionboost.model_selection import (
    centre_folds,
    patients_in_several_folds,
    repeated_patient_folds,
)
from lesionboost.simulate import simulate_slice3d


@pytest.fixture(scope="module")
def train() -> pl.DataFrame:
    return simulate_slice3d(30, seed=0).train


# ------------------------------------------------------------------ centre folds
def test_centre_folds_hold_out_one_centre_each(train: pl.DataFrame) -> None:
    folds = centre_folds(train)
    centres = train.get_column("attribution").to_numpy()
    first_seen = list(dict.fromkeys(centres.tolist()))
    assert folds.shape == (train.height,)
    assert len(first_seen) >= 3  # the simulator draws several centres
    assert sorted(set(folds.tolist())) == list(range(len(first_seen)))
    for fold in range(len(first_seen)):
        # fold ids follow first appearance, and each validation fold is one whole centre
        assert set(centres[folds == fold].tolist()) == {first_seen[fold]}
        assert (folds[centres == first_seen[fold]] == fold).all()
    assert patients_in_several_folds(train.get_column("patient_id"), folds) == []


def test_centre_folds_pandas_and_order() -> None:
    meta = pl.DataFrame(
        {
            "patient_id": ["p1", "p2", "p1", "p3", "p4", "p3"],
            "attribution": ["Vienna", "Basel", "Vienna", "MSKCC", "Basel", "MSKCC"],
        }
    )
    expected = [0, 1, 0, 2, 1, 2]
    assert centre_folds(meta).tolist() == expected
    assert centre_folds(meta.to_pandas()).tolist() == expected
    assert centre_folds(meta).dtype == np.int8


def test_centre_folds_null_attribution_names_rows() -> None:
    meta = pd.DataFrame({"patient_id": ["a", "b", "c", "d"], "attribution": ["X", None, "Y", None]})
    with pytest.raises(SchemaError, match=r"'attribution' is missing at 2 row\(s\) \[1, 3\]"):
        centre_folds(meta)


def test_centre_folds_refuse_a_patient_in_two_centres() -> None:
    meta = pl.DataFrame({"patient_id": ["a", "a", "b", "c"], "attribution": ["X", "Y", "X", "Y"]})
    with pytest.raises(SchemaError, match=r"1 patient\(s\) appear under more than one.*'a'"):
        centre_folds(meta)


def test_centre_folds_needs_two_centres_and_the_columns() -> None:
    with pytest.raises(ValueError, match="at least two centres"):
        centre_folds(pl.DataFrame({"patient_id": ["a", "b"], "attribution": ["X", "X"]}))
    with pytest.raises(SchemaError, match=r"\['attribution'\]"):
        centre_folds(pl.DataFrame({"patient_id": ["a", "b"]}))
    with pytest.raises(SchemaError, match="'patient_id' is missing"):
        centre_folds(pl.DataFrame({"patient_id": ["a", None], "attribution": ["X", "Y"]}))


# --------------------------------------------------------------- repeated folds
def test_repeated_folds_are_valid_and_differ(train: pl.DataFrame) -> None:
    splits = repeated_patient_folds(train, n_splits=3, n_repeats=3, seed=7)
    assert len(splits) == 3
    patients = train.get_column("patient_id")
    y = train.get_column("target").to_numpy()
    per_patient = train.group_by("patient_id").agg(pl.col("target").sum())
    most_in_one_patient = int(per_patient.get_column("target").max())
    for folds in splits:
        assert folds.shape == (train.height,) and folds.dtype == np.int8
        assert sorted(set(folds.tolist())) == [0, 1, 2]
        assert patients_in_several_folds(patients, folds) == []
        # stratified: malignant counts differ by at most one patient's worth
        malignant = [int(y[folds == k].sum()) for k in range(3)]
        assert max(malignant) - min(malignant) <= most_in_one_patient
        assert min(malignant) > 0
    for a in range(3):
        for b in range(a + 1, 3):
            assert not np.array_equal(splits[a], splits[b])
    # reproducible, and repeat r is the first repeat of seed + r
    again = repeated_patient_folds(train, n_splits=3, n_repeats=3, seed=7)
    for first, second in zip(splits, again, strict=True):
        np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(
        splits[2], repeated_patient_folds(train, n_splits=3, n_repeats=1, seed=9)[0]
    )


def test_repeated_folds_take_labels_and_validate() -> None:
    meta = pl.DataFrame({"patient_id": list("aabcddefgh")})
    y = [0, 1, 0, 1, 1, 0, 0, 1, 0, 1]
    splits = repeated_patient_folds(meta.to_pandas(), 2, 2, 0, y=y)
    assert len(splits) == 2
    for folds in splits:
        assert patients_in_several_folds(meta.get_column("patient_id"), folds) == []
        # five patients with a cancer (a, c, d, f, h): folds hold 2 and 3 of them
        assert sorted(int(np.asarray(y)[folds == k].sum()) for k in (0, 1)) == [2, 3]
    with pytest.raises(ValueError, match="n_repeats must be an integer >= 1"):
        repeated_patient_folds(meta, n_repeats=0, y=y)
    with pytest.raises(ValueError, match="Cannot make 20 patient-grouped folds from 8"):
        repeated_patient_folds(meta, n_splits=20, y=y)
    with pytest.raises(ValueError, match="repeated_patient_folds: y must hold 0"):
        repeated_patient_folds(meta, n_splits=2, y=[0, 2, 0, 1, 1, 0, 0, 1, 0, 1])
    with pytest.raises(SchemaError, match="repeated_patient_folds needs labels"):
        repeated_patient_folds(meta, n_splits=2)


def test_public_names() -> None:
    assert lesionboost.centre_folds is centre_folds
    assert lesionboost.repeated_patient_folds is repeated_patient_folds
    assert cv.centre_folds is centre_folds and cv.repeated_patient_folds is repeated_patient_folds
    assert {"centre_folds", "repeated_patient_folds"} <= set(lesionboost.__all__)

"""Patient-grouped folds."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from lesionboost import DataWarning, patient_folds
from lesionboost.cv import patients_in_several_folds


def _frame(n_patients: int = 60, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 40, n_patients)
    patients = np.repeat([f"IP_{i:07d}" for i in range(n_patients)], sizes)
    target = (rng.random(patients.size) < 0.03).astype(int)
    return pl.DataFrame({"patient_id": patients, "target": target})


def test_patients_never_straddle_folds_and_every_row_has_one() -> None:
    frame = _frame()
    folds = patient_folds(frame, n_splits=5, seed=3)
    assert folds.shape == (frame.height,) and folds.min() == 0 and folds.max() == 4
    per_patient = (
        pl.DataFrame({"p": frame["patient_id"], "f": folds})
        .group_by("p")
        .agg(pl.col("f").n_unique())
    )
    assert per_patient["f"].max() == 1


def test_reproducible_and_seed_dependent() -> None:
    frame = _frame()
    a = patient_folds(frame, seed=1)
    assert np.array_equal(a, patient_folds(frame, seed=1))
    assert not np.array_equal(a, patient_folds(frame, seed=2))


def test_positives_are_spread_over_folds() -> None:
    frame = _frame(200)
    folds = patient_folds(frame, n_splits=5, seed=0)
    positives = np.bincount(folds[frame["target"].to_numpy() == 1], minlength=5)
    assert positives.min() >= 0.6 * positives.mean()


def test_labels_from_y_and_pandas_input() -> None:
    frame = _frame()
    from_y = patient_folds(frame.drop("target"), frame["target"].to_numpy(), seed=0)
    from_pandas = patient_folds(frame.to_pandas(), seed=0)
    assert np.array_equal(from_y, patient_folds(frame, seed=0))
    assert np.array_equal(from_pandas, from_y)


def test_errors_and_warnings() -> None:
    with pytest.raises(ValueError, match="from 3 patient"):
        patient_folds(pl.DataFrame({"patient_id": ["a", "b", "c"], "target": [0, 1, 0]}))
    with pytest.raises(ValueError, match="patient_id"):
        patient_folds(pl.DataFrame({"target": [0, 1]}))
    few = pl.DataFrame({"patient_id": list("abcdefgh"), "target": [1, 0, 0, 0, 0, 0, 0, 0]})
    with pytest.warns(DataWarning, match="Only 1 patient"):
        patient_folds(few, n_splits=3)


def test_patients_in_several_folds_names_only_split_patients() -> None:
    from lesionboost.cv import patients_in_several_folds

    patients = ["a", "a", "b", "b", "c", "c", "c"]
    assert patients_in_several_folds(patients, [0, 0, 1, 1, 2, 2, 2]) == []
    assert patients_in_several_folds(patients, [0, 1, 1, 1, 2, 0, 2]) == ["a", "c"]


def test_folds_do_not_depend_on_strings_the_process_cast_before() -> None:
    # polars' categorical codes are process-global: folds must not follow them.
    import subprocess
    import sys

    script = (
        "import polars as pl, lesionboost as lb, hashlib;"
        "t = lb.simulate_slice3d(40, seed=3).train;"
        "{warm}"
        "print(hashlib.sha1(lb.patient_folds(t, seed=0).tobytes()).hexdigest())"
    )
    # cast the same patient ids, in reverse order, to a categorical first
    warm = "t['patient_id'].unique(maintain_order=True).reverse().cast(pl.Categorical);"
    runs = [
        subprocess.run(
            [sys.executable, "-c", script.format(warm=w)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for w in ("", warm)
    ]
    assert runs[0] == runs[1]


def test_integer_patient_ids_and_bad_labels() -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {"patient_id": [1, 1, 2, 2, 3, 3, 4, 4], "target": [0, 1, 0, 0, 1, 0, 0, 1]}
    )
    folds = patient_folds(frame, n_splits=2, seed=0)
    assert not patients_in_several_folds(frame["patient_id"], folds)
    with pytest.raises(ValueError, match=r"target must hold 0 \(benign\) or 1.*row\(s\) \[3\]"):
        patient_folds(frame.assign(target=[0, 1, 0, None, 1, 0, 0, 1]), n_splits=2)
    with pytest.raises(ValueError, match=r"y must hold 0.*'1'"):
        patient_folds(frame, frame["target"].astype(str).to_numpy(), n_splits=2)

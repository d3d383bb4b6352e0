"""Shared fixtures: the real SLICE-3D files (when present) and tiny synthetic frames."""

from __future__ import annotations

import os

# The GBDT libraries' OpenMP threads busy-wait between parallel regions by default,
# which slows every fit several times on a loaded 2-core machine. OpenMP reads the
# policy when its runtime loads, so set it before any booster library is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

import numpy as np
import polars as pl
import pytest

from lesionboost.schema import LOCATION_TO_SIMPLE, SIMPLE_TO_SITE, TRAIN_COLUMNS
from lesionboost.simulate._population import lesion_columns

_DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "slice3d"
SHARED = Path(os.environ.get("LESIONBOOST_SHARED", _DEFAULT_SHARED))


def shared_file(name: str) -> Path:
    """Path of a real SLICE-3D file, or skip the test with the reason."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(
            f"real SLICE-3D file {name} not found in {SHARED} "
            "(set LESIONBOOST_SHARED to the folder holding the shared Kaggle files)"
        )
    return path


@pytest.fixture
def real_train_csv() -> Path:
    return shared_file("train-metadata-sample.csv")


@pytest.fixture
def real_test_csv() -> Path:
    return shared_file("test-metadata.csv")


@pytest.fixture
def real_test_images() -> Path:
    return shared_file("test-image.hdf5")


@pytest.fixture
def real_sample_submission() -> Path:
    return shared_file("sample_submission.csv")


def make_tiny_metadata(n_patients: int = 4, lesions: int = 5, seed: int = 0) -> pl.DataFrame:
    """A schema-complete train frame: a few patients, a few lesions, some nulls.

    Values are random but obey the exact colour relations so that validators
    and featurizers see plausible input.
    """
    rng = np.random.default_rng(seed)
    n = n_patients * lesions
    locations = [loc for loc in LOCATION_TO_SIMPLE if loc != "Unknown"]
    location = rng.choice(locations, n)
    simple = [LOCATION_TO_SIMPLE[v] for v in location]
    a, aext = rng.normal(20, 4, n), rng.normal(15, 3.5, n)
    b, bext = rng.normal(28, 5, n), rng.normal(27, 4.5, n)
    lum, lext = rng.normal(42, 10, n), rng.normal(51, 11, n)
    size = np.round(rng.uniform(1.5, 9.0, n), 2)
    minor_ratio = rng.uniform(0.5, 0.95, n)
    ratio = rng.uniform(13, 30, n)
    target = np.zeros(n, dtype=np.int64)
    target[:: max(1, n // 3)] = 1
    data: dict[str, object] = {
        "isic_id": [f"ISIC_{i:07d}" for i in range(n)],
        "target": target,
        "patient_id": [f"IP_{i // lesions:07d}" for i in range(n)],
        "age_approx": rng.choice([45.0, 55.0, 65.0, None], n).tolist(),
        "sex": rng.choice(["male", "female", None], n).tolist(),
        "anatom_site_general": [SIMPLE_TO_SITE[s] for s in simple],
        "image_type": ["TBP tile: close-up"] * n,
        "tbp_tile_type": rng.choice(["3D: XP", "3D: white"], n),
        "tbp_lv_location": location,
        "tbp_lv_location_simple": simple,
    }
    # The simulator's exact relations (L = Lext + deltaL, C = hypot(A, B), ...) derive
    # the other colour and shape columns; draws keep their historical order.
    free = {
        "clin_size_long_diam_mm": size,
        "minor_ratio": minor_ratio,
        "area_ratio": np.ones(n),
        "tbp_lv_area_perim_ratio": ratio,
        "tbp_lv_Lext": lext,
        "tbp_lv_Aext": aext,
        "tbp_lv_Bext": bext,
        "tbp_lv_deltaL": lum - lext,
        "tbp_lv_deltaA": a - aext,
        "tbp_lv_deltaB": b - bext,
        "deltaLB_excess": np.full(n, 0.14),
        "tbp_lv_color_std_mean": rng.uniform(0, 3, n),
        "tbp_lv_deltaLBnorm": rng.uniform(4, 15, n),
        "tbp_lv_eccentricity": rng.uniform(0.3, 0.95, n),
        "tbp_lv_nevi_confidence": rng.uniform(0, 100, n),
        "tbp_lv_norm_border": rng.uniform(1, 9, n),
        "tbp_lv_norm_color": rng.uniform(0, 9, n),
        "tbp_lv_radial_color_std_max": rng.uniform(0, 3, n),
        "tbp_lv_stdL": rng.uniform(0.5, 6, n),
        "tbp_lv_stdLExt": rng.uniform(1, 4, n),
        "tbp_lv_symm_2axis": rng.uniform(0.1, 0.6, n),
    }
    data.update(lesion_columns(free))
    data |= {
        "tbp_lv_symm_2axis_angle": rng.integers(0, 36, n) * 5,
        "tbp_lv_x": rng.normal(0, 200, n),
        "tbp_lv_y": rng.normal(1050, 400, n),
        "tbp_lv_z": rng.normal(57, 87, n),
        "attribution": ["Memorial Sloan Kettering Cancer Center"] * n,
        "copyright_license": ["CC-BY"] * n,
        "lesion_id": [f"IL_{i:07d}" if t else None for i, t in enumerate(target)],
        "iddx_full": ["Malignant" if t else "Benign" for t in target],
        "iddx_1": ["Malignant" if t else "Benign" for t in target],
        "iddx_2": [None] * n,
        "iddx_3": [None] * n,
        "iddx_4": [None] * n,
        "iddx_5": [None] * n,
        "mel_mitotic_index": [None] * n,
        "mel_thick_mm": [None] * n,
        "tbp_lv_dnn_lesion_confidence": rng.uniform(80, 100, n),
    }
    return pl.DataFrame({name: data[name] for name in TRAIN_COLUMNS}, schema=TRAIN_COLUMNS)


@pytest.fixture
def tiny_metadata() -> pl.DataFrame:
    return make_tiny_metadata()

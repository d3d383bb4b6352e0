"""cross_val_oof(n_jobs=...): folds on joblib workers and on a Dask cluster, same scores."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import polars as pl
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from lesionboost import LesionBoostClassifier, cross_val_oof, patient_folds
from lesionboost.simulate import simulate_slice3d

distributed = pytest.importorskip("distributed")

# unseen centres / body locations in a validation fold are expected on 30 patients
pytestmark = pytest.mark.filterwarnings("ignore::lesionboost.exceptions.DataWarning")


class RecordingClassifier(ClassifierMixin, BaseEstimator):
    """Wraps a classifier and leaves a file named after the process and thread that fit it."""

    def __init__(self, estimator: Any = None, log_dir: str | None = None) -> None:
        self.estimator = estimator
        self.log_dir = log_dir

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> RecordingClassifier:
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        self.estimator_ = clone(self.estimator).fit(X, y, **kwargs)
        self.classes_ = self.estimator_.classes_
        name = f"{os.getpid()}-{uuid.uuid4().hex}"
        Path(self.log_dir, name).write_text(threading.current_thread().name)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.estimator_.predict_proba(X)


@pytest.fixture(scope="module")
def data() -> tuple[pl.DataFrame, np.ndarray]:
    train = simulate_slice3d(30, seed=0).train
    return train, patient_folds(train, n_splits=3, seed=0)


def _estimator(log_dir: Path) -> RecordingClassifier:
    # a pinned thread count: joblib gives worker processes fewer threads by default
    fast = LesionBoostClassifier(
        members=("lightgbm",),
        n_bags=1,
        lightgbm_params={"n_estimators": 20},
        n_jobs=1,
        random_state=0,
    )
    return RecordingClassifier(estimator=fast, log_dir=str(log_dir))


def _fits(log_dir: Path) -> list[tuple[int, str]]:
    """(process id, thread name) of every fit logged in ``log_dir``."""
    return [(int(p.name.split("-")[0]), p.read_text()) for p in log_dir.iterdir()]


def test_loky_workers_match_serial_with_weights(data, tmp_path: Path) -> None:
    train, folds = data
    weight = np.random.default_rng(0).uniform(0.5, 2.0, train.height)
    serial_dir, loky_dir = tmp_path / "serial", tmp_path / "loky"
    serial_dir.mkdir()
    loky_dir.mkdir()
    serial = cross_val_oof(
        _estimator(serial_dir), train, folds, sample_weight=weight, progress=False
    )
    parallel = cross_val_oof(
        _estimator(loky_dir), train, folds, sample_weight=weight, progress=False, n_jobs=2
    )
    assert len(_fits(serial_dir)) == 3 and {pid for pid, _ in _fits(serial_dir)} == {os.getpid()}
    loky_pids = {pid for pid, _ in _fits(loky_dir)}
    assert len(_fits(loky_dir)) == 3 and os.getpid() not in loky_pids
    np.testing.assert_array_equal(parallel.oof, serial.oof)
    np.testing.assert_array_equal(parallel.fold_scores, serial.fold_scores)
    assert parallel.pauc == serial.pauc
    np.testing.assert_array_equal(parallel.folds, folds)
    assert parallel.fit_seconds.shape == (3,) and (parallel.fit_seconds > 0).all()
    # the weights reach each fold's fit: unweighted scores differ
    unweighted = cross_val_oof(_estimator(serial_dir), train, folds, progress=False)
    assert not np.array_equal(unweighted.oof, serial.oof)


def test_dask_cluster_matches_serial(data, tmp_path: Path) -> None:
    train, folds = data
    serial_dir, dask_dir = tmp_path / "serial", tmp_path / "dask"
    serial_dir.mkdir()
    dask_dir.mkdir()
    serial = cross_val_oof(_estimator(serial_dir), train, folds, progress=False)
    # Two single-thread workers: joblib's Dask backend counts the cluster's threads and
    # runs in the calling thread when there is only one.
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
        distributed.get_task_stream(client) as stream,
        joblib.parallel_backend("dask"),
    ):
        on_dask = cross_val_oof(_estimator(dask_dir), train, folds, progress=False, n_jobs=-1)
    # the three fits ran as tasks in the cluster's worker threads
    assert len(stream.data) >= 3
    fits = _fits(dask_dir)
    assert len(fits) == 3
    assert all("Dask" in name for _, name in fits), fits
    np.testing.assert_array_equal(on_dask.oof, serial.oof)
    np.testing.assert_array_equal(on_dask.fold_scores, serial.fold_scores)
    assert on_dask.pauc == serial.pauc


def test_default_is_serial_even_inside_a_backend(data, tmp_path: Path) -> None:
    train, folds = data
    with joblib.parallel_backend("threading", n_jobs=2):
        cross_val_oof(_estimator(tmp_path), train, folds, progress=False)
    fits = _fits(tmp_path)
    assert len(fits) == 3
    assert {name for _, name in fits} == {threading.current_thread().name}


@pytest.mark.parametrize("n_jobs", [0, 1.5, True])
def test_bad_n_jobs(data, n_jobs: Any) -> None:
    train, folds = data
    with pytest.raises(ValueError, match="n_jobs must be None or a non-zero integer"):
        cross_val_oof(LesionBoostClassifier(), train, folds, n_jobs=n_jobs)

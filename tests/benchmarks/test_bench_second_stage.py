"""``benchmarks/second_stage.py --small``: second stages over the defaults' score."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

import lesionboost as lb
from _bench import check_tables, import_benchmark, run_small

second_stage = import_benchmark("second_stage.py")

WORLDS = list(dict.fromkeys([lb.simulate.SCENARIOS[0], lb.simulate.SCENARIOS[-1]]))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, Path]:
    folder = tmp_path_factory.mktemp("second_stage")
    cells = folder / "cells.jsonl"
    args = ("--scenarios", ",".join(WORLDS), "--n-jobs", "1", "--checkpoint", str(cells))
    report, _ = run_small("second_stage.py", folder / "second_stage.json", *args, timeout=300)
    return report, cells, folder


def test_small_run_scores_every_row_in_every_world(small) -> None:
    report, _, _ = small
    assert report["worlds"] == WORLDS and report["inner"] == 2
    for world in WORLDS:
        (run,) = report["simulator"][world]
        assert set(run["cell"]["pauc"]) == set(second_stage.ROWS)
        # the bound includes weight 0, the first stage itself
        assert run["cell"]["pauc"]["linear_bound"] >= run["cell"]["pauc"]["first"]
        assert run["cell"]["bound_weight"] in second_stage.WEIGHTS
        assert list(run["cell"]["members_alone"]) == list(lb.LesionBoostClassifier().members)
    for entry in report["summary"].values():
        assert set(entry["gap_per_world"]) == set(WORLDS)
        assert entry["gap_worst"] == min(entry["gap_per_world"].values())
    if report["real_sample"]:
        assert report["summary"]["first"]["real_diff"] == 0.0
    (table,) = report["tables"]
    assert table["columns"][1 : 1 + len(WORLDS)] == WORLDS
    check_tables(report, "second_stage")


@pytest.mark.filterwarnings("ignore::lesionboost.DataWarning")
def test_first_row_is_the_defaults_out_of_fold_pauc(small) -> None:
    report, _, _ = small
    sim = lb.simulate_slice3d(report["n_patients"], seed=report["seeds"][0], scenario=WORLDS[0])
    folds = lb.patient_folds(sim.train, n_splits=report["n_splits"], seed=report["seeds"][0])
    model = lb.LesionBoostClassifier(**second_stage._rb.default_overrides(True, False), n_jobs=1)
    expected = lb.cross_val_oof(model, sim.train, folds, progress=False).pauc
    assert report["simulator"][WORLDS[0]][0]["cell"]["pauc"]["first"] == pytest.approx(expected)


def test_a_rerun_takes_every_cell_from_the_checkpoint(small) -> None:
    report, cells, folder = small
    before = cells.read_text()
    args = ("--scenarios", ",".join(WORLDS), "--n-jobs", "1", "--checkpoint", str(cells))
    again, _ = run_small("second_stage.py", folder / "again.json", *args, timeout=300)
    assert cells.read_text() == before
    assert again["summary"] == report["summary"]


def test_patient_features_describe_each_lesion_within_its_patient() -> None:
    rng = np.random.default_rng(0)
    patients = np.repeat(np.array(["a", "b", "c"]), [5, 1, 3])
    score = rng.normal(size=patients.size)
    f = second_stage.patient_features(score, patients)
    assert f.shape == (patients.size, len(second_stage.FEATURES))
    np.testing.assert_array_equal(f[:, 0], score)
    for p in ("a", "c"):
        rows = patients == p
        assert f[rows, 1].mean() == pytest.approx(0.0, abs=1e-12)
        assert f[rows, 1].std(ddof=1) == pytest.approx(1.0)
        assert sorted(f[rows, 2]) == pytest.approx(np.linspace(0, 1, rows.sum()))
        assert f[rows, 3].max() == 0.0 and f[rows, 3].min() < 0
        assert f[rows, 5] == pytest.approx(np.log(rows.sum()))
    single = patients == "b"
    assert f[single, 1:4].tolist() == [[0.0, 0.5, 0.0]]


def test_stacked_weights_never_see_the_labels_of_the_fold_they_score() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(600) < 0.1).astype(int)
    members = np.column_stack([y + rng.normal(size=600), rng.normal(size=600)])
    folds = np.arange(600) % 3
    scores = second_stage.stacked_scores(y, folds, members)
    flipped = y.copy()
    flipped[folds == 0] = 1 - flipped[folds == 0]
    again = second_stage.stacked_scores(flipped, folds, members)
    np.testing.assert_array_equal(again[folds == 0], scores[folds == 0])
    assert not np.allclose(again[folds == 1], scores[folds == 1])  # fold 0's labels train them


class _Recorder(ClassifierMixin, BaseEstimator):
    """Scores lesions by size; records the patients of every fit."""

    fitted: ClassVar[list[set[str]]] = []

    def fit(self, X: Any, y: Any = None) -> _Recorder:
        _Recorder.fitted.append(set(X.get_column("patient_id").to_list()))
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        size = X.get_column("clin_size_long_diam_mm").to_numpy()
        p = 1 / (1 + np.exp(-(size - 8.0)))
        return np.column_stack([1 - p, p])


def test_the_learned_stage_never_fits_on_the_patients_it_scores() -> None:
    sim = lb.simulate_slice3d(60, seed=3)
    frame = sim.train
    folds = lb.patient_folds(frame, n_splits=3, seed=0)
    first = lb.cross_val_oof(_Recorder(), frame, folds, progress=False).oof
    _Recorder.fitted.clear()
    out = second_stage.learned_second_stage(_Recorder, frame, folds, first, inner=2, seed=0)
    assert out.shape == (frame.height,) and np.isfinite(out).all()
    patients = frame.get_column("patient_id").to_numpy()
    held_out = [set(patients[folds == k]) for k in range(3)]
    assert len(_Recorder.fitted) == 3 * 2  # inner fits per outer fold
    for k, outer in enumerate(held_out):
        for fitted in _Recorder.fitted[2 * k : 2 * k + 2]:
            assert not fitted & outer
            assert fitted < set(patients) - outer

"""``benchmarks/members.py --small``: each default member alone and the bounds on blending them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lesionboost as lb
from _bench import check_tables, import_benchmark, run_small

members = import_benchmark("members.py")

WORLDS = list(dict.fromkeys([lb.simulate.SCENARIOS[0], lb.simulate.SCENARIOS[-1]]))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, Path]:
    folder = tmp_path_factory.mktemp("members")
    cells = folder / "cells.jsonl"
    args = ("--scenarios", ",".join(WORLDS), "--n-jobs", "1", "--checkpoint", str(cells))
    report, _ = run_small("members.py", folder / "members.json", *args, timeout=300)
    return report, cells, folder


def test_small_run_scores_every_member_and_weight_vector(small) -> None:
    report, _, _ = small
    assert report["worlds"] == WORLDS
    assert report["members"] == list(lb.LesionBoostClassifier().members)
    grid = members.weight_grid(len(report["members"]))
    for cells in ([r["cell"] for r in report["simulator"][w]] for w in WORLDS):
        for cell in cells:
            assert list(cell["pauc"]) == [*report["members"], "blend"]
            assert len(cell["grid"]) == len(grid)
            # a weight vector of a single member ranks as that member alone
            for k, member in enumerate(report["members"]):
                alone = tuple(1.0 if j == k else 0.0 for j in range(len(report["members"])))
                assert cell["grid"][grid.index(alone)] == pytest.approx(cell["pauc"][member])
    summary = report["summary"]
    for entry in summary.values():
        assert set(entry["gap_per_world"]) == set(WORLDS)
        assert entry["gap_worst"] == min(entry["gap_per_world"].values())
    # the bounds: per data set at least every fixed vector, the fixed rows optimal over the grid
    for row in ("fixed_worst", "fixed_mean", "default_weights", *report["members"]):
        for world in WORLDS:
            assert (
                summary["per_cell_bound"]["gap_per_world"][world]
                >= summary[row]["gap_per_world"][world] - 1e-12
            )
    assert summary["fixed_worst"]["gap_worst"] >= summary["fixed_mean"]["gap_worst"]
    assert summary["fixed_mean"]["gap_mean"] >= summary["fixed_worst"]["gap_mean"]
    for member in report["members"]:
        assert summary["fixed_worst"]["gap_worst"] >= summary[member]["gap_worst"] - 1e-12
    assert set(summary["fixed_worst"]["weights"]) == set(report["members"])
    check_tables(report, "members")


@pytest.mark.filterwarnings("ignore::lesionboost.DataWarning")
def test_the_blend_row_is_the_defaults_out_of_fold_pauc(small) -> None:
    report, _, _ = small
    seed = report["seeds"][0]
    sim = lb.simulate_slice3d(report["n_patients"], seed=seed, scenario=WORLDS[0])
    folds = lb.patient_folds(sim.train, n_splits=report["n_splits"], seed=seed)
    model = lb.LesionBoostClassifier(**members._rb.default_overrides(True, False), n_jobs=1)
    expected = lb.cross_val_oof(model, sim.train, folds, progress=False).pauc
    assert report["simulator"][WORLDS[0]][0]["cell"]["pauc"]["blend"] == pytest.approx(expected)


def test_a_rerun_takes_every_cell_from_the_checkpoint(small) -> None:
    report, cells, folder = small
    before = cells.read_text()
    args = ("--scenarios", ",".join(WORLDS), "--n-jobs", "1", "--checkpoint", str(cells))
    again, _ = run_small("members.py", folder / "again.json", *args, timeout=300)
    assert cells.read_text() == before
    assert again["summary"] == report["summary"]


def test_weight_grid_and_normal_ranks() -> None:
    grid = members.weight_grid(3)
    assert len(grid) == len(members.GRID_VALUES) ** 3 - 1
    assert len(set(grid)) == len(grid) and all(any(w) for w in grid)
    scores = np.array([0.3, -1.0, 0.3, 2.0])
    q = members.normal_ranks(scores)
    assert q[0] == q[2] and q[1] < q[0] < q[3]  # ties share a rank, order is kept
    assert q.sum() == pytest.approx(0.0)

"""``benchmarks/defaults.py --small`` (default selection) and the benchmarks' cell store."""

from __future__ import annotations

import doctest
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import lesionboost as lb
from _bench import check_tables, import_benchmark, run_small

defaults = import_benchmark("defaults.py")
robustness = import_benchmark("robustness.py")
common = sys.modules["_common"]  # benchmarks/_common.py, as the scripts import it

WORLDS = list(dict.fromkeys([lb.simulate.SCENARIOS[0], lb.simulate.SCENARIOS[-1]]))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, Path]:
    folder = tmp_path_factory.mktemp("defaults")
    cells = folder / "cells.jsonl"
    args = ("--scenarios", ",".join(WORLDS), "--n-jobs", "1", "--checkpoint", str(cells))
    report, _ = run_small("defaults.py", folder / "defaults.json", *args, timeout=300)
    return report, cells, folder


def test_small_run_scores_every_candidate_in_every_world(small) -> None:
    report, cells, _ = small
    names = list(defaults.SMALL_CANDIDATES)
    assert report["candidates"] == names and report["worlds"] == WORLDS
    for world in WORLDS:
        for run in report["simulator"][world]:
            assert set(run["models"]) == {"raw", "lineage_lgbm", *names}
            assert run["seed"] >= 100  # never the seeds robustness.py scores
    for name in names:
        entry = report["overall"][name]
        assert set(entry["gap_per_world"]) == set(WORLDS)
        assert entry["gap_worst"] == min(entry["gap_per_world"].values())
    # no check on robustness.py's grid: the small candidates hold no incumbent
    assert report["check"] is None
    check_tables(report, "defaults", absent=["defaults/check"])
    stored = cells.read_text().splitlines()
    expected = len(WORLDS) * (2 + len(names)) + report["real_repeats"] * (2 + len(names))
    if report["race"]:  # the references and the finalists on one more seed
        expected += len(WORLDS) * (2 + len(report["race"]["finalists"]))
    if report["full_size"]:  # each pick fitted at full size, once per repeat
        expected += sum(len(c["runs"]) for c in report["full_size"]["checked"])
    assert len(stored) == expected


def test_the_finalists_race_on_another_seed_and_the_rule_picks_from_every_seed(small) -> None:
    report, _, _ = small
    race = report["race"]
    assert race is not None, "the small candidates should leave two finalists"
    assert report["fit_budget"] is None  # toy models: the budget is for full-size fits
    assert race["incumbent"] is None  # the small candidates do not hold the library defaults
    assert race["finalists"] == defaults.finalists(report["overall"], 2)
    assert race["race_seeds"] == [101] and race["seeds"] == [100, 101]
    assert race["chosen_first_seeds"] == defaults.select(report, 0.05)
    assert report["chosen"] == race["chosen"] == defaults.select(race, 0.05)
    for world in WORLDS:
        (run,) = race["simulator"][world]
        assert run["seed"] == 101 and set(run["models"]) == {
            "raw",
            "lineage_lgbm",
            *race["finalists"],
        }
        first = report["simulator"][world][0]
        for name in race["finalists"]:  # gap closed per world: the mean over both seeds
            gaps = [
                (r["models"][name]["pauc"] - r["models"]["raw"]["pauc"])
                / (r["oracle"] - r["models"]["raw"]["pauc"])
                for r in (first, run)
            ]
            assert race["overall"][name]["gap_per_world"][world] == pytest.approx(np.mean(gaps))
    for name in race["finalists"]:  # the real sample does not depend on the seed
        assert race["overall"][name]["real_diff"] == report["overall"][name]["real_diff"]
    table = next(t for t in report["tables"] if t["id"] == "defaults/race")
    assert [row[0].split(" ")[0].strip("`") for row in table["rows"]] == race["finalists"]


def test_the_pick_is_fitted_at_full_size_and_kept_within_the_budget(small) -> None:
    report, _, _ = small
    full = report["full_size"]
    assert full is not None and full["budget"] is None  # toy models: no budget by default
    (check,) = full["checked"]  # the race's pick, which passes without a budget
    assert check["candidate"] == report["race"]["chosen"] == full["chosen"] == report["chosen"]
    assert check["within_budget"] and check["wall_seconds"] >= check["fit_seconds"] > 0
    assert full["repeats"] == 1  # --small: one run
    (run,) = check["runs"]
    assert run["cell_key"] == [f"p60-k2-small/{WORLDS[0]}/0", run["cell_key"][1]]
    assert run["cell_key"][1].startswith(f"{check['candidate']}:")
    assert check["wall_seconds"] == run["wall_seconds"] and check["pauc"] == run["pauc"]
    table = next(t for t in report["tables"] if t["id"] == "defaults/full_size")
    assert table["rows"][0][0] == f"`{check['candidate']}` (chosen)"
    race_table = next(t for t in report["tables"] if t["id"] == "defaults/race")
    assert "Rule 4" not in race_table["note"]  # the race's pick stands


def test_a_pick_over_the_full_size_budget_is_vetoed_and_rule_2_picks_again(small) -> None:
    report, cells, folder = small
    own = folder / "over-cells.jsonl"  # the module's checkpoint stays as the run left it
    shutil.copy(cells, own)
    args = ("--scenarios", ",".join(WORLDS), "--n-jobs", "1", "--checkpoint", str(own))
    over, _ = run_small(
        "defaults.py", folder / "over.json", *args, "--full-size-budget", "0.001", timeout=300
    )
    checked = [c["candidate"] for c in over["full_size"]["checked"]]
    # every finalist in the order rule 2 picks them once the ones before are vetoed
    expected = []
    assert over["full_size"]["tie"] == over["race"]["tie"] == 0.05
    while (pick := defaults.cost_order(over["race"], 0.05, expected)) is not None:
        expected.append(pick)
    assert checked == expected and sorted(checked) == sorted(over["race"]["finalists"])
    assert not any(c["within_budget"] for c in over["full_size"]["checked"])
    assert over["full_size"]["chosen"] is None and over["chosen"] is None
    assert over["full_size"]["budget"] == 0.001
    table = next(t for t in over["tables"] if t["id"] == "defaults/full_size")
    assert [row[-1] for row in table["rows"]] == ["no (vetoed)"] * len(checked)
    race_table = next(t for t in over["tables"] if t["id"] == "defaults/race")
    assert "Rule 4 vetoes it" in race_table["note"]
    # a budget the first pick meets keeps it, as does none (0); --full-size 0 skips the check
    roomy, _ = run_small("defaults.py", folder / "roomy.json", *args, "--full-size-budget", "1e6")
    assert [c["candidate"] for c in roomy["full_size"]["checked"]] == checked[:1]
    assert roomy["chosen"] == report["chosen"] and roomy["full_size"]["checked"][0]["within_budget"]
    unlimited, _ = run_small("defaults.py", folder / "free.json", *args, "--full-size-budget", "0")
    assert unlimited["full_size"]["budget"] is None and unlimited["chosen"] == report["chosen"]
    # a result file's verdicts are not taken over with its cells: a new budget decides anew
    again, _ = run_small(
        "defaults.py",
        folder / "again-over.json",
        *("--scenarios", ",".join(WORLDS), "--n-jobs", "1"),
        *("--checkpoint", str(folder / "fresh-over.jsonl"), "--reuse", str(folder / "roomy.json")),
        "--full-size-budget",
        "0.001",
    )
    assert not any(c["within_budget"] for c in again["full_size"]["checked"])
    skipped, _ = run_small("defaults.py", folder / "skipped.json", *args, "--full-size", "0")
    assert skipped["full_size"] is None and skipped["chosen"] == report["race"]["chosen"]
    assert "defaults/full_size" not in [t["id"] for t in skipped["tables"]]


def test_each_pick_runs_repeatedly_at_full_size(small) -> None:
    report, cells, folder = small
    own = folder / "repeat-cells.jsonl"
    shutil.copy(cells, own)
    args = ("--scenarios", ",".join(WORLDS), "--n-jobs", "1", "--checkpoint", str(own))
    repeated, _ = run_small(
        "defaults.py", folder / "repeat.json", *args, "--full-size-repeats", "3", timeout=300
    )
    full = repeated["full_size"]
    (check,) = full["checked"]
    assert full["repeats"] == 3 and len(check["runs"]) == 3
    key = f"p60-k2-small/{WORLDS[0]}/0"  # the first run is the one-run check's cell
    assert [r["cell_key"][0] for r in check["runs"]] == [key, f"{key}/r1", f"{key}/r2"]
    assert check["runs"][0] == report["full_size"]["checked"][0]["runs"][0]
    middle = defaults.median_run(check["runs"])
    assert (check["wall_seconds"], check["fit_seconds"]) == (
        middle["wall_seconds"],
        middle["fit_seconds"],
    )
    table = next(t for t in repeated["tables"] if t["id"] == "defaults/full_size")
    assert table["rows"][0][2].count(",") == 2 and "3 run(s)" in table["note"]


def _stored_runs(walls: list[float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A one-finalist report and a cell store holding its full-size runs of ``walls`` s."""
    pick = "linear_x2.5"
    stored = defaults.candidate_key(pick)
    store = defaults.CellStore(None)
    for repeat, wall in enumerate(walls):
        data = "p60-k2-small/default/0" + (f"/r{repeat}" if repeat else "")
        # a verdict a result file may carry next to the measurement is not taken over
        cell = {"pauc": 0.15, "fit_seconds": wall - 1, "wall_seconds": wall}
        store.put(data, stored, {**cell, "within_budget": True, "candidate": "other"})
    entry = {"gap_mean": 0.3, "gap_worst": 0.0, "fit_seconds": 40.0, "real_diff": 0.001}
    race = {"tie": 0.05, "overall": {pick: entry}}  # alone: a veto leaves nothing
    report = {"chosen": pick, "race": race}
    settings = {"worlds": ["default"], "n_splits": 2, "has_scenarios": True, "store": store}
    return report, settings


def test_the_median_run_decides_and_stored_runs_are_not_simulated_again(monkeypatch) -> None:
    def no_simulation(*_: Any, **__: Any) -> None:
        raise AssertionError("the full-size cohort was simulated for stored runs")

    monkeypatch.setattr(defaults._rb, "simulate", no_simulation)
    for walls, median in (([12.0, 2.0, 1.0], 2.0), ([1.0, 10.0], 1.0)):  # even: the faster
        report, settings = _stored_runs(walls)
        for budget, kept in ((median, True), (median - 0.01, False)):
            options = SimpleNamespace(
                full_size=60,
                small=True,
                tie=0.05,
                full_size_budget=budget,
                full_size_repeats=len(walls),
            )
            full = defaults.full_size_check(report, settings, options)
            assert full is not None
            (check,) = full["checked"]
            assert check["within_budget"] is kept and full["chosen"] == (
                "linear_x2.5" if kept else None
            )
            assert check["wall_seconds"] == median and check["fit_seconds"] == median - 1
            assert [r["wall_seconds"] for r in check["runs"]] == walls
            assert all("within_budget" not in r for r in check["runs"])


def test_a_rerun_takes_every_cell_from_the_checkpoint(small) -> None:
    report, cells, folder = small
    before = cells.read_text()
    args = ("--scenarios", ",".join(WORLDS), "--n-jobs", "1", "--checkpoint", str(cells))
    again, _ = run_small("defaults.py", folder / "again.json", *args, timeout=300)
    assert cells.read_text() == before  # nothing re-measured
    assert again["overall"] == report["overall"] and again["race"] == report["race"]
    # without a race the first seed's pick stands
    alone, _ = run_small(
        "defaults.py", folder / "alone.json", *args, "--race-seeds", "0", "--full-size", "0"
    )
    assert cells.read_text() == before
    assert alone["race"] is None and alone["chosen"] == defaults.select(report, 0.05)
    assert [t["id"] for t in alone["tables"]] == ["defaults/candidates"]


def test_a_run_without_the_checkpoint_reuses_the_cells_of_its_result_file(small) -> None:
    report, _, folder = small
    for world in WORLDS:  # every cell names its key, data set and configuration
        for run in report["simulator"][world]:
            for row, cell in run["models"].items():
                assert cell["cell_key"][0].endswith(f"/{world}/{run['seed']}")
                assert cell["cell_key"][1].split(":")[0] == row
    fresh = folder / "fresh.jsonl"
    args = ("--scenarios", ",".join(WORLDS), "--n-jobs", "1", "--checkpoint", str(fresh))
    reused, _ = run_small(
        "defaults.py", folder / "reused.json", *args, "--reuse", str(folder / "defaults.json")
    )
    assert not fresh.exists()  # nothing measured
    assert reused["overall"] == report["overall"]
    # a world the result file lacks is measured (and only it)
    extra = next(w for w in lb.simulate.SCENARIOS if w not in WORLDS)
    first = next(iter(defaults.SMALL_CANDIDATES))
    one, _ = run_small(
        "defaults.py",
        folder / "one.json",
        *("--scenarios", ",".join([*WORLDS, extra]), "--candidates", first, "--full-size", "0"),
        *("--n-jobs", "1", "--checkpoint", str(fresh), "--reuse", str(folder / "reused.json")),
    )
    measured = {json.loads(line)["data"] for line in fresh.read_text().splitlines()}
    assert {data.split("/", 1)[1] for data in measured} == {f"{extra}/100"}
    assert one["overall"][first]["gap_per_world"][WORLDS[0]] == pytest.approx(
        report["overall"][first]["gap_per_world"][WORLDS[0]]
    )


def test_cell_store_reuse_keeps_the_checkpoint_first_and_names_a_missing_file(tmp_path) -> None:
    result = tmp_path / "result.json"
    cell = {"pauc": 0.2, "cell_key": ["w/0", "raw"]}
    result.write_text(json.dumps({"simulator": {"w": [{"models": {"raw": cell}}]}, "n": 3}))
    checkpoint = tmp_path / "cells.jsonl"
    common.CellStore(checkpoint).put("w/0", "raw", {"pauc": 0.1})
    store = common.CellStore(checkpoint, reuse=[result])
    assert store.get("w/0", "raw")["pauc"] == 0.1  # the checkpoint is the newer record
    assert common.CellStore(None, reuse=[result]).get("w/0", "raw") == cell
    with pytest.raises(FileNotFoundError, match="missing.json.*--reuse"):
        common.CellStore(None, reuse=[tmp_path / "missing.json"])


def test_the_shared_benchmark_helpers_examples_run() -> None:
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(common, optionflags=flags)
    assert result.attempted >= 10 and result.failed == 0
    result = doctest.testmod(defaults, optionflags=flags)  # select() and finalists()
    assert result.attempted >= 4 and result.failed == 0


def _report(overall: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"overall": overall}


def test_select_applies_the_real_sample_veto_then_the_worst_world() -> None:
    entry = {"gap_mean": 0.5, "fit_seconds": 10.0}
    report = _report(
        {
            "best_sim_but_vetoed": {**entry, "gap_worst": 0.9, "real_diff": -0.001},
            "robust": {**entry, "gap_worst": 0.6, "real_diff": 0.0},
            "weak": {**entry, "gap_worst": 0.2, "real_diff": 0.01},
        }
    )
    assert defaults.select(report, 0.05) == "robust"
    report["overall"]["weak"]["gap_worst"] = 0.58  # a tie on the worst world
    report["overall"]["weak"]["gap_mean"] = 0.7  # ... broken by the mean
    assert defaults.select(report, 0.05) == "weak"
    for entry in report["overall"].values():
        entry["real_diff"] = -0.01
    assert defaults.select(report, 0.05) is None


def test_within_a_tie_the_worst_world_decides_before_the_fit_time() -> None:
    entry = {"gap_mean": 0.31, "real_diff": 0.001}
    overall = {
        "fast": {**entry, "gap_worst": -0.06, "fit_seconds": 40.0},
        "sturdy": {**entry, "gap_worst": -0.03, "gap_mean": 0.29, "fit_seconds": 45.0},
    }
    assert defaults.select(_report(overall), 0.05) == "sturdy"  # same mean step, better worst
    overall["sturdy"]["gap_worst"] = -0.06
    assert defaults.select(_report(overall), 0.05) == "fast"  # equal quality: the cheaper
    overall["fast"]["gap_mean"] = 0.2  # a step down on the mean
    assert defaults.select(_report(overall), 0.05) == "sturdy"


def test_the_fit_budget_vetoes_the_choice_and_the_finalists() -> None:
    entry = {"gap_mean": 0.3, "real_diff": 0.001}
    overall = {
        "slow": {**entry, "gap_worst": 0.1, "fit_seconds": 60.0},
        "a": {**entry, "gap_worst": -0.05, "fit_seconds": 40.0},
        "b": {**entry, "gap_worst": -0.1, "fit_seconds": 50.0},
    }
    budget = defaults.fit_budget(300)
    assert budget == pytest.approx(180.0 * 300 / 1042)
    assert defaults.finalists(overall, 2) == ["slow", "a"]
    assert defaults.finalists(overall, 2, budget) == ["a", "b"]
    assert defaults.select({"overall": overall}, 0.05) == "slow"
    assert defaults.select({"overall": overall, "fit_budget": budget}, 0.05) == "a"


def test_the_incumbent_races_by_right_unless_vetoed() -> None:
    entry = {"gap_mean": 0.3, "real_diff": 0.001, "fit_seconds": 40.0}
    overall = {
        "new": {**entry, "gap_worst": 0.2},
        "other": {**entry, "gap_worst": 0.1},
        "held": {**entry, "gap_worst": 0.05},
        "vetoed": {**entry, "gap_worst": 0.0, "real_diff": -0.001},
    }
    assert defaults.finalists(overall, 2) == ["new", "other"]
    assert defaults.finalists(overall, 2, incumbent="held") == ["new", "other", "held"]
    assert defaults.finalists(overall, 2, incumbent="other") == ["new", "other"]
    assert defaults.finalists(overall, 2, incumbent="vetoed") == ["new", "other"]


def test_the_incumbent_is_the_candidate_with_the_library_defaults(monkeypatch) -> None:
    names = list(defaults.CANDIDATES)
    holder = defaults.incumbent(names)
    assert holder is not None, "no candidate in defaults.py is the library's defaults"
    params = defaults.CANDIDATES[holder][1]
    assert defaults.is_library_default(params)
    assert sum(defaults.is_library_default(defaults.CANDIDATES[n][1]) for n in names) == 1
    # one member setting, one weight or one switch away is another configuration
    linear = params["linear_params"]
    other_penalty = {**linear, "l1_ratio": 0.5}
    assert not defaults.is_library_default({**params, "linear_params": other_penalty})
    heavier = {**params["weights"], "linear": params["weights"]["linear"] + 1.0}
    assert not defaults.is_library_default({**params, "weights": heavier})
    assert not defaults.is_library_default({**params, "followup": False})
    assert not defaults.is_library_default({**params, "followup_offset": True})
    monkeypatch.setattr(lb.estimator._classifier, "LINEAR_MEMBER_WEIGHT", 1.5)
    assert defaults.incumbent(names) is None  # the library moved: no candidate holds it


def test_bad_race_options_are_refused_before_any_cell_runs(tmp_path) -> None:
    for option in (
        "--finalists",
        "--race-seeds",
        "--fit-budget",
        "--full-size",
        "--full-size-budget",
    ):
        done = subprocess.run(
            [sys.executable, str(common.ROOT / "benchmarks" / "defaults.py"), "--small"]
            + ["--out", str(tmp_path / "x.json"), option, "-1"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and f"{option} must be 0 or more" in done.stderr
        assert not (tmp_path / "x.json").exists()
    done = subprocess.run(
        [sys.executable, str(common.ROOT / "benchmarks" / "defaults.py"), "--small"]
        + ["--out", str(tmp_path / "x.json"), "--full-size-repeats", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--full-size-repeats must be 1 or more" in done.stderr
    assert not (tmp_path / "x.json").exists()


def test_cell_store_resumes_and_skips_a_line_cut_short(tmp_path, capsys) -> None:
    path = tmp_path / "cells.jsonl"
    store = common.CellStore(path)
    store.put("w/0", "raw", {"pauc": 0.1})
    store.put("w/0", "default:abc", {"pauc": 0.15})
    with path.open("a") as handle:
        handle.write('{"data": "w/1", "row": "raw", "ce')  # interrupted mid-write
    again = common.CellStore(path)
    assert again.get("w/0", "default:abc") == {"pauc": 0.15, "cell_key": ["w/0", "default:abc"]}
    assert again.get("w/1", "raw") is None
    assert "unreadable cell skipped" in capsys.readouterr().err
    first = json.loads(path.read_text().splitlines()[0])
    assert first["cell"] == {"pauc": 0.1, "cell_key": ["w/0", "raw"]}


def test_robustness_keys_the_default_row_by_the_library_defaults(monkeypatch) -> None:
    args = SimpleNamespace(lineage_bags=3, vote_bags=1, tune_trials=8, tune_members=("lightgbm",))
    key = robustness.cell_key("default", args)
    assert key == robustness.cell_key("default", args)  # stable
    original = lb.LesionBoostClassifier.__init__.__kwdefaults__
    monkeypatch.setattr(
        lb.LesionBoostClassifier.__init__, "__kwdefaults__", {**original, "n_bags": 7}
    )
    assert robustness.cell_key("default", args) != key  # new defaults: measured again
    monkeypatch.undo()
    # so does a new default of a member library, which the estimator's None stands for
    monkeypatch.setitem(lb.ensemble.MEMBERS["linear"].defaults, "tails", (1.0,))
    assert robustness.cell_key("default", args) != key
    monkeypatch.undo()
    assert robustness.cell_key("default", args) == key
    assert robustness.cell_key("lineage_lgbm", args) == "lineage_lgbm:bags3"
    # a switch at the value that leaves the fit as it was is no new default; on, it is
    assert original["followup_offset"] is False
    monkeypatch.setattr(
        lb.LesionBoostClassifier.__init__, "__kwdefaults__", {**original, "followup_offset": True}
    )
    assert robustness.cell_key("default", args) != key
    monkeypatch.undo()
    params = lb.LesionBoostClassifier().get_params()
    monkeypatch.setattr(
        lb.LesionBoostClassifier,
        "get_params",
        lambda self, deep=True: {k: v for k, v in params.items() if k != "followup_offset"},
    )
    assert robustness.cell_key("default", args) == key  # as before the switch existed


def test_the_grid_check_keeps_the_incumbent_unless_the_pick_wins_there(monkeypatch) -> None:
    """Rule 5 scores only a new pick and the incumbent, and rule 2 chooses between them."""
    pick, holder = "followup_l1_scv", "followup_l1"
    gaps = {pick: (0.25, 0.50), holder: (0.32, 0.50)}  # worst world, mean

    def summarise(names, runs, real):
        return {
            n: {
                "gap_worst": gaps[n][0],
                "gap_mean": gaps[n][1],
                "gap_worst_world": "interactions",
                "gap_per_world": {"interactions": gaps[n][0]},
                "real_diff": 0.001,
                "fit_seconds": 40.0,
            }
            for n in names
        }

    scored = []
    monkeypatch.setattr(defaults, "summarise", summarise)
    monkeypatch.setattr(
        defaults,
        "simulated_runs",
        lambda grid, seeds, rows, args: scored.append((grid, seeds, rows)),
    )
    entry = {"gap_worst": 0.1, "gap_mean": 0.4, "real_diff": 0.001, "fit_seconds": 40.0}
    report = {
        "chosen": pick,
        "candidates": [pick, holder],
        "race": {"incumbent": holder, "tie": 0.05},
        "overall": {pick: entry, holder: entry},
        "fit_budget": 50.0,
        "real_sample": [],
        "worlds": ["interactions"],
    }
    store = common.CellStore(None)
    # robustness.py's row of the library's defaults on the grid: lent to the incumbent
    library = defaults._rb.cell_key(defaults._rb.DEFAULT, None)
    store.put("p600-k5/interactions/1", library, {"pauc": 0.17})
    settings = {"n_patients": 300, "n_splits": 5, "worlds": ["interactions"], "store": store}
    args = SimpleNamespace(check_patients=600, check_seeds=3, tie=0.05, small=False)
    check = defaults.grid_check(report, settings, args)
    assert check is not None and check["chosen"] == holder  # 25 % against 32 %: out of the tie
    ((grid, seeds, rows),) = scored
    assert grid["n_patients"] == 600 and seeds == [0, 1, 2]
    assert rows[-2:] == [pick, holder]
    lent = store.get("p600-k5/interactions/1", defaults.candidate_key(holder))
    assert lent is not None and lent["pauc"] == 0.17
    assert store.get("p600-k5/interactions/0", defaults.candidate_key(holder)) is None
    assert "(pick)" in defaults.make_check_table({**report, "check": check}).rows[0][0]
    gaps[pick] = (0.35, 0.55)  # the pick wins on the grid too
    assert defaults.grid_check(report, settings, args)["chosen"] == pick
    # nothing to check: the pick is the incumbent, there is none, or the check is off
    assert defaults.grid_check({**report, "chosen": holder}, settings, args) is None
    no_holder = {**report, "race": {"incumbent": None, "tie": 0.05}}
    assert defaults.grid_check(no_holder, settings, args) is None
    off = SimpleNamespace(check_patients=0, check_seeds=3, tie=0.05, small=False)
    assert defaults.grid_check(report, settings, off) is None
    vetoed = {**report, "overall": {pick: entry, holder: {**entry, "real_diff": -0.001}}}
    assert defaults.grid_check(vetoed, settings, args) is None
    assert len(scored) == 2


def test_the_library_defaults_are_the_recorded_choice() -> None:
    """The defaults are what ``defaults.py`` chose; change one and the choice must be rerun."""
    path = common.RESULTS / "defaults.json"
    if not path.exists():
        pytest.skip("benchmarks/results/defaults.json not recorded")
    report = json.loads(path.read_text())
    chosen = report["chosen"]
    assert chosen is not None, "no candidate passed the vetoes"
    race = report.get("race")
    if race:  # the race's pick, from the finalists' figures over every seed
        assert race["chosen"] == defaults.select(race, race["tie"])
        assert race["finalists"] == defaults.finalists(
            report["overall"], race["size"], report["fit_budget"], race["incumbent"]
        )
        # the incumbent is one of the recorded candidates, whatever the defaults are now
        assert race["incumbent"] is None or race["incumbent"] in report["candidates"]
    if report.get("full_size"):  # rule 4: picks vetoed at full size until one fits
        source, budget = race or report, report["full_size"]["budget"]
        checked = report["full_size"]["checked"]
        for number, check in enumerate(checked):
            vetoed = [c["candidate"] for c in checked[:number]]
            tie = report["full_size"]["tie"]
            assert check["candidate"] == defaults.cost_order(source, tie, vetoed)
            assert check["within_budget"] == (number == len(checked) - 1)
            assert check["within_budget"] == (budget is None or check["wall_seconds"] <= budget)
            runs = check.get("runs", [check])  # a pick's repeated runs; the median decides
            assert len(runs) == report["full_size"].get("repeats", 1)
            assert check["wall_seconds"] == defaults.median_run(runs)["wall_seconds"]
        pick = checked[-1]["candidate"]
    else:
        pick = race["chosen"] if race else chosen
    grid = report.get("check")
    if grid:  # rule 5: a new pick against the incumbent on robustness.py's grid
        assert (grid["pick"], grid["incumbent"]) == (pick, race["incumbent"])
        assert grid["chosen"] == defaults.select({"overall": grid["overall"]}, grid["tie"])
        pick = grid["chosen"]
    assert chosen == pick
    params = report["configurations"][chosen]["params"]
    assert defaults.is_library_default(params), (
        f"the library defaults are not the recorded choice {chosen!r}: rerun defaults.py"
    )
    estimator = lb.LesionBoostClassifier().get_params(deep=False)
    if estimator["weights"] is None:  # None stands for the default blend of the members
        estimator["weights"] = lb.estimator.default_weights(estimator["members"])
    for name, value in params.items():
        if name.endswith("_params"):
            member_defaults = lb.estimator.default_member_params(name.removesuffix("_params"))
            for key, setting in value.items():
                assert member_defaults[key] == pytest.approx(setting), (name, key)
        else:
            assert tuple(np.atleast_1d(estimator[name])) == tuple(np.atleast_1d(value)), name

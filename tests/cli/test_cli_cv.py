"""The cv, evaluate and compare commands end to end on a small simulation, and their errors.

Runs use 60 simulated patients and ``--members lightgbm --rounds 20 --folds 3
--n-boot 50`` so that each cross-validation takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lesionboost.cli import main

FAST = ["--members", "lightgbm", "--rounds", "20", "--n-boot", "50", "--n-jobs", "1", "-q"]
FOLDS = ["--folds", "3"]


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    assert main(["simulate", "--out", str(out), "--patients", "60", "--seed", "0", "-q"]) == 0
    return out / "train-metadata.csv"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def repeated(sim, runs) -> Path:
    """A patient cv with two repeats."""
    run = runs / "repeated"
    assert main(["cv", "--data", str(sim), "--out", str(run), "--repeats", "2", *FOLDS, *FAST]) == 0
    return run


@pytest.fixture(scope="module")
def single(sim, runs) -> Path:
    """A patient cv with one repeat, folds run one after the other."""
    run = runs / "single"
    assert main(["cv", "--data", str(sim), "--out", str(run), *FOLDS, *FAST]) == 0
    return run


def test_cv_then_evaluate(repeated, capsys) -> None:
    for name in (
        "oof.parquet",
        "folds.parquet",
        "cv.json",
        "evaluation.json",
        "report/model_card.md",
        "report/index.html",
    ):
        assert (repeated / name).exists(), name
    cv = json.loads((repeated / "cv.json").read_text())
    assert cv["scheme"]["n_repeats"] == 2 and cv["scheme"]["seeds"] == [0, 1]
    assert [len(r["fold_scores"]) for r in cv["repeats"]] == [3, 3]
    folds = pl.read_parquet(repeated / "folds.parquet")
    by_repeat = [folds.filter(pl.col("repeat") == r) for r in (0, 1)]
    assert by_repeat[0]["isic_id"].equals(by_repeat[1]["isic_id"])
    assert not np.array_equal(by_repeat[0]["fold"].to_numpy(), by_repeat[1]["fold"].to_numpy())
    oof = pl.read_parquet(repeated / "oof.parquet")
    assert oof.columns[:7] == [
        "isic_id",
        "patient_id",
        "attribution",
        "repeat",
        "fold",
        "target",
        "score",
    ]
    assert oof.height == 2 * cv["data"]["n_rows"] and oof["score"].is_finite().all()

    code, out, err = _run(capsys, ["evaluate", str(repeated), "--json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["pauc"] == pytest.approx(cv["repeats"][0]["pauc"])
    low, high = result["pauc_ci"]
    assert low <= result["pauc"] <= high
    assert {"sex", "attribution", "age_band"} <= set(result["subgroups"])
    saved = json.loads((repeated / "evaluation.json").read_text())
    assert saved["pauc_ci"] == result["pauc_ci"]  # same bootstrap: n_boot and seed of the run

    code, out, err = _run(capsys, ["evaluate", str(repeated), "--repeat", "1", "--report"])
    assert code == 0, err
    assert f"{cv['repeats'][1]['pauc']:.4f}" in out
    assert "95 % CI" in out and "weakest subgroup" in out and "per cancer" in out
    card = (repeated / "report" / "model_card.md").read_text()
    assert "repeat 1" in card


def test_centre_cv_holds_out_one_centre_per_fold(sim, runs, capsys) -> None:
    run = runs / "centre"
    code, out, err = _run(
        capsys, ["cv", "--data", str(sim), "--out", str(run), "--cv", "centre", "--json", *FAST]
    )
    assert code == 0, err
    oof = pl.read_parquet(run / "oof.parquet")
    per_fold = oof.group_by("fold").agg(pl.col("attribution").n_unique().alias("n"))
    assert (per_fold["n"] == 1).all()
    per_centre = oof.group_by("attribution").agg(pl.col("fold").n_unique().alias("n"))
    assert (per_centre["n"] == 1).all() and per_centre.height == per_fold.height >= 2
    cv = json.loads((run / "cv.json").read_text())
    assert cv["scheme"]["cv"] == "centre" and len(cv["scheme"]["centres"]) == per_fold.height
    centres = oof.select("fold", "attribution").unique().sort("fold")["attribution"].to_list()
    assert centres == cv["scheme"]["centres"]


def test_compare_same_folds_and_refuses_other_folds(sim, runs, repeated, single, capsys) -> None:
    other = runs / "more-rounds"
    code, _, err = _run(
        capsys,
        [
            "cv",
            "--data",
            str(sim),
            "--out",
            str(other),
            "--repeats",
            "2",
            *FOLDS,
            *FAST,
            "--rounds",
            "40",
        ],
    )
    assert code == 0, err
    code, out, err = _run(capsys, ["compare", str(repeated), str(other), "--json"])
    assert code == 0, err
    result = json.loads(out)
    assert result["n_pairs"] == 6
    assert 0.0 < result["wilcoxon"]["p_value"] <= 1.0
    assert sum(result["signs"].values()) == 6
    diffs = [p["a"] - p["b"] for p in result["pairs"]]
    assert result["mean_difference"] == pytest.approx(np.mean(diffs))
    assert result["better"] == ("A" if np.mean(diffs) > 0 else "B")
    code, out, err = _run(capsys, ["compare", str(repeated), str(other)])
    assert code == 0 and "Wilcoxon signed-rank p = " in out

    code, out, err = _run(capsys, ["compare", str(repeated), str(single)])
    assert code == 1 and out == ""
    assert "different folds" in err and len(err.strip().splitlines()) == 1


def test_local_scheduler_matches_serial(sim, runs, single, capsys) -> None:
    pytest.importorskip("distributed")
    run = runs / "dask"
    code, _, err = _run(
        capsys,
        ["cv", "--data", str(sim), "--out", str(run), "--scheduler", "local:2", *FOLDS, *FAST],
    )
    assert code == 0, err
    serial = pl.read_parquet(single / "oof.parquet")
    on_dask = pl.read_parquet(run / "oof.parquet")
    np.testing.assert_array_equal(on_dask["score"].to_numpy(), serial["score"].to_numpy())
    np.testing.assert_array_equal(on_dask["fold"].to_numpy(), serial["fold"].to_numpy())
    assert json.loads((run / "cv.json").read_text())["scheduler"] == "local:2"


def test_no_malignant_lesion_is_refused_before_any_file(sim, tmp_path, capsys) -> None:
    benign = tmp_path / "benign.csv"
    frame = pl.read_csv(sim, infer_schema=False)
    frame.with_columns(pl.lit("0").alias("target")).write_csv(benign)
    run = tmp_path / "run"
    code, out, err = _run(capsys, ["cv", "--data", str(benign), "--out", str(run), *FAST])
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "no malignant lesion" in err
    assert not run.exists()


def test_output_policy(sim, repeated, tmp_path, capsys) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep")
    code, _, err = _run(capsys, ["cv", "--data", str(sim), "--out", str(theirs), *FAST])
    assert code == 2 and "did not write" in err
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"]
    # an earlier run is replaced only with --force, refused before any work
    code, _, err = _run(capsys, ["cv", "--data", str(sim), "--out", str(repeated), *FAST])
    assert code == 2 and "--force" in err


def test_a_cv_runs_report_marked_as_a_run_report_is_still_the_runs_own(
    sim, single, tmp_path, capsys
) -> None:
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(single, run)
    marker_path = run / "report" / ".lesionboost.json"
    marker = json.loads(marker_path.read_text())
    assert marker["written_by"] == "lesionboost evaluate"
    marker_path.write_text(json.dumps({**marker, "written_by": "lesionboost report"}))
    code, _, err = _run(capsys, ["evaluate", str(run), "--report", "-q"])
    assert code == 0, err
    assert json.loads(marker_path.read_text())["written_by"] == "lesionboost evaluate"
    # the same marker on a report folder outside a cv run is a run report: refused
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(run / "report", elsewhere)
    other = json.loads((elsewhere / ".lesionboost.json").read_text())
    (elsewhere / ".lesionboost.json").write_text(
        json.dumps({**other, "written_by": "lesionboost report"})
    )
    code, _, err = _run(capsys, ["evaluate", str(run), "--report", str(elsewhere), "-q"])
    assert code == 0, err  # it holds the model card: an evaluation report
    marker = json.loads((elsewhere / ".lesionboost.json").read_text())
    assert marker["written_by"] == "lesionboost evaluate"
    run_report = tmp_path / "run-report"
    run_report.mkdir()
    (run_report / "index.html").write_text("<p>a tune run's report</p>")
    (run_report / ".lesionboost.json").write_text(
        json.dumps({"written_by": "lesionboost report", "entries": ["index.html"]})
    )
    code, _, err = _run(capsys, ["evaluate", str(run), "--report", str(run_report), "-q"])
    assert code == 2 and "'lesionboost report'" in err
    assert (run_report / "index.html").read_text() == "<p>a tune run's report</p>"


def test_cv_force_keeps_a_submission_written_into_its_run(sim, single, tmp_path, capsys) -> None:
    import shutil

    from lesionboost._utils._outputs import claim

    run = tmp_path / "run"
    shutil.copytree(single, run)
    (run / "sub.csv").write_text("isic_id,target\n")
    claim(run, ["sub.csv"], written_by="lesionboost predict")
    argv = ["cv", "--data", str(sim), "--out", str(run), "--force", *FOLDS, *FAST]
    code, _, err = _run(capsys, argv)
    assert code == 0, err
    assert (run / "sub.csv").read_text() == "isic_id,target\n"


def test_evaluate_never_writes_into_another_runs_report(single, repeated, capsys) -> None:
    before = {p.name: p.read_bytes() for p in (repeated / "report").iterdir()}
    code, _, err = _run(capsys, ["evaluate", str(single), "--report", str(repeated / "report")])
    assert code == 2 and "is the report of the run" in err
    assert {p.name: p.read_bytes() for p in (repeated / "report").iterdir()} == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cv", "centre", "--repeats", "2"], "--repeats"),
        (["--cv", "centre", "--folds", "3"], "drop --folds"),
        (["--scheduler", "local:zero"], "local:N"),
        (["--n-boot", "-1"], "--n-boot"),
        (["--members", "lightgbm,lightgbm:nope"], "lightgbm:raw"),
    ],
)
def test_cv_usage_errors(sim, tmp_path, capsys, argv, message) -> None:
    code, _, err = _run(capsys, ["cv", "--data", str(sim), "--out", str(tmp_path / "r"), *argv])
    assert code == 2 and message in err
    assert not (tmp_path / "r").exists()


def _fast_cv_configuration(sim, run, members: str) -> dict:
    """Run a small ``cv`` with ``--members members`` and 8 rounds; its recorded configuration."""
    fast = ["--rounds", "8", "--folds", "2", "--n-boot", "20", "--n-jobs", "1", "-q"]
    assert main(["cv", "--data", str(sim), "--out", str(run), "--members", members, *fast]) == 0
    return json.loads((run / "cv.json").read_text())["configuration"]


def test_a_raw_column_member_is_a_member_like_the_others(sim, runs, capsys) -> None:
    run = runs / "raw-member"
    config = _fast_cv_configuration(sim, run, "lightgbm:raw")
    assert config["members"] == ["lightgbm:raw"]
    assert config["lightgbm_params"] == {"n_estimators": 8}  # the library's parameters
    oof = pl.read_parquet(run / "oof.parquet")
    assert oof["score"].n_unique() > 1


def test_the_linear_member_takes_no_rounds(sim, runs, capsys) -> None:
    run = runs / "linear-member"
    config = _fast_cv_configuration(sim, run, "lightgbm,linear")
    assert config["members"] == ["lightgbm", "linear"]
    assert config["lightgbm_params"] == {"n_estimators": 8} and "linear_params" not in config
    assert pl.read_parquet(run / "oof.parquet")["score"].n_unique() > 1


def test_cv_learns_the_follow_up_score_unless_params_switch_it_off(
    sim, single, tmp_path, capsys
) -> None:
    scores = {"default": pl.read_parquet(single / "oof.parquet")["score"].to_numpy()}
    for name, setting in (("auto", "auto"), ("off", False)):
        params = tmp_path / f"{name}.json"
        params.write_text(json.dumps({"followup": setting}))
        run = tmp_path / name
        argv = ["cv", "--data", str(sim), "--out", str(run), "--params", str(params)]
        assert main([*argv, *FOLDS, *FAST]) == 0
        assert json.loads((run / "cv.json").read_text())["configuration"]["followup"] == setting
        scores[name] = pl.read_parquet(run / "oof.parquet")["score"].to_numpy()
    # "auto" is the default; without the follow-up score the folds learn something else
    np.testing.assert_array_equal(scores["auto"], scores["default"])
    assert not np.allclose(scores["off"], scores["default"])


def test_evaluate_a_model_and_a_scores_file(sim, tmp_path, capsys) -> None:
    from lesionboost import LesionBoostClassifier, read_metadata, save_model

    train = read_metadata(sim)
    model = LesionBoostClassifier(
        members=("lightgbm",), n_bags=1, n_jobs=1, lightgbm_params={"n_estimators": 20}
    ).fit(train)
    save_model(model, tmp_path / "model")
    holdout = tmp_path / "holdout"
    code, _, err = _run(
        capsys, ["simulate", "--out", str(holdout), "--patients", "30", "--seed", "1", "-q"]
    )
    assert code == 0, err
    labelled = holdout / "train-metadata.csv"
    code, out, err = _run(
        capsys,
        [
            "evaluate",
            "--model",
            str(tmp_path / "model"),
            "--data",
            str(labelled),
            "--n-boot",
            "20",
            "--json",
        ],
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["n"] == read_metadata(labelled).height and result["pauc_ci"] is not None

    scores = (
        read_metadata(labelled)
        .select("isic_id")
        .with_columns(pl.Series("target", model.predict_proba(read_metadata(labelled))[:, 1]))
    )
    submission = tmp_path / "submission.csv"
    scores.write_csv(submission)
    code, out, err = _run(
        capsys,
        [
            "evaluate",
            "--scores",
            str(submission),
            "--data",
            str(labelled),
            "--n-boot",
            "20",
            "--json",
        ],
    )
    assert code == 0, err
    assert json.loads(out)["pauc"] == pytest.approx(result["pauc"])

    scores.head(10).write_csv(short := tmp_path / "short.csv")
    code, _, err = _run(capsys, ["evaluate", "--scores", str(short), "--data", str(labelled)])
    assert code == 1 and "mismatched lengths" in err
    scores.with_columns(pl.lit("ISIC_nope").alias("isic_id")).head(1).write_csv(
        stranger := tmp_path / "stranger.csv"
    )
    code, _, err = _run(capsys, ["evaluate", "--scores", str(stranger), "--data", str(labelled)])
    assert code == 1 and "unknown ids" in err
    code, _, err = _run(capsys, ["evaluate", "--model", str(tmp_path / "model")])
    assert code == 2 and "needs --data" in err

"""No lost files, no silently wrong scores: the output policy and the checks behind it.

Each test is named after the behaviour it guards; together they walk every command
that writes over folders and files that are not lesionboost's.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import lesionboost as lb
from lesionboost.cli import main
from lesionboost.exceptions import OutputError
from lesionboost.tuning._storage import describe_storage, mask_url, open_storage

FAST = ["--members", "lightgbm", "--rounds", "8", "--folds", "2", "--n-jobs", "1"]


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Kaggle-like folder: train and test metadata and crops."""
    out = tmp_path_factory.mktemp("kaggle")
    code = main(
        [
            "simulate",
            "--out",
            str(out),
            "--patients",
            "30",
            "--test-patients",
            "5",
            "--images",
            "all",
            "--seed",
            "0",
            "-q",
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def run(kaggle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tabular tune run."""
    folder = tmp_path_factory.mktemp("runs") / "run"
    code = main(
        [
            "tune",
            "--data",
            str(kaggle / "train-metadata.csv"),
            "--out",
            str(folder),
            "--trials",
            "1",
            "-q",
            *FAST,
        ]
    )
    assert code == 0
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _someone_elses(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("mine")
    (folder / "model").mkdir()
    (folder / "model" / "weights.bin").write_bytes(b"\x00\x01")
    (folder / "report").mkdir()
    (folder / "report" / "index.html").write_text("<p>my report</p>")
    (folder / "train-metadata.csv").write_text("my,own,table\n")
    (folder / "submission.csv").write_text("isic_id,target\nA,0.5\n")
    (folder / "emb.parquet").write_bytes(b"not a parquet of ours")
    return _snapshot(folder)


def test_every_writing_command_leaves_someone_elses_files_alone(
    kaggle: Path, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "theirs"
    before = _someone_elses(folder)
    train, test = str(kaggle / "train-metadata.csv"), str(kaggle / "test-metadata.csv")
    commands = [
        ["tune", "--data", train, "--out", str(folder), "--trials", "1", *FAST],
        ["simulate", "--out", str(folder), "--patients", "3"],
        ["report", str(run), "--out", str(folder)],
        ["report", str(run), "--out", str(folder / "report")],
        [
            "predict",
            "--model",
            str(run / "model"),
            "--data",
            test,
            "--out",
            str(folder / "submission.csv"),
        ],
        [
            "embed",
            "--images",
            str(kaggle / "test-image.hdf5"),
            "--out",
            str(folder / "emb.parquet"),
        ],
    ]
    for argv in commands:
        for force in ([], ["--force"]):
            if argv[0] == "report" and force:
                continue  # report has no --force: its folder is replaced when it is its own
            code = main([*argv, *force, "-q"])
            err = capsys.readouterr().err
            assert code == 2, (argv, force, err)
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
            assert _snapshot(folder) == before, (argv, force)
    with pytest.raises(OutputError, match="did not write"):
        lb.save_model(lb.load_model(run / "model"), folder, overwrite=True)
    with pytest.raises(OutputError, match="did not write"):
        lb.simulate.write_slice3d(lb.simulate_slice3d(3, seed=0), folder, overwrite=True)
    assert _snapshot(folder) == before


def test_report_pointed_at_the_run_folder_keeps_the_run(run: Path, capsys) -> None:
    before = _snapshot(run)
    assert main(["report", str(run), "--out", str(run), "-q"]) == 2
    assert "holds the input" in capsys.readouterr().err
    assert _snapshot(run) == before


def test_tune_force_on_a_folder_without_a_run_deletes_nothing(
    kaggle: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "plain"
    before = _someone_elses(folder)
    code = main(
        [
            "tune",
            "--data",
            str(kaggle / "train-metadata.csv"),
            "--out",
            str(folder),
            "--force",
            "--trials",
            "1",
            "-q",
            *FAST,
        ]
    )
    assert code == 2 and "did not write" in capsys.readouterr().err
    assert _snapshot(folder) == before


def test_force_replaces_only_what_lesionboost_wrote(
    kaggle: Path, run: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "sub.csv"
    test = str(kaggle / "test-metadata.csv")
    predict = ["predict", "--model", str(run / "model"), "--data", test, "--out", str(out), "-q"]
    assert main(predict) == 0
    first = out.read_bytes()
    assert main(predict) == 2 and "--force" in capsys.readouterr().err
    assert main([*predict, "--force"]) == 0 and out.read_bytes() == first
    mine = tmp_path / "mine.csv"
    mine.write_text("keep")
    code = main([*predict[:-3], "--out", str(mine), "--force", "-q"])
    assert code == 2 and "not written by lesionboost" in capsys.readouterr().err
    assert mine.read_text() == "keep"


def test_an_output_never_replaces_an_input(kaggle: Path, run: Path, capsys) -> None:
    test = kaggle / "test-metadata.csv"
    before = test.read_bytes()
    code = main(
        [
            "predict",
            "--model",
            str(run / "model"),
            "--data",
            str(test),
            "--out",
            str(test),
            "--force",
            "-q",
        ]
    )
    assert code == 2 and "an input" in capsys.readouterr().err
    assert test.read_bytes() == before


def test_simulate_refuses_to_overwrite_an_earlier_simulation_without_force(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "sim"
    assert main(["simulate", "--out", str(out), "--patients", "3", "--seed", "0", "-q"]) == 0
    first = (out / "train-metadata.csv").read_bytes()
    assert main(["simulate", "--out", str(out), "--patients", "3", "--seed", "1", "-q"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "train-metadata.csv").read_bytes() == first
    assert (
        main(["simulate", "--out", str(out), "--patients", "3", "--seed", "1", "--force", "-q"])
        == 0
    )
    assert (out / "train-metadata.csv").read_bytes() != first


def test_a_tune_on_bad_data_leaves_nothing_behind(tmp_path: Path, capsys) -> None:
    sim = lb.simulate_slice3d(20, seed=0).train.with_columns(
        pl.lit(0).cast(pl.Int64).alias("target")
    )
    data = tmp_path / "benign.parquet"
    sim.write_parquet(data)
    out = tmp_path / "run"
    code = main(["tune", "--data", str(data), "--out", str(out), "-q", *FAST])
    err = capsys.readouterr().err
    assert code == 1 and "no malignant" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_predict_on_a_kaggle_folder_scores_the_test_file(kaggle: Path, run: Path, tmp_path):
    out = tmp_path / "sub.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(run / "model"),
                "--data",
                str(kaggle),
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    scored = pl.read_csv(out)
    expected = pl.read_csv(kaggle / "test-metadata.csv")
    assert scored.get_column("isic_id").to_list() == expected.get_column("isic_id").to_list()


def test_a_folder_with_both_metadata_files_is_ambiguous_for_read_metadata(kaggle: Path) -> None:
    with pytest.raises(lb.SchemaError, match="holds both"):
        lb.read_metadata(kaggle)
    assert (
        lb.read_metadata(kaggle, kind="test").height
        == pl.read_csv(kaggle / "test-metadata.csv").height
    )


def test_predict_with_images_and_a_tabular_model_is_a_clear_error(
    kaggle: Path, run: Path, tmp_path: Path, capsys
) -> None:
    code = main(
        [
            "predict",
            "--model",
            str(run / "model"),
            "--data",
            str(kaggle),
            "--images",
            str(kaggle / "test-image.hdf5"),
            "--out",
            str(tmp_path / "s.csv"),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "without image features" in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()


def test_tune_refuses_folds_that_split_patients() -> None:
    frame = lb.simulate_slice3d(20, seed=0).train
    folds = np.arange(frame.height) % 2  # every patient in both folds
    with pytest.raises(ValueError, match="more than one fold of the tuning folds"):
        lb.tune(frame, n_trials=1, folds=folds, members=("lightgbm",), rounds=5, progress=False)


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("postgresql://tuner:ab/cd@db/optuna", "ab/cd"),
        ("postgresql://tuner:a:b@db:5432/optuna", "a:b"),
        ("postgresql://tuner:50%@db/optuna", "50%"),
        ("postgresql://tuner:a%2Fb%40c%3Ad%25e@db/optuna", "a/b@c:d%e"),
        ("postgresql://tuner:p@ss@db/optuna", "p@ss"),
    ],
)
def test_storage_passwords_with_special_characters_are_masked(url: str, password: str) -> None:
    for shown in (mask_url(url), describe_storage(url)):
        assert password not in shown and "a%2Fb" not in shown
        assert shown.startswith("postgresql://")


def test_an_unreachable_storage_never_shows_its_password() -> None:
    url = "postgresql://tuner:s3cr%2Fet@127.0.0.1:9/optuna"
    with pytest.raises(lb.StorageError) as caught:
        open_storage(url)
    message = str(caught.value)
    assert "s3cr" not in message and "***" in message


def test_derived_features_stay_finite_for_every_accepted_input() -> None:
    sim = lb.simulate_slice3d(30, seed=0)
    X, y = lb.split_xy(sim.train)
    model = lb.LesionBoostClassifier(
        members=("lightgbm",), n_bags=1, lightgbm_params={"n_estimators": 10}
    ).fit(X, y)
    big = X.head(20).with_columns(
        pl.lit(1e14).alias(name)
        for name in ("age_approx", "clin_size_long_diam_mm", "tbp_lv_symm_2axis")
    )
    features = model.featurizer_.transform(big)
    numeric = features.select(pl.selectors.float())
    assert numeric.select(pl.all().is_infinite().any()).row(0) == (False,) * numeric.width
    assert np.isfinite(model.predict_proba(big)[:, 1]).all()


def test_a_pandas_object_column_of_only_none_is_a_missing_numeric() -> None:
    pd = pytest.importorskip("pandas")
    sim = lb.simulate_slice3d(30, seed=0)
    X, y = lb.split_xy(sim.train)
    model = lb.LesionBoostClassifier(
        members=("lightgbm",), n_bags=1, lightgbm_params={"n_estimators": 10}
    ).fit(X, y)
    frame = X.head(20).to_pandas()
    frame["age_approx"] = pd.Series([None] * 20, dtype=object)
    nulls = X.head(20).with_columns(pl.lit(None, dtype=pl.Float64).alias("age_approx"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lb.DataWarning)
        np.testing.assert_array_equal(model.predict_proba(frame), model.predict_proba(nulls))


def test_every_folder_lesionboost_writes_carries_a_marker(run: Path) -> None:
    for folder in (run, run / "model", run / "report"):
        marker = json.loads((folder / ".lesionboost.json").read_text())
        assert marker["written_by"].startswith("lesionboost ")
        assert {p.name for p in folder.iterdir()} - {".lesionboost.json"} <= set(marker["entries"])


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """Run ``argv``; assert a one-line error without a traceback that holds ``words``."""
    code = main([*argv, "-q"])
    err = capsys.readouterr().err
    assert code in (1, 2), (argv, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)
    return err


def test_force_replaces_a_file_only_when_the_same_command_wrote_it(
    kaggle: Path, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    sim = tmp_path / "sim"
    shutil.copytree(kaggle, sim)
    test = str(kaggle / "test-metadata.csv")
    predict = ["predict", "--model", str(run / "model"), "--data", test, "--force"]
    embed = ["embed", "--images", str(kaggle / "test-image.hdf5"), "--force"]
    before = _snapshot(sim)
    # a simulation's files are not a submission's or an embedding table's to replace
    _refused([*predict, "--out", str(sim / "test-oracle.csv")], capsys, "'lesionboost simulate'")
    _refused([*embed, "--out", str(sim / "test-metadata.csv")], capsys, "'lesionboost simulate'")
    assert _snapshot(sim) == before
    # a submission written into a run folder is predict's own: it replaces it, and only it
    run_before = _snapshot(run)
    assert main([*predict, "--out", str(run / "sub.csv"), "-q"]) == 0
    assert main([*predict, "--out", str(run / "sub.csv"), "-q"]) == 0
    marker = json.loads((run / ".lesionboost.json").read_text())
    assert marker["written_by"] == "lesionboost tune"
    assert marker["writers"] == {"sub.csv": "lesionboost predict"}
    _refused([*embed, "--out", str(run / "sub.csv")], capsys, "'lesionboost predict'")
    _refused([*predict, "--out", str(run / "oof.parquet")], capsys, ".csv")
    from lesionboost._utils._outputs import disown

    # a submission inside the run's report folder: replacing that folder would delete it
    report_before = _snapshot(run / "report")
    assert main([*predict, "--out", str(run / "report" / "sub.csv"), "-q"]) == 0
    _refused(["report", str(run)], capsys, "another lesionboost command", "sub.csv")
    assert (run / "report" / "sub.csv").exists()
    (run / "report" / "sub.csv").unlink()
    disown(run / "report", ["sub.csv"])
    (run / "sub.csv").unlink()
    disown(run, ["sub.csv"])
    assert json.loads((run / ".lesionboost.json").read_text())["writers"] == {}

    def files(snapshot: dict[str, bytes]) -> dict[str, bytes]:
        return {k: v for k, v in snapshot.items() if not k.endswith(".lesionboost.json")}

    assert files(_snapshot(run)) == files(run_before)
    assert files(_snapshot(run / "report")) == files(report_before)


def test_a_marker_that_does_not_say_who_wrote_each_file_keeps_them_to_its_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lesionboost._utils._outputs import check_file_output

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "sub.csv").write_text("isic_id,target\n")
    marker = {"written_by": "lesionboost cv", "entries": ["oof.parquet", "sub.csv"]}
    (folder / ".lesionboost.json").write_text(json.dumps(marker))
    with pytest.raises(OutputError, match="without saying which command wrote it"):
        check_file_output(folder / "sub.csv", force=True, written_by="lesionboost predict")
    check_file_output(folder / "sub.csv", force=True, written_by="lesionboost cv")


def test_the_marker_records_who_wrote_each_file() -> None:
    from lesionboost._utils._outputs import entry_writer

    marker = {"written_by": "lesionboost tune", "entries": ["best.json", "s.csv"]}
    assert entry_writer(marker, "best.json") == "lesionboost tune"
    assert entry_writer(marker, "notes.txt") is None
    marker["writers"] = {"s.csv": "lesionboost predict"}
    assert entry_writer(marker, "s.csv") == "lesionboost predict"
    assert entry_writer(marker, "best.json") == "lesionboost tune"


def test_a_run_report_and_an_evaluation_report_never_replace_each_other(
    kaggle: Path, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = str(kaggle / "train-metadata.csv")
    evaluate = ["evaluate", "--model", str(run / "model"), "--data", train, "--n-boot", "0"]
    run_report = tmp_path / "run-report"
    assert main(["report", str(run), "--out", str(run_report), "-q"]) == 0
    before = _snapshot(run_report)
    _refused([*evaluate, "--report", str(run_report)], capsys, "'lesionboost report'")
    assert _snapshot(run_report) == before
    evaluation = tmp_path / "evaluation"
    assert main([*evaluate, "--report", str(evaluation), "-q"]) == 0
    capsys.readouterr()
    assert json.loads((evaluation / ".lesionboost.json").read_text())["written_by"] == (
        "lesionboost evaluate"
    )
    evaluated = _snapshot(evaluation)
    _refused(["report", str(run), "--out", str(evaluation)], capsys, "'lesionboost evaluate'")
    assert _snapshot(evaluation) == evaluated
    # a run's own report folder is that run's: evaluating a model elsewhere cannot write it
    run_before = _snapshot(run)
    _refused([*evaluate, "--report", str(run / "report")], capsys, "--report")
    assert _snapshot(run) == run_before


def test_simulate_force_leaves_one_cohort_and_the_users_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim"
    first = ["simulate", "--out", str(out), "--patients", "4", "--test-patients", "2"]
    assert main([*first, "--images", "all", "-q"]) == 0
    assert (out / "test-metadata.csv").exists() and (out / "train-image.hdf5").exists()
    (out / "notes.txt").write_text("mine")
    assert main(["simulate", "--out", str(out), "--patients", "3", "--force", "-q"]) == 0
    left = {p.name for p in out.iterdir()}
    assert left == {".lesionboost.json", "train-metadata.csv", "oracle.csv", "notes.txt"}
    marker = json.loads((out / ".lesionboost.json").read_text())
    assert sorted(marker["entries"]) == ["oracle.csv", "train-metadata.csv"]
    assert (out / "notes.txt").read_text() == "mine"


def test_a_path_through_a_file_is_refused_before_any_work(
    kaggle: Path, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    train, test = str(kaggle / "train-metadata.csv"), str(kaggle / "test-metadata.csv")
    for argv in (
        ["cv", "--data", train, "--out", str(blocker / "cv"), *FAST],
        ["tune", "--data", train, "--out", str(blocker / "deeper" / "run"), *FAST],
        ["simulate", "--out", str(blocker / "sim"), "--patients", "3"],
        ["report", str(run), "--out", str(blocker / "report")],
        ["predict", "--model", str(run / "model"), "--data", test, "--out", str(blocker / "s.csv")],
        ["embed", "--images", str(kaggle / "test-image.hdf5"), "--out", str(blocker / "e.parquet")],
    ):
        _refused(argv, capsys, "is a file")
    assert blocker.read_text() == "mine"


def test_input_files_of_the_wrong_kind_are_named_before_any_work(
    kaggle: Path, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = kaggle / "train-metadata.csv"
    images = str(kaggle / "test-image.hdf5")
    no_id = tmp_path / "noid.csv"
    no_id.write_text("a,b\n1,2\n")
    embed = ["embed", "--images", images, "--out", str(tmp_path / "e.parquet")]
    _refused([*embed, "--metadata", str(no_id)], capsys, "--metadata", "isic_id")
    _refused([*embed, "--metadata", str(tmp_path / "none.csv")], capsys, "--metadata")
    assert not (tmp_path / "e.parquet").exists()
    # an image model that is no model fails before the study starts
    fake = tmp_path / "fake.parquet"
    fake.write_text("not a table")
    out = tmp_path / "run"
    tune = ["tune", "--data", str(train), "--images", images, "--out", str(out), *FAST]
    _refused([*tune, "--image-model", str(fake)], capsys, "--image-model", "fake.parquet")
    assert not out.exists()
    # the labels are no scores
    evaluate = ["evaluate", "--data", str(train), "--n-boot", "0"]
    _refused([*evaluate, "--scores", str(train)], capsys, "labelled file itself")
    copy = tmp_path / "copy.csv"
    copy.write_bytes(train.read_bytes())
    _refused([*evaluate, "--scores", str(copy)], capsys, "metadata table")
    frame = pl.read_csv(train, infer_schema=False).select("isic_id")
    text = frame.with_columns(pl.lit("0.5").alias("score"))
    text = text.with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("high")).otherwise("score").alias("score")
    )
    text.write_csv(tmp_path / "text.csv")
    bad_id = text.get_column("isic_id")[1]
    _refused([*evaluate, "--scores", str(tmp_path / "text.csv")], capsys, "numbers", bad_id)
    # a configuration with image features cannot be cross-validated without its images
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"best_params": {"n_bags": 1}, "fixed_params": {"images": images}}))
    cv = ["cv", "--data", str(train), "--out", str(tmp_path / "cv"), "--params", str(best)]
    _refused(cv, capsys, "images")
    assert not (tmp_path / "cv").exists()
    # a scheduler address without a port is named before the data are read
    cv = ["cv", "--data", str(train), "--out", str(tmp_path / "cv2"), "--scheduler", "bogus"]
    _refused(cv, capsys, "--scheduler bogus")
    # a submission is a CSV
    test = str(kaggle / "test-metadata.csv")
    predict = ["predict", "--model", str(run / "model"), "--data", test]
    _refused([*predict, "--out", str(tmp_path / "s.parquet")], capsys, ".csv")
    assert not (tmp_path / "s.parquet").exists()


def test_evaluating_a_model_on_its_own_training_data_says_the_figures_are_in_sample(
    kaggle: Path, run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = kaggle / "train-metadata.csv"
    evaluate = ["evaluate", "--model", str(run / "model"), "--n-boot", "0", "--json"]
    assert main([*evaluate, "--data", str(train)]) == 0
    captured = capsys.readouterr()
    assert "in-sample" in captured.err
    assert "in-sample" in json.loads(captured.out)["validation"]["description"]
    # other lesions (here: the training file without one patient) are not flagged
    frame = pl.read_csv(train, infer_schema=False)
    first = frame.get_column("patient_id")[0]
    others = tmp_path / "others.csv"
    frame.filter(pl.col("patient_id") != first).write_csv(others)
    assert main([*evaluate, "--data", str(others)]) == 0
    captured = capsys.readouterr()
    assert "in-sample" not in captured.err + captured.out


def test_embed_reads_the_ids_of_a_metadata_table_by_its_content(tmp_path: Path) -> None:
    from lesionboost.cli._data import _metadata_ids

    pl.DataFrame({"isic_id": ["b", "a", "a", None]}).write_parquet(tmp_path / "ids.bin")
    assert _metadata_ids(tmp_path / "ids.bin") == ["a", "b"]  # Parquet without its suffix
    pl.DataFrame({"isic_id": ["c", "a"], "x": [1, 2]}).write_csv(tmp_path / "ids.csv")
    assert _metadata_ids(tmp_path / "ids.csv") == ["a", "c"]


def test_a_tune_that_would_replace_another_commands_file_stops_before_any_trial(
    kaggle: Path, run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lesionboost._utils._outputs import claim, disown

    sub = run / "report" / "sub.csv"
    sub.write_text("isic_id,target\n")
    claim(run / "report", ["sub.csv"], written_by="lesionboost predict")
    before = _snapshot(run)
    try:
        train = str(kaggle / "train-metadata.csv")
        for force in ([], ["--force"]):
            argv = ["tune", "--data", train, "--out", str(run), "--trials", "2", *FAST, *force]
            _refused(argv, capsys, "report/", "sub.csv")
            assert _snapshot(run) == before
    finally:
        sub.unlink()
        disown(run / "report", ["sub.csv"])


def test_claim_keeps_an_old_marker_without_writers_as_it_was(tmp_path: Path) -> None:
    from lesionboost._utils._outputs import claim

    (tmp_path / ".lesionboost.json").write_text(
        json.dumps({"written_by": "lesionboost tune", "entries": ["run.json"]})
    )
    claim(tmp_path, ["best.json"], written_by="lesionboost tune")
    marker = json.loads((tmp_path / ".lesionboost.json").read_text())
    assert marker == {"written_by": "lesionboost tune", "entries": ["best.json", "run.json"]}
    claim(tmp_path, ["sub.csv"], written_by="lesionboost predict")
    marker = json.loads((tmp_path / ".lesionboost.json").read_text())
    assert marker["writers"] == {"sub.csv": "lesionboost predict"}
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    claim(fresh, ["a.csv"], written_by="lesionboost predict")
    assert json.loads((fresh / ".lesionboost.json").read_text())["writers"] == {}


def test_an_embeddings_table_with_repeated_ids_is_no_image_model(tmp_path: Path) -> None:
    from lesionboost.image import check_image_model

    table = tmp_path / "emb.parquet"
    pl.DataFrame({"isic_id": ["a", "a"], "emb_0": [0.1, 0.2]}).write_parquet(table)
    with pytest.raises(ValueError, match="repeats isic_ids"):
        check_image_model(table)
    pl.DataFrame({"isic_id": ["a", "b"], "emb_0": [0.1, 0.2]}).write_parquet(table)
    check_image_model(table)

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

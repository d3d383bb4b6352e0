"""The tune, predict and report commands end to end on a tiny simulation, and their errors.

Runs use a tiny cohort and the hidden-in-plain-sight speed knobs ``--members
lightgbm --rounds 8 --folds 2`` so each tune takes seconds.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from lesionboost.cli import main
from lesionboost.tuning._storage import WORKER_ATTR

FAST = ["--members", "lightgbm", "--rounds", "8", "--folds", "2", "--n-jobs", "1"]


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    assert (
        main(
            [
                "simulate",
                "--out",
                str(out),
                "--patients",
                "30",
                "--test-patients",
                "6",
                "--seed",
                "0",
                "-q",
            ]
        )
        == 0
    )
    return out


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:  # noqa: ANN001
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_simulate_tune_predict_report_end_to_end(sim_dir, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    code, out, err = _run(
        capsys,
        [
            "tune",
            "--data",
            str(sim_dir / "train-metadata.csv"),
            "--trials",
            "3",
            "--out",
            str(run),
            "--json",
            *FAST,
        ],
    )
    assert code == 0, err
    summary = json.loads(out)
    finished = summary["trials"].get("COMPLETE", 0) + summary["trials"].get("PRUNED", 0)
    assert finished == 3
    assert summary["best_value"] >= summary["defaults_value"] > 0.02
    for name in (
        "model/manifest.json",
        "best.json",
        "folds.parquet",
        "oof.parquet",
        "report/index.html",
        "study.db",
        "run.json",
    ):
        assert (run / name).exists(), name
    best = json.loads((run / "best.json").read_text())
    assert best["best_value"] == pytest.approx(summary["best_value"])
    assert len(best["fold_scores"]) == 2 and len(best["history"]) == 3
    assert best["feature_importances"]  # drawn from the final model's contributions
    assert not list((run / "trials").glob("*.parquet"))[1:]  # only the best trial's OOF kept

    # predict: a Kaggle submission plus the per-patient triage view
    submission = tmp_path / "submission.csv"
    code, out, err = _run(
        capsys,
        [
            "predict",
            "--model",
            str(run / "model"),
            "--data",
            str(sim_dir / "test-metadata.csv"),
            "--out",
            str(submission),
            "--top-k",
            "2",
            "--json",
        ],
    )
    assert code == 0, err
    with open(sim_dir / "test-metadata.csv", newline="") as handle:
        test_rows = list(csv.DictReader(handle))
    with open(submission, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == ["isic_id", "target"]
    assert [r["isic_id"] for r in rows] == [r["isic_id"] for r in test_rows]
    assert all(0.0 <= float(r["target"]) <= 1.0 for r in rows)
    triage_path = Path(json.loads(out)["triage"])
    assert triage_path == tmp_path / "submission-triage.csv"
    model_args = ["--model", str(run / "model"), "--data", str(sim_dir / "test-metadata.csv")]
    code, _, err = _run(
        capsys, ["predict", *model_args, "--precision", "fp16", "--out", str(tmp_path / "x.csv")]
    )
    assert code == 2 and "without image features" in err and "--precision" in err
    assert not (tmp_path / "x.csv").exists()
    with open(triage_path, newline="") as handle:
        triage = list(csv.DictReader(handle))
    patients = {r["patient_id"] for r in test_rows}
    assert {r["patient_id"] for r in triage} == patients
    score_of = {r["isic_id"]: float(r["target"]) for r in rows}
    manifest = json.loads((run / "model" / "manifest.json").read_text())
    known_features = json.dumps(manifest)
    for patient in patients:
        mine = [r for r in triage if r["patient_id"] == patient]
        lesions = sum(r["patient_id"] == patient for r in test_rows)
        assert [int(r["rank"]) for r in mine] == list(range(1, min(2, lesions) + 1))
        scores = [float(r["score"]) for r in mine]
        assert scores == sorted(scores, reverse=True)
        best_of_patient = max(
            score_of[r["isic_id"]] for r in test_rows if r["patient_id"] == patient
        )
        assert scores[0] == pytest.approx(best_of_patient)
        for r in mine:
            assert r["feature_1"] and f'"{r["feature_1"]}"' in known_features

    # an existing submission is only replaced with --force
    code, _, err = _run(
        capsys,
        [
            "predict",
            "--model",
            str(run / "model"),
            "--data",
            str(sim_dir / "test-metadata.csv"),
            "--out",
            str(submission),
        ],
    )
    assert code == 2 and "--force" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(
        capsys,
        [
            "predict",
            "--model",
            str(run / "model"),
            "--data",
            str(sim_dir / "test-metadata.csv"),
            "--out",
            str(submission),
            "--force",
            "-q",
        ],
    )
    assert code == 0 and err == ""
    with open(submission, newline="") as handle:  # without --top-k: the same scores
        assert list(csv.DictReader(handle)) == rows

    # report into another folder: PNGs and one self-contained page
    code, out, err = _run(capsys, ["report", str(run), "--out", str(tmp_path / "rep"), "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert sorted(report["files"]) == [
        "calibration.png",
        "fold_pauc.png",
        "history.png",
        "importance.png",
        "index.html",
        "roc.png",
    ]
    for name in report["files"]:
        if name.endswith(".png"):
            with Image.open(tmp_path / "rep" / name) as image:
                image.verify()
    page = _Images()
    page.feed((tmp_path / "rep" / "index.html").read_text())
    assert len(page.sources) == 5 and all(
        s.startswith("data:image/png;base64,") for s in page.sources
    )


def test_tune_without_data_simulates_a_cohort(tmp_path, capsys) -> None:
    code, out, err = _run(
        capsys,
        [
            "tune",
            "--patients",
            "24",
            "--trials",
            "1",
            "--out",
            str(tmp_path / "demo"),
            "--json",
            *FAST,
        ],
    )
    assert code == 0, err
    assert "simulated SLICE-3D cohort of 24 patients" in err
    assert json.loads(out)["trials"] == {"COMPLETE": 1}
    assert (tmp_path / "demo" / "model" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["tune", "--trials", "0"], 2, "--trials must be positive"),
        (["tune", "--workers", "2", "--storage", "sqlite:///x.db"], 2, "database is locked"),
        (["tune", "--data", "no/such.csv"], 1, "does not exist"),
        (["tune", "--patients", "10", "--data", "x.csv"], 2, "--patients"),
        (["tune", "--image-model", "m.onnx"], 2, "--image-model needs --images"),
        (["tune", "--members", "lightgbm,ranger"], 2, "--members"),
        (["tune", "--bogus"], 2, None),
        (["predict", "--model", "no/model", "--data", "x.csv", "--out", "s.csv"], 1, None),
        (
            ["predict", "--model", "m", "--data", "x.csv", "--out", "s.csv", "--top-k", "0"],
            2,
            "--top-k",
        ),
        (["predict", "--data", "x.csv", "--out", "s.csv"], 2, "--model"),
        (["report", "no/such/run"], 1, "not a folder"),
    ],
)
def test_bad_arguments_and_missing_files(tmp_path, capsys, monkeypatch, argv, code, needle) -> None:
    monkeypatch.chdir(tmp_path)
    got, out, err = _run(capsys, argv)
    assert got == code
    assert out == ""
    if needle:
        assert needle in err
    if code == 1:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing written on failure


def test_report_on_a_folder_without_a_finished_run(tmp_path, capsys) -> None:
    code, _, err = _run(capsys, ["report", str(tmp_path)])
    assert code == 1 and "best.json does not exist" in err


def test_unreachable_storage_is_one_clear_line_with_the_password_masked(tmp_path, capsys) -> None:
    pytest.importorskip("psycopg2")
    url = "postgresql://tuner:hunter2@127.0.0.1:1/optuna"
    code, out, err = _run(capsys, ["tune", "--storage", url, "--out", str(tmp_path / "r")])
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "postgresql://tuner:***@127.0.0.1:1/optuna" in lines[0] and "hunter2" not in err
    assert not (tmp_path / "r").exists()


def test_debug_shows_the_traceback(tmp_path, capsys) -> None:
    with pytest.raises(FileNotFoundError):
        main(["report", str(tmp_path / "missing"), "--debug"])


def test_existing_foreign_folder_and_changed_options_are_refused(
    sim_dir, tmp_path, capsys, monkeypatch
) -> None:
    import lesionboost.tuning

    def stop(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt  # the run folder is prepared; skip the tuning itself

    monkeypatch.setattr(lesionboost.tuning, "tune", stop)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    data = ["--data", str(sim_dir / "train-metadata.csv"), "--out", str(foreign), *FAST]
    for force in ([], ["--force"]):  # a folder of someone else's files is never written
        code, _, err = _run(capsys, ["tune", *data, *force])
        assert code == 2 and "holds files lesionboost did not write ('notes.txt')" in err
        assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    run = tmp_path / "run"
    data = ["--data", str(sim_dir / "train-metadata.csv"), "--out", str(run), *FAST]
    code, _, err = _run(capsys, ["tune", *data])
    assert code == 130 and (run / "run.json").exists()
    code, _, err = _run(capsys, ["tune", *data, "--seed", "5"])
    assert code == 2 and "seed: was 0, now 5" in err
    code, _, err = _run(capsys, ["tune", *data])  # the same options resume
    assert code == 130 and "resuming" in err


def test_ctrl_c_exits_130_and_leaves_no_outputs(sim_dir, tmp_path, capsys, monkeypatch) -> None:
    import lesionboost.tuning

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(lesionboost.tuning, "tune", interrupted)
    code, out, err = _run(
        capsys,
        [
            "tune",
            "--data",
            str(sim_dir / "train-metadata.csv"),
            "--out",
            str(tmp_path / "r"),
            *FAST,
        ],
    )
    assert code == 130 and "run the same command again to resume" in err
    leftovers = {p.name for p in (tmp_path / "r").iterdir()}
    # resume state only, all complete, and the marker that says lesionboost wrote them
    assert leftovers <= {"run.json", "folds.parquet", ".lesionboost.json"}
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_force_never_deletes_a_study_outside_the_run_folder(sim_dir, tmp_path, capsys):
    data = ["--data", str(sim_dir / "train-metadata.csv"), *FAST, "--trials", "1"]
    shared = f"journal:{tmp_path / 'shared.journal'}"
    code, _, err = _run(capsys, ["tune", *data, "--storage", shared, "--out", str(tmp_path / "a")])
    assert code == 0, err
    code, _, err = _run(
        capsys, ["tune", *data, "--storage", shared, "--out", str(tmp_path / "a"), "--force"]
    )
    assert code == 2 and "outside it" in err and "new --study name" in err
    # a study file inside RUN_DIR is the run's own: --force starts it over
    own = f"sqlite:///{tmp_path / 'b' / 'study.db'}"
    (tmp_path / "b").mkdir()
    for _ in range(2):
        code, _, err = _run(
            capsys, ["tune", *data, "--storage", own, "--out", str(tmp_path / "b"), "--force"]
        )
        assert code == 0, err


def test_every_command_has_help_with_an_example(capsys) -> None:
    for command in ("tune", "predict", "report"):
        assert main([command, "--help"]) == 0
        assert "example" in capsys.readouterr().out


def _states(db: Path) -> list[tuple[int, str, bool]]:
    """(number, state, stamped with its worker's identity) of every trial."""
    query = (
        "select t.number, t.state, exists(select 1 from trial_user_attributes a where "
        f"a.trial_id = t.trial_id and a.key = '{WORKER_ATTR}') from trials t order by t.number"
    )
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return [(n, s, bool(stamped)) for n, s, stamped in con.execute(query).fetchall()]
    except sqlite3.OperationalError:
        return []


@pytest.mark.slow
def test_resume_after_sigkill_loses_no_finished_trial(sim_dir, tmp_path) -> None:
    run = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "lesionboost",
        "tune",
        "--data",
        str(sim_dir / "train-metadata.csv"),
        "--trials",
        "4",
        "--out",
        str(run),
        "-q",
        *FAST,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        # Kill once a trial is done and another runs under its worker's stamp (an
        # unstamped RUNNING trial is only failed after a grace period, by design).
        while time.monotonic() < deadline:
            states = _states(run / "study.db")
            if any(s == "COMPLETE" for _, s, _ in states) and any(
                s == "RUNNING" and n > 0 and stamped for n, s, stamped in states
            ):
                break
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.2)
        else:
            pytest.fail("the tune run never reached a second trial")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    import optuna

    storage = f"sqlite:///{run / 'study.db'}"
    before = {
        t.number: (t.state, t.value, t.params)
        for t in optuna.load_study(study_name="lesionboost", storage=storage).trials
    }
    done_before = {n for n, (s, _, _) in before.items() if s.name in ("COMPLETE", "PRUNED")}
    killed = [n for n, (s, _, _) in before.items() if s.name == "RUNNING"]
    assert done_before and len(killed) == 1
    assert not (run / "best.json").exists()

    resumed = subprocess.run(
        argv + ["--json"], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    study = optuna.load_study(study_name="lesionboost", storage=storage)
    after = {t.number: t for t in study.trials}
    for number in done_before:  # every finished trial survived unchanged
        state, value, params = before[number]
        assert after[number].state == state and after[number].value == value
        assert after[number].params == params
    assert after[killed[0]].state.name == "FAIL"
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed[0]]
    # the copy re-runs the killed trial's parameters (those drawn before the kill)
    assert len(retried) == 1 and before[killed[0]][2].items() <= retried[0].params.items()
    assert retried[0].state.name in ("COMPLETE", "PRUNED")
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == 4
    # (a pruned trial's value is its last fold's pAUC: not a candidate for the best)
    assert json.loads(resumed.stdout)["best_value"] == max(
        t.value for t in finished if t.state.name == "COMPLETE"
    )
    assert (run / "best.json").exists() and (run / "model" / "manifest.json").exists()


@pytest.mark.slow
def test_images_flow_through_tune_and_predict(tmp_path, capsys) -> None:
    pytest.importorskip("onnxruntime", reason="image features run an ONNX embedder")
    sim = tmp_path / "sim"
    assert (
        main(
            [
                "simulate",
                "--out",
                str(sim),
                "--patients",
                "14",
                "--test-patients",
                "3",
                "--images",
                "all",
                "--seed",
                "4",
                "-q",
            ]
        )
        == 0
    )
    run = tmp_path / "run"
    code, out, err = _run(
        capsys,
        [
            "tune",
            "--data",
            str(sim / "train-metadata.csv"),
            "--images",
            str(sim / "train-image.hdf5"),
            "--trials",
            "1",
            "--out",
            str(run),
            "--json",
            *FAST,
        ],
    )
    assert code == 0, err
    importances = json.loads((run / "best.json").read_text())["feature_importances"]
    assert any(name.startswith("img_") for name in importances)  # image features were used
    test = ["predict", "--model", str(run / "model"), "--data", str(sim / "test-metadata.csv")]
    code, _, err = _run(capsys, [*test, "--out", str(tmp_path / "a.csv")])
    assert code == 2 and "--images" in err  # an image model needs the test crops
    code, _, err = _run(
        capsys, [*test, "--images", str(sim / "test-image.hdf5"), "--out", str(tmp_path / "b.csv")]
    )
    assert code == 0, err
    with open(tmp_path / "b.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) > 0
    # another embedding precision on purpose: allowed, and said (TF32 is FP32 on the CPU)
    crops = ["--images", str(sim / "test-image.hdf5")]
    code, _, err = _run(
        capsys, [*test, *crops, "--precision", "tf32", "--out", str(tmp_path / "c.csv")]
    )
    assert code == 0, err
    assert (tmp_path / "c.csv").read_text() == (tmp_path / "b.csv").read_text()

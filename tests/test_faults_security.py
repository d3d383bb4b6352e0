"""Faults, determinism and security (issue: reliability).

* a tune with two workers on one journal file survives one worker's SIGKILL;
* the same seed gives identical folds, OOF scores and predictions across runs
  and across ``n_jobs`` on the CPU;
* loading a model never executes code from the model directory;
* nothing opens a network connection (the CLI runs with sockets blocked).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lesionboost import (
    LesionBoostClassifier,
    ModelFileError,
    cross_val_oof,
    load_model,
    patient_folds,
    save_model,
    simulate_slice3d,
    split_xy,
)
from lesionboost.cli import main

FAST_CLI = ["--members", "lightgbm", "--rounds", "8", "--folds", "2", "--n-jobs", "1"]


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
                "5",
                "--seed",
                "2",
                "-q",
            ]
        )
        == 0
    )
    return out


# ----------------------------------------------------------------------------- faults
def _journal_trials(journal: Path) -> list:
    import optuna

    from lesionboost.tuning._storage import open_storage

    storage = open_storage(f"journal:{journal}")
    try:
        return optuna.load_study(study_name="lesionboost", storage=storage).trials
    except KeyError:  # the journal file exists before the first worker creates the study
        return []


@pytest.mark.slow
def test_two_workers_one_killed_loses_no_finished_trial(sim_dir: Path, tmp_path: Path) -> None:
    journal = tmp_path / "study.journal"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def worker(run: str, trials: int) -> subprocess.Popen:
        argv = [
            sys.executable,
            "-m",
            "lesionboost",
            "tune",
            "--data",
            str(sim_dir / "train-metadata.csv"),
            "--storage",
            str(journal),
            "--trials",
            str(trials),
            "--out",
            str(tmp_path / run),
            "-q",
            *FAST_CLI,
        ]
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    survivor, victim = worker("a", 3), worker("b", 3)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if journal.exists():
                trials = _journal_trials(journal)
                if any(t.state.name == "COMPLETE" for t in trials) and any(
                    t.state.name == "RUNNING" for t in trials
                ):
                    break
            time.sleep(0.2)
        else:
            pytest.fail("the workers never finished a trial")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        before = {t.number: (t.state.name, t.value) for t in _journal_trials(journal)}
        assert survivor.wait(timeout=300) == 0, survivor.stderr.read().decode()
    finally:
        for process in (survivor, victim):
            if process.poll() is None:
                process.kill()
    # the killed worker's command, run again, resumes the shared study
    rerun = worker("b", 3)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read().decode()
    after = _journal_trials(journal)
    numbers = [t.number for t in after]
    assert len(numbers) == len(set(numbers))  # no duplicated trial
    for number, (state, value) in before.items():
        if state in ("COMPLETE", "PRUNED"):  # finished trials are kept unchanged
            assert after[number].state.name == state and after[number].value == value
    assert not any(t.state.name == "RUNNING" for t in after)  # the dead worker's trial ended
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in after) >= 3


# ----------------------------------------------------------------------------- determinism
def _model(n_jobs: int) -> LesionBoostClassifier:
    return LesionBoostClassifier(
        n_bags=2,
        n_jobs=n_jobs,
        random_state=7,
        lightgbm_params={"n_estimators": 15},
        xgboost_params={"n_estimators": 15},
        catboost_params={"n_estimators": 15, "depth": 4},
        linear_params={"rules": 5},  # the linear member's rule trees are seeded too
    )


@pytest.mark.slow
def test_same_seed_same_folds_oof_and_predictions_across_runs_and_n_jobs() -> None:
    sim = simulate_slice3d(16, seed=3)
    folds = patient_folds(sim.train, n_splits=3, seed=5)
    assert np.array_equal(folds, patient_folds(sim.train, n_splits=3, seed=5))
    runs = [cross_val_oof(_model(n_jobs), sim.train, folds, progress=False) for n_jobs in (1, 2)]
    for other in runs[1:]:
        assert np.array_equal(runs[0].oof, other.oof)
    X, y = split_xy(sim.train)
    predictions = [_model(n_jobs).fit(X, y).predict_proba(X) for n_jobs in (1, 2)]
    assert np.array_equal(predictions[0], predictions[1])


# ----------------------------------------------------------------------------- security
class _Payload:
    """Unpickling this object writes a sentinel file: proof that code ran."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self):  # noqa: ANN204
        return (Path.write_text, (self.sentinel, "pwned"))


def test_crafted_directory_cannot_run_code_on_load(tmp_path: Path) -> None:
    sim = simulate_slice3d(20, seed=4)
    X, y = split_xy(sim.train)
    model = LesionBoostClassifier(
        members=("lightgbm",), n_bags=1, lightgbm_params={"n_estimators": 5}
    ).fit(X, y)
    folder = save_model(model, tmp_path / "model")
    sentinel = tmp_path / "sentinel.txt"
    manifest_path = Path(folder) / "manifest.json"
    text = manifest_path.read_text()
    manifest = json.loads(text)
    # every member file becomes a pickle that would write the sentinel if loaded
    for member in Path(folder).rglob("*"):
        if member.is_file() and member.name != "manifest.json":
            member.write_bytes(pickle.dumps(_Payload(sentinel)))
    # plus files a careless loader might import or execute
    for name in ("__init__.py", "sitecustomize.py", "model.py", "hooks.pth"):
        (Path(folder) / name).write_text(f"open({str(sentinel)!r}, 'w').write('pwned')\n")
    # and a manifest that names code to import
    manifest_path.write_text(text.replace('"lesionboost.', '"os.system:lesionboost.'))
    with pytest.raises(ModelFileError):
        load_model(folder)
    # a fresh interpreter started inside the directory does not run it either
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import lesionboost\ntry:\n    lesionboost.load_model('.')\n"
            "except Exception:\n    pass",
        ],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    assert not sentinel.exists()
    assert manifest  # the original manifest was plain JSON


def test_the_command_line_never_opens_a_network_connection(sim_dir: Path, tmp_path: Path):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
        import socket

        def _blocked(*args, **kwargs):
            raise RuntimeError("lesionboost tried to use the network")

        _real_socket = socket.socket

        class _Socket(_real_socket):
            def __init__(self, family=socket.AF_INET, *args, **kwargs):
                if family in (socket.AF_INET, socket.AF_INET6):
                    _blocked()
                super().__init__(family, *args, **kwargs)

        socket.socket = _Socket
        socket.create_connection = _blocked
        socket.getaddrinfo = _blocked
        """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(guard), "OMP_NUM_THREADS": "1"}
    probe = subprocess.run(
        [sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 9))"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert "tried to use the network" in probe.stderr  # the guard is active

    def run(*argv: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "lesionboost", *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        assert "network" not in done.stderr

    run_dir = tmp_path / "run"
    run(
        "tune",
        "--data",
        str(sim_dir / "train-metadata.csv"),
        "--trials",
        "1",
        "--out",
        str(run_dir),
        "-q",
        *FAST_CLI,
    )
    run(
        "predict",
        "--model",
        str(run_dir / "model"),
        "--data",
        str(sim_dir / "test-metadata.csv"),
        "--out",
        str(tmp_path / "submission.csv"),
        "-q",
    )
    run("report", str(run_dir), "-q")
    assert (tmp_path / "submission.csv").read_text().startswith("isic_id,target")


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_atomic_outputs_get_the_mode_the_umask_gives(tmp_path: Path, mask: int) -> None:
    # mkstemp/mkdtemp create 0600 files and 0700 folders; the finished outputs must
    # look like any other file the user creates, under either umask.
    from lesionboost._utils._atomic import atomic_directory, atomic_path

    old = os.umask(mask)
    try:
        with atomic_path(tmp_path / "submission.csv") as tmp:
            tmp.write_text("isic_id,target\n")
        with atomic_directory(tmp_path / "model") as folder:
            (folder / "manifest.json").write_text("{}")
    finally:
        os.umask(old)
    assert (tmp_path / "submission.csv").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o777 & ~mask
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_replacing_an_existing_output_keeps_its_mode_and_tolerates_stale_parking(
    tmp_path: Path,
) -> None:
    from lesionboost._utils._atomic import atomic_directory, atomic_path

    private = tmp_path / "submission.csv"
    private.write_text("old\n")
    private.chmod(0o600)
    with atomic_path(private) as tmp:
        tmp.write_text("new\n")
    assert private.read_text() == "new\n" and private.stat().st_mode & 0o777 == 0o600
    # a parking folder left by a killed save of the same process id must not block saves
    model = tmp_path / "model"
    model.mkdir()
    stale = tmp_path / f".model.old-{os.getpid()}"
    (stale / "leftover").mkdir(parents=True)
    for version in ("1", "2"):
        with atomic_directory(model) as folder:
            (folder / "manifest.json").write_text(version)
        assert (model / "manifest.json").read_text() == version

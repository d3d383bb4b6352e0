"""Several workers on one Optuna storage: a journal file, and a real PostgreSQL server.

The PostgreSQL test reads its URL from ``LESIONBOOST_TEST_POSTGRES_URL`` (e.g.
``postgresql://postgres@127.0.0.1:5432/lesionboost_test``) and skips with the
reason when the variable is unset or the server cannot be reached. CI starts a
server, sets the URL and also sets ``LESIONBOOST_REQUIRE_POSTGRES=1``, which turns
those skips into failures so that a broken server cannot pass CI silently. Each
run uses a fresh study name and deletes it afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import NoReturn

import optuna
import pytest

from lesionboost.cli import main
from lesionboost.tuning import DEFAULTS_ATTR
from lesionboost.tuning._storage import WORKER_ATTR, StorageError, open_storage

FAST = ["--members", "lightgbm", "--rounds", "5", "--folds", "2", "--n-jobs", "1"]
POSTGRES_ENV = "LESIONBOOST_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "LESIONBOOST_REQUIRE_POSTGRES"


def _postgres_unavailable(reason: str) -> NoReturn:
    """Skip, or fail when the run requires PostgreSQL (CI sets the variable)."""
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(
            f"{reason}; {REQUIRE_POSTGRES_ENV}=1 requires the PostgreSQL test: set "
            f"{POSTGRES_ENV} to a reachable server (bash .ci/start-postgres.sh prints one), "
            f"or unset {REQUIRE_POSTGRES_ENV} to skip it",
            pytrace=False,
        )
    pytest.skip(reason)


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    assert main(["simulate", "--out", str(out), "--patients", "24", "--seed", "2", "-q"]) == 0
    return out / "train-metadata.csv"


def _finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]


def _check_union(study: optuna.Study, pids: set[int], n_trials: int) -> None:
    finished = _finished(study)
    # MaxTrialsCallback stops each worker once the study holds n_trials; a trial already
    # running in the other worker may still finish, so at most one extra.
    assert n_trials <= len(finished) <= n_trials + len(pids) - 1
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    by_worker = {t.user_attrs[WORKER_ATTR]["pid"] for t in finished}
    assert by_worker == pids  # both workers contributed trials to the one study
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(params) == len(set(params))  # no configuration evaluated twice
    assert sum(bool(t.user_attrs.get(DEFAULTS_ATTR)) for t in study.trials) == 1
    assert not [t for t in study.trials if t.state.name == "RUNNING"]


def _two_machines(storage: str, study_name: str, train_csv: Path, tmp_path: Path) -> None:
    """Two independent `lesionboost tune` processes on one storage, as on two machines."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lesionboost",
                "tune",
                "--data",
                str(train_csv),
                "--storage",
                storage,
                "--study",
                study_name,
                "--trials",
                "4",
                "--out",
                str(tmp_path / f"m{i}"),
                "--json",
                "-q",
                *FAST,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    _check_union(study, {p.pid for p in processes}, 4)
    summaries = [json.loads(out) for out, _ in outputs]
    assert max(s["best_value"] for s in summaries) == pytest.approx(study.best_value)


def test_two_processes_share_one_journal_file(train_csv, tmp_path) -> None:
    _two_machines(f"journal:{tmp_path / 'shared.journal'}", "shared", train_csv, tmp_path)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_processes_share_one_postgresql_database(train_csv, tmp_path) -> None:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        _postgres_unavailable(
            f"{POSTGRES_ENV} is not set; point it at a PostgreSQL database "
            "to run the multi-machine test (CI starts a server and sets it)"
        )
    try:
        open_storage(url)
    except StorageError as exc:
        _postgres_unavailable(f"PostgreSQL from {POSTGRES_ENV} is not reachable: {exc}")
    name = f"lesionboost-test-{uuid.uuid4().hex[:8]}"
    try:
        _two_machines(url, name, train_csv, tmp_path)
    finally:
        try:
            optuna.delete_study(study_name=name, storage=open_storage(url))
        except KeyError:
            pass


@pytest.mark.slow
def test_workers_option_starts_processes_on_a_journal_file(train_csv, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    code = main(
        [
            "tune",
            "--data",
            str(train_csv),
            "--workers",
            "2",
            "--trials",
            "4",
            "--out",
            str(run),
            "--json",
            "-q",
            *FAST,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert (run / "study.journal").exists() and not (run / "study.db").exists()
    study = optuna.load_study(
        study_name="lesionboost", storage=open_storage(f"journal:{run / 'study.journal'}")
    )
    pids = {t.user_attrs[WORKER_ATTR]["pid"] for t in _finished(study)}
    assert os.getpid() not in pids and len(pids) == 2
    _check_union(study, pids, 4)
    assert json.loads(out)["best_value"] == pytest.approx(study.best_value)
    assert (run / "model" / "manifest.json").exists()

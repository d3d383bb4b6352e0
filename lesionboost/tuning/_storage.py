"""Optuna storages for :mod:`lesionboost.tuning`: opening them, and recovering dead workers.

Which storage for which job
---------------------------
===============================  ==============================================================
``None``                         in memory: one process, nothing survives it (the API default)
``sqlite:///run/study.db``       one process, resumable (the CLI default: ``RUN_DIR/study.db``)
``journal:run/study.journal``    several processes on one machine (Optuna's journal file; the
                                 CLI default with ``--workers N > 1``); a path ending in
                                 ``.journal`` or ``.log`` means the same
``postgresql://u:p@host/db``     several machines; any SQLAlchemy URL works (MySQL too)
===============================  ==============================================================

SQLite serialises writers with a file lock, so parallel workers on one SQLite
file end in "database is locked": use the journal file on one machine and a
server database across machines.

Dead workers
------------
A worker killed mid-trial (SIGKILL, OOM, a lost machine) leaves its trial in
state RUNNING forever. Two mechanisms turn such trials into FAIL and queue a
copy of their parameters (state WAITING) so the next worker re-runs them:

* relational storages get Optuna's heartbeat (``heartbeat_interval``,
  ``grace_period``): a trial whose worker has not written a heartbeat for the
  grace period is failed by the next worker that starts a trial;
* every storage -- including the journal file, which has no heartbeat in
  Optuna 5 -- gets lesionboost's own check: each trial records the host, pid
  and process start time of its worker in the user attribute
  ``lesionboost_worker``; :func:`recover_stale_trials` fails RUNNING trials
  whose worker runs on this host and no longer exists (pid gone, or reused by
  another process). It runs when a worker starts and after every trial, so a
  resumed run re-queues the interrupted trial immediately instead of waiting
  for a grace period. Trials of workers on other hosts are left to the
  heartbeat.
"""

from __future__ import annotations

import copy
import datetime
import logging
import os
import socket
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from ..exceptions import StorageError

__all__ = [
    "StorageError",
    "open_storage",
    "mask_url",
    "describe_storage",
    "is_sqlite",
    "is_in_memory",
    "storage_file",
    "worker_identity",
    "recover_stale_trials",
    "WORKER_ATTR",
]

logger = logging.getLogger(__name__)

#: trial user attribute that records which process runs the trial.
WORKER_ATTR = "lesionboost_worker"

_JOURNAL_SUFFIXES = (".journal", ".log", ".jsonl")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def _parsed(url: str) -> Any | None:
    """SQLAlchemy's reading of ``url``, or ``None`` when it is not a database URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def mask_url(url: str) -> str:
    """Return ``url`` with its password hidden, parsed and rendered by SQLAlchemy.

    A URL SQLAlchemy cannot parse is never echoed (it may hold a secret), and a
    URL whose password holds an unencoded ``@`` is shown without its credentials.

    Examples
    --------
    >>> mask_url("postgresql://tuner:s3cret@db.example:5432/optuna")
    'postgresql://tuner:***@db.example:5432/optuna'
    >>> mask_url("postgresql://tuner:ab/cd@db/optuna")
    'postgresql://tuner:***@db/optuna'
    >>> mask_url("sqlite:///runs/demo/study.db")
    'sqlite:///runs/demo/study.db'
    """
    parsed = _parsed(url)
    if parsed is None:
        return "<a storage URL that could not be parsed>"
    if parsed.host and "@" in parsed.host:
        return f"{parsed.drivername}://***@<host> (the password holds an unencoded '@')"
    rendered: str = parsed.render_as_string(hide_password=True)
    return rendered


def _without_secret(text: str, url: str) -> str:
    """``text`` with every spelling of ``url``'s password (raw or percent-encoded) hidden."""
    parsed = _parsed(url)
    password = None if parsed is None else parsed.password
    if not password:
        return text
    from urllib.parse import quote, quote_plus

    for form in sorted(
        {password, quote(password, safe=""), quote_plus(password)}, key=len, reverse=True
    ):
        text = text.replace(form, "***")
    return text


def _journal_path(url: str) -> Path | None:
    if url.startswith("journal:"):
        rest = url[len("journal:") :]
        if rest.startswith("///"):
            rest = rest[2:]  # journal:///abs/path -> /abs/path
        elif rest.startswith("//"):
            rest = rest[2:]
        return Path(rest)
    if "://" not in url and url.lower().endswith(_JOURNAL_SUFFIXES):
        return Path(url)
    return None


def normalise_url(url: str) -> str:
    """Map the accepted spellings of a storage to one canonical string.

    A bare ``*.db``/``*.sqlite`` path becomes ``sqlite:///ABS``; a bare
    ``*.journal``/``*.log`` path or ``journal:PATH`` becomes
    ``journal:ABS``; any other URL is returned unchanged.
    """
    journal = _journal_path(url)
    if journal is not None:
        return f"journal:{journal.expanduser().resolve()}"
    if "://" not in url and url.lower().endswith(_SQLITE_SUFFIXES):
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    return url


def is_sqlite(url: str | None) -> bool:
    """True for a SQLite storage, however spelled (``sqlite:///...`` or a bare ``*.db`` path)."""
    return url is not None and normalise_url(url).startswith("sqlite")


def is_in_memory(url: str | None) -> bool:
    """True for the in-memory storage (``None``, ``""`` or ``":memory:"``)."""
    return url is None or url in ("", ":memory:")


def storage_file(url: str | None) -> Path | None:
    """The file behind a SQLite or journal storage; ``None`` for memory or a server."""
    if url is None or is_in_memory(url):
        return None
    canonical = normalise_url(url)
    if canonical.startswith("sqlite:///"):
        return Path(canonical[len("sqlite:///") :])
    return _journal_path(canonical)


def describe_storage(url: str | None) -> str:
    """One human-readable line about a storage URL (password masked)."""
    if not url:
        return "in-memory storage (not resumable)"
    canonical = normalise_url(url)
    if canonical.startswith("journal:"):
        return f"journal file {canonical[len('journal:') :]}"
    return mask_url(canonical)


def _engine_kwargs(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Wait for a competing writer instead of failing at once with "database is locked".
        return {"connect_args": {"timeout": 60}}
    if url.startswith(("postgresql", "postgres")):
        # Fail fast on an unreachable server, and survive connections dropped while idle.
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    if url.startswith("mysql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {}


def open_storage(
    url: str | None,
    *,
    heartbeat_interval: int = 30,
    grace_period: int | None = 120,
    max_retry: int = 3,
) -> BaseStorage | None:
    """Open the Optuna storage named by ``url`` (``None`` = in memory).

    Parameters
    ----------
    url : str or None
        ``None`` for in-memory; ``journal:PATH`` or a path ending in
        ``.journal``/``.log`` for Optuna's journal file; a path ending in
        ``.db``/``.sqlite`` for SQLite; any SQLAlchemy URL
        (``postgresql://user:password@host:5432/db``) for a database server.
    heartbeat_interval, grace_period : int
        Heartbeat of relational storages: a RUNNING trial whose worker has not
        written a heartbeat for ``grace_period`` seconds is failed and retried.
    max_retry : int, default=3
        How often a trial left behind by a dead worker is re-queued.

    Returns
    -------
    optuna.storages.BaseStorage or None

    Raises
    ------
    StorageError
        The storage cannot be opened (server unreachable, bad credentials,
        missing driver, unknown scheme, missing folder); the message names the
        URL with its password masked.

    Examples
    --------
    >>> open_storage(None) is None
    True
    """
    if url is None or is_in_memory(url):
        return None
    canonical = normalise_url(url)
    shown = describe_storage(url)
    journal = _journal_path(canonical)
    parsed = _parsed(canonical) if journal is None else None
    if parsed is not None and parsed.host and "@" in parsed.host:
        raise StorageError(
            f"Cannot open the Optuna storage {shown}: the password holds an unencoded '@'. "
            "Percent-encode it in the URL (@ -> %40, / -> %2F, : -> %3A, % -> %25)."
        )
    try:
        if journal is not None:
            if not journal.parent.is_dir():
                raise FileNotFoundError(f"the folder {journal.parent} does not exist")
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(str(journal)))
        if "://" not in canonical:
            raise ValueError(
                "expected a SQLAlchemy URL (sqlite:///path.db, postgresql://user@host/db), "
                "journal:PATH, or a path ending in .db or .journal"
            )
        database = storage_file(canonical)
        if database is not None and not database.parent.is_dir():
            raise FileNotFoundError(f"the folder {database.parent} does not exist")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                _with_driver(canonical),
                engine_kwargs=_engine_kwargs(canonical),
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=_RetryStaleTrial(max_retry=max_retry),
            )
    except StorageError:
        raise
    except Exception as exc:  # sqlalchemy, driver and OS errors all mean "cannot open"
        reason = _without_secret(" ".join(str(exc).split())[:300], canonical)
        reason = reason.rstrip(". ") or type(exc).__name__
        if isinstance(exc, ImportError):
            hint = 'Install the database driver, e.g. pip install "lesionboost[postgres]".'
        elif isinstance(exc, FileNotFoundError):
            hint = "Create the folder first or choose another path."
        elif isinstance(exc, ValueError) and journal is None and "://" not in canonical:
            hint = "Pass a storage URL or file path of one of those kinds."
        elif "Can't load plugin" in reason:
            hint = "The URL names no database SQLAlchemy knows (postgresql, mysql, sqlite...)."
        else:
            hint = (
                "Check that the server is running and reachable, and that the URL, "
                "user and password are right."
            )
        raise StorageError(f"Cannot open the Optuna storage {shown}: {reason}. {hint}") from exc


def _with_driver(url: str) -> str:
    """Pick an installed PostgreSQL driver when the URL names none.

    SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3 while older releases map
    it to psycopg2; either driver works for Optuna, so use whichever is installed.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    import importlib.util

    for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    return f"postgresql://{rest}"  # let SQLAlchemy raise its ImportError


class _RetryStaleTrial:
    """Queue a copy of a failed trial's parameters (state WAITING), at most ``max_retry`` times.

    Like Optuna's ``RetryHeartbeatStaleTrialCallback``, but the copy does not
    inherit the dead worker's identity attribute (a copy that is picked up must
    not look dead to :func:`recover_stale_trials`).
    """

    def __init__(self, *, max_retry: int = 3) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
        if len(history) > self.max_retry:
            logger.warning(
                "trial %d failed %d times; not retrying it again", trial.number, len(history)
            )
            return
        user_attrs = {k: v for k, v in trial.user_attrs.items() if k != WORKER_ATTR}
        system_attrs = {
            **trial.system_attrs,
            "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
            "retry_history": history,
        }
        study.add_trial(
            optuna.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs=user_attrs,
                system_attrs=system_attrs,
            )
        )
        logger.info("re-queued the parameters of trial %d (left by a dead worker)", trial.number)


def _process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to detect pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after the closing ')' are fixed.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of proc(5)
    except (IndexError, ValueError):
        return None


def worker_identity() -> dict[str, Any]:
    """Host, pid and process start time of the calling process."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _process_start(pid)}


def _is_dead(identity: Any) -> bool:
    """True only when the worker surely is gone: same host, and its pid is free or reused."""
    if not isinstance(identity, dict) or identity.get("host") != socket.gethostname():
        return False
    pid = identity.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by someone else
    recorded, current = identity.get("start"), _process_start(pid)
    return recorded is not None and current is not None and recorded != current


def _unstamped_and_old(trial: optuna.trial.FrozenTrial) -> bool:
    """A RUNNING trial that never got a worker identity, started long enough ago.

    Workers stamp their identity the moment a trial is created (a storage round
    trip later), so such a trial comes from a process killed in between.
    """
    if WORKER_ATTR in trial.user_attrs or trial.datetime_start is None:
        return False
    age = datetime.datetime.now() - trial.datetime_start
    return age.total_seconds() > UNSTAMPED_GRACE_SECONDS


#: Seconds after which a RUNNING trial without a worker identity counts as abandoned.
UNSTAMPED_GRACE_SECONDS = 30.0


def recover_stale_trials(study: optuna.Study, *, max_retry: int = 3) -> list[int]:
    """Fail and re-queue RUNNING trials whose worker process on this host is gone.

    Also fails RUNNING trials that never received a worker identity and started
    more than :data:`UNSTAMPED_GRACE_SECONDS` ago. Returns the numbers of the
    trials that were failed.
    """
    recovered = []
    retry = _RetryStaleTrial(max_retry=max_retry)
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not (_is_dead(trial.user_attrs.get(WORKER_ATTR)) or _unstamped_and_old(trial)):
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        logger.warning(
            "trial %d was left RUNNING by a dead worker (pid %s); marked it failed",
            trial.number,
            (trial.user_attrs.get(WORKER_ATTR) or {}).get("pid", "unknown"),
        )
        recovered.append(trial.number)
        retry(study, copy.deepcopy(storage.get_trial(trial._trial_id)))
    return recovered

"""Optuna tuning of :class:`~lesionboost.LesionBoostClassifier` on patient-grouped folds.

- :func:`tune` -- create or resume a study and run it (``_tune.py``);
- :class:`PatientCVObjective` -- one trial: fit every fold, report each fold's pAUC
  to the Wilcoxon pruner (``_objective.py``);
- the samplers, progress and worker processes (``_runner.py``);
- :class:`SearchSpace` and :func:`build_config` (``_space.py``);
- opening SQLite, journal and PostgreSQL storages, and recovering the trials of
  dead workers (``_storage.py``).

See ``docs/tuning.md`` for the search space and the pruner, and ``docs/usage.md``
(section "Tuning: resume, workers, machines") for resuming, several workers and several
machines.
"""

from ..exceptions import StorageError, TuningError
from ._objective import PatientCVObjective, check_training_data, data_fingerprint
from ._space import TUNED_MEMBERS, SearchSpace, build_config
from ._tune import DEFAULTS_ATTR, TuneResult, open_study, trial_history, tune

__all__ = [
    "tune",
    "TuneResult",
    "SearchSpace",
    "TUNED_MEMBERS",
    "PatientCVObjective",
    "StorageError",
    "TuningError",
    "build_config",
    "check_training_data",
    "data_fingerprint",
    "open_study",
    "trial_history",
    "DEFAULTS_ATTR",
]

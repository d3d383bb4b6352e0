"""The SLICE-3D simulator: the exact Kaggle schema, calibrated distributions, a known
risk per lesion (the *oracle*) and rendered crops.

- :func:`simulate_slice3d`, :func:`write_slice3d`, :func:`render_images` --
  draw a cohort and write the Kaggle files (``_simulator.py``);
- the calibration tables loaded at run time (``_tables.py``, ``_tables.json``);
- patients, lesions and body positions (``_population.py``); the malignancy risk,
  follow-up and train-only columns (``_risk.py``); JPEG crops (``_render.py``);
- :data:`SCENARIOS`, :data:`MECHANISMS`, :func:`mixture_weights` -- the alternative
  malignancy mechanisms ``simulate_slice3d(..., scenario=...)`` accepts, and
  :func:`mechanism_terms`, the terms each mechanism sums (``_scenarios.py``);
- :func:`univariate_aucs` -- per-column AUCs, to compare a cohort with real data
  (``_fidelity.py``);
- the offline fit of the tables from a real sample (``_calibrate.py``,
  ``_riskfit.py``), never imported by the simulator;
- :class:`RiskModel`, :func:`risk_features`, :data:`TERM_NAMES`, :func:`term_masks`,
  :func:`within_group_z`, :data:`LOCATIONS`, :data:`LOCATION_WEIGHTS`, :data:`CENTRES`,
  :func:`load_tables`, :func:`covariates` -- for analysis and benchmarks (``covariates``
  is loaded from the calibration code on first access only).

The generative story and the fidelity checks are in ``docs/simulator.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._fidelity import univariate_aucs
from ._population import LOCATION_WEIGHTS, LOCATIONS
from ._risk import TERM_NAMES, RiskModel, risk_features, within_group_z
from ._risk import _masks as term_masks
from ._scenarios import MECHANISMS, SCENARIOS, mechanism_terms, mixture_weights
from ._simulator import SimulatedSLICE3D, render_images, simulate_slice3d, write_slice3d
from ._tables import CENTRES, load_tables

__all__ = [
    "SimulatedSLICE3D",
    "simulate_slice3d",
    "write_slice3d",
    "render_images",
    "univariate_aucs",
    "SCENARIOS",
    "MECHANISMS",
    "mixture_weights",
    # for analysis and benchmarks
    "RiskModel",
    "risk_features",
    "TERM_NAMES",
    "term_masks",
    "within_group_z",
    "mechanism_terms",
    "LOCATIONS",
    "LOCATION_WEIGHTS",
    "CENTRES",
    "load_tables",
    "covariates",
]

# public name -> (offline module, its name there); imported on first access (PEP 562), so
# that running the simulator never imports the calibration code
_LAZY = {"covariates": ("._calibrate", "_covariates")}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module, __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._calibrate import _covariates as covariates

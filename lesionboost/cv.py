"""Alias of :mod:`lesionboost.model_selection`, kept so that ``lesionboost.cv`` imports work."""

from .model_selection import (
    centre_folds,
    patient_folds,
    patients_in_several_folds,
    repeated_patient_folds,
)

__all__ = [
    "centre_folds",
    "patient_folds",
    "patients_in_several_folds",
    "repeated_patient_folds",
]

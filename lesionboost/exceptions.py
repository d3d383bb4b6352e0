"""Exceptions and warnings raised by lesionboost.

Every error raised on purpose by lesionboost subclasses :class:`LesionBoostError`
*and* the builtin exception a user would naturally catch (``ValueError``,
``KeyError``, ``OSError``, ``ImportError``, ``RuntimeError``), so
``except ValueError`` keeps working.

Examples
--------
>>> from lesionboost.exceptions import LesionBoostError, SchemaError
>>> issubclass(SchemaError, ValueError) and issubclass(SchemaError, LesionBoostError)
True
"""

from __future__ import annotations

__all__ = [
    "LesionBoostError",
    "SchemaError",
    "ModelFileError",
    "ImageStoreError",
    "MissingImageError",
    "OptionalDependencyError",
    "OutputError",
    "StorageError",
    "TuningError",
    "DataWarning",
]


class LesionBoostError(Exception):
    """Base class of every error lesionboost raises on purpose."""


class SchemaError(LesionBoostError, ValueError):
    """Metadata does not follow the SLICE-3D column contract.

    The message names the file (when there is one), the column, the first
    offending rows and what to do about it.
    """


class ModelFileError(LesionBoostError, ValueError):
    """A saved model directory is missing, tampered with, truncated or incompatible."""


class ImageStoreError(LesionBoostError, OSError):
    """An image file cannot be opened as a SLICE-3D HDF5 image store."""


class MissingImageError(LesionBoostError, KeyError):
    """An ``isic_id`` has no image in the store."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the sentence readable
        return str(self.args[0]) if self.args else ""


class OptionalDependencyError(LesionBoostError, ImportError):
    """An optional dependency needed for the requested feature is not installed."""


class OutputError(LesionBoostError, FileExistsError):
    """An output would replace a file lesionboost did not write, or an input.

    Raised before any work is done; the message names the path and what to do.
    """


class StorageError(LesionBoostError, ConnectionError):
    """An Optuna storage cannot be opened or reached; the message names the masked URL."""


class TuningError(LesionBoostError, RuntimeError):
    """Tuning could not produce a result (no trial finished, a worker process failed)."""


class DataWarning(UserWarning):
    """Input is usable but suspicious (out-of-range values, unknown levels, dropped columns)."""

"""Private helpers shared across lesionboost: atomic writes, frame conversion, optional
imports and :func:`show_versions`. Nothing here imports from the rest of the package."""

from ._atomic import atomic_directory, atomic_path
from ._frame import to_polars
from ._imports import import_optional
from ._outputs import MARKER, check_file_output, check_folder_output, claim, foreign_entries
from ._show_versions import collect_versions, show_versions

__all__ = [
    "MARKER",
    "check_file_output",
    "check_folder_output",
    "claim",
    "foreign_entries",
    "atomic_directory",
    "atomic_path",
    "collect_versions",
    "import_optional",
    "show_versions",
    "to_polars",
]

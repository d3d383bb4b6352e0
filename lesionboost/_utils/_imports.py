"""Lazy imports of optional dependencies with an install hint.

Heavy or optional libraries (catboost, onnxruntime, torch, matplotlib) are imported
only where they are used, so ``import lesionboost`` stays fast and a missing
library produces an error that says exactly what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..exceptions import OptionalDependencyError

# module name -> extra of the lesionboost distribution that installs it
_EXTRA_FOR = {
    "onnxruntime": "image",
    "onnx": "image",
    "torch": "train-image",
    "matplotlib": "report",
    "psycopg2": "postgres",
    "distributed": "dask",
    "dask": "dask",
}


def import_optional(name: str, *, purpose: str = "") -> ModuleType:
    """Import ``name`` or raise :class:`OptionalDependencyError` with an install hint.

    Parameters
    ----------
    name : str
        Module to import, e.g. ``"onnxruntime"``.
    purpose : str, optional
        What the module is needed for, used in the message.

    Returns
    -------
    module : ModuleType
        The imported module.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        extra = _EXTRA_FOR.get(name.split(".")[0])
        hint = (
            f'pip install "lesionboost[{extra}]"' if extra else f"pip install {name.split('.')[0]}"
        )
        what = f" for {purpose}" if purpose else ""
        raise OptionalDependencyError(
            f"The optional dependency {name!r} is needed{what} but is not installed "
            f"({exc}). Install it with: {hint}"
        ) from exc

"""``show_versions()``: what a bug report needs to know about this machine."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
from typing import Any

__all__ = ["show_versions", "collect_versions"]

_PACKAGES = (
    "lesionboost",
    "numpy",
    "polars",
    "scikit-learn",
    "lightgbm",
    "xgboost",
    "catboost",
    "optuna",
    "h5py",
    "pillow",
    "tqdm",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnx",
    "torch",
    "matplotlib",
)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cuda() -> dict[str, Any]:
    info: dict[str, Any] = {"nvidia_smi": None, "onnxruntime_providers": None}
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            info["nvidia_smi"] = out.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        ort = importlib.import_module("onnxruntime")
        info["onnxruntime_providers"] = list(ort.get_available_providers())
    except ImportError:
        pass
    xgb_version = _version("xgboost") or _version("xgboost-cpu")
    if xgb_version:
        try:
            xgb = importlib.import_module("xgboost")
            info["xgboost_cuda_build"] = bool(xgb.build_info().get("USE_CUDA", False))
        except Exception:  # build_info differs between releases; never fail a report
            info["xgboost_cuda_build"] = None
    return info


def collect_versions() -> dict[str, Any]:
    """Return the versions, platform and CUDA facts that :func:`show_versions` prints."""
    packages = {name: _version(name) for name in _PACKAGES}
    if packages.get("xgboost") is None:
        packages["xgboost"] = _version("xgboost-cpu")
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": packages,
        "cuda": _cuda(),
    }


def show_versions(*, as_json: bool = False) -> None:
    """Print library versions, onnxruntime providers and CUDA availability.

    Parameters
    ----------
    as_json : bool, default=False
        Print one JSON object instead of aligned text.
    """
    facts = collect_versions()
    if as_json:
        print(json.dumps(facts, indent=2))
        return
    print(f"python     : {facts['python']}")
    print(f"platform   : {facts['platform']}")
    for name, version in facts["packages"].items():
        print(f"{name:<16}: {version or 'not installed'}")
    for name, value in facts["cuda"].items():
        print(f"{name:<16}: {value}")

"""Packaging promises: light import, public API, the command's basics."""

from __future__ import annotations

import subprocess
import sys

import lesionboost
from lesionboost.cli import main


def test_import_does_not_load_heavy_optional_libraries() -> None:
    code = (
        "import sys, lesionboost, lesionboost.cli; "
        "heavy = [m for m in ('catboost', 'onnxruntime', 'torch', 'matplotlib') "
        "if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_public_name_resolves() -> None:
    for name in lesionboost.__all__:
        assert getattr(lesionboost, name) is not None, name


def test_errors_subclass_the_builtins_users_catch() -> None:
    assert issubclass(lesionboost.SchemaError, ValueError)
    assert issubclass(lesionboost.MissingImageError, KeyError)
    assert issubclass(lesionboost.ModelFileError, lesionboost.LesionBoostError)


def test_version_help_and_usage_exit_codes(capsys) -> None:
    assert main(["--version"]) == 0
    assert lesionboost.__version__ in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert main([]) == 2
    assert main(["no-such-command"]) == 2


def test_python_dash_m_is_the_same_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lesionboost", "show-versions", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    import json

    facts = json.loads(out.stdout)
    assert facts["packages"]["lesionboost"] == lesionboost.__version__
    assert "onnxruntime_providers" in facts["cuda"]

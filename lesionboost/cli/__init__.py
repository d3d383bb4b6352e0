"""The ``lesionboost`` command line: small subcommands over the library.

- :func:`main` -- parse, run one subcommand, map errors to exit codes (``_main.py``);
- :func:`build_parser` -- every subcommand's arguments (``_parsers.py``);
- shared output flags, exit codes and logging (``_output.py``);
- one module per command group: ``_data.py`` (``simulate``, ``embed``,
  ``show-versions``), ``_tune.py`` (``tune``), ``_predict.py`` (``predict``),
  ``_report.py`` (``report``), ``_cv.py`` (``cv``), ``_evaluate.py``
  (``evaluate``), ``_compare.py`` (``compare``), each imported only when its
  command runs; ``_runs.py`` reads the folders ``cv`` writes.
"""

from ._main import main
from ._parsers import build_parser

__all__ = ["main", "build_parser"]

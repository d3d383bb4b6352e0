"""What the two report folders share: their marker, and the pieces of their HTML pages.

:func:`~lesionboost.report.write_report` writes a folder claimed by
:data:`WRITTEN_BY` and :func:`~lesionboost.report.write_evaluation_report` one
claimed by :data:`EVALUATION_WRITTEN_BY` (so a new report replaces an earlier one
of its own kind, never the other kind), each holding one self-contained
``index.html``: key-value tables, the plots embedded as base64 PNGs so
the page can be mailed or attached to a ticket as a single file, and one style sheet.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._utils._outputs import read_marker

#: The marker of a run's report folder (``lesionboost report``).
WRITTEN_BY = "lesionboost report"
#: The marker of an evaluation report folder (``lesionboost cv`` and ``lesionboost evaluate``).
EVALUATION_WRITTEN_BY = "lesionboost evaluate"
#: The marker of a cv run folder (``lesionboost cv``), which holds an evaluation report.
CV_RUN_WRITTEN_BY = "lesionboost cv"
#: The other marker an evaluation report folder may carry (:data:`WRITTEN_BY`): such a
#: folder is an evaluation report when it is a cv run's ``report/`` entry or holds the
#: model card, which only evaluation reports write.
CV_REPORT_ALSO_WRITTEN_BY = WRITTEN_BY


def evaluation_report_markers(folder: str | os.PathLike[str]) -> tuple[str, ...]:
    """Markers besides :data:`EVALUATION_WRITTEN_BY` that make ``folder`` an evaluation report.

    :data:`CV_REPORT_ALSO_WRITTEN_BY` when ``folder`` is the ``report/`` entry of a
    cv run folder or its marker lists ``model_card.json``; else none.
    """
    path = Path(folder).resolve()
    run = read_marker(path.parent)
    if run is not None and run.get("written_by") == CV_RUN_WRITTEN_BY:
        if path.name == "report" and path.name in run["entries"]:
            return (CV_REPORT_ALSO_WRITTEN_BY,)
    own = read_marker(path)
    if own is not None and "model_card.json" in own["entries"]:
        return (CV_REPORT_ALSO_WRITTEN_BY,)
    return ()


# the style sheet of both pages
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
    "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left;font-size:0.9em}th{background:#f4f4f4}figure{display:inline-block;"
    "margin:0.5em}img{max-width:520px}figcaption{text-align:center;font-size:0.9em}"
)


def _html_table(rows: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>"


def _html_figures(plot_files: Mapping[str, str], images: Mapping[str, bytes]) -> str:
    """The drawn plots of ``plot_files`` (file name -> caption) embedded in page order."""
    return "".join(
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(images[name]).decode("ascii")}"><figcaption>'
        f"{html.escape(caption)}</figcaption></figure>"
        for name, caption in plot_files.items()
        if name in images
    )

"""Report plots and the self-contained HTML page, drawn from a synthetic run folder."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("matplotlib", reason="the report needs matplotlib (extra 'report')")

from PIL import Image  # noqa: E402

from lesionboost.metrics import pauc_above_tpr  # noqa: E402
from lesionboost.report import (  # noqa: E402
    PLOT_FILES,
    plot_calibration,
    plot_fold_scores,
    plot_history,
    plot_importances,
    plot_roc,
    write_report,
)


def _scores(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < 0.03).astype(int)
    score = 1 / (1 + np.exp(-(rng.normal(size=n) + 2.5 * y - 3)))
    folds = rng.integers(0, 5, n)
    return y, score, folds


def _fake_run(tmp_path: Path) -> Path:
    y, score, folds = _scores()
    run = tmp_path / "run"
    run.mkdir()
    pl.DataFrame(
        {
            "isic_id": [f"ISIC_{i:07d}" for i in range(len(y))],
            "patient_id": [f"IP_{i // 20:07d}" for i in range(len(y))],
            "fold": folds.astype(np.int8),
            "target": y.astype(np.int8),
            "score": score,
        }
    ).write_parquet(run / "oof.parquet")
    history = [
        {"number": 0, "state": "COMPLETE", "value": 0.15, "defaults": True},
        {"number": 1, "state": "PRUNED", "value": 0.11, "defaults": False},
        {"number": 2, "state": "COMPLETE", "value": 0.16, "defaults": False},
        {"number": 3, "state": "FAIL", "value": None, "defaults": False},
    ]
    best = {
        "study_name": "demo<study>",
        "storage": "sqlite:///x.db",
        "best_trial": 2,
        "best_value": 0.16,
        "defaults_value": 0.15,
        "fold_mean": 0.158,
        "fold_sd": 0.01,
        "n_trials": {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1},
        "n_splits": 5,
        "seed": 0,
        "data": {
            "n_rows": len(y),
            "n_patients": 150,
            "n_positive": int(y.sum()),
            "source": "synthetic",
        },
        "best_params": {"neg_ratio": 0.02, "lightgbm_params": {"learning_rate": 0.05}},
        "history": history,
        "feature_importances": {"size_z": 0.3, "hue": 0.2, "age": 0.1},
    }
    (run / "best.json").write_text(json.dumps(best))
    return run


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_roc_title_prints_the_official_pauc_and_shades_the_scored_region() -> None:
    y, score, _ = _scores()
    fig = plot_roc(y, score)
    ax = fig.axes[0]
    assert f"{pauc_above_tpr(y, score):.4f}" in ax.get_title()
    shaded = [c for c in ax.collections if c.get_label().startswith("scored region")]
    assert len(shaded) == 1
    # Every shaded vertex lies at or above TPR = 0.8.
    vertices = np.concatenate([p.vertices for p in shaded[0].get_paths()])
    assert vertices[:, 1].min() >= 0.8 - 1e-9


def test_fold_history_importance_and_calibration_plots() -> None:
    assert len(plot_fold_scores([0.15, 0.17, 0.16]).axes[0].patches) == 3
    fig = plot_history(
        [
            {"number": 0, "state": "COMPLETE", "value": 0.1, "defaults": True},
            {"number": 1, "state": "COMPLETE", "value": 0.2},
            {"number": 2, "state": "COMPLETE", "value": 0.15},
        ]
    )
    best_line = [line for line in fig.axes[0].lines if line.get_label() == "best so far"][0]
    assert list(best_line.get_ydata()) == [0.1, 0.2, 0.2]
    bars = plot_importances({"a": 1.0, "b": 3.0, "c": 2.0}, top=2).axes[0].patches
    assert sorted(round(b.get_width(), 6) for b in bars) == [2.0, 3.0]
    y, score, _ = _scores()
    ax = plot_calibration(y, score, n_bins=5).axes[0]
    assert ax.get_yscale() == "log"
    observed = ax.lines[0].get_ydata()
    assert np.all(np.diff(observed) >= -0.02)  # the malignant rate rises with the score


def test_write_report_writes_valid_pngs_and_a_self_contained_page(tmp_path: Path) -> None:
    run = _fake_run(tmp_path)
    out = write_report(run)
    assert out == run / "report"
    for name in PLOT_FILES:
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG"
    page = _Page()
    page.feed((out / "index.html").read_text(encoding="utf-8"))
    assert len(page.images) == len(PLOT_FILES)
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert Image.open(io.BytesIO(png)).format == "PNG"
    text = " ".join(page.text)
    assert "0.1600" in text and "0.1500" in text  # best and defaults pAUC
    assert "demo<study>" in text  # escaped in the markup, shown as written
    assert "2 / 1 / 1" in text  # complete / pruned / failed


def test_report_replaces_its_own_report_only_and_needs_a_finished_run(tmp_path: Path) -> None:
    from lesionboost.exceptions import OutputError

    run = _fake_run(tmp_path)
    first = write_report(run)
    (first / "index.html").write_text("old")
    write_report(run)  # an earlier report is replaced
    assert (first / "index.html").read_text() != "old"
    (first / "stale.txt").write_text("the user's")
    with pytest.raises(OutputError, match="stale.txt"):
        write_report(run)  # ... but never a file lesionboost did not write
    assert (first / "stale.txt").read_text() == "the user's"
    with pytest.raises(OutputError, match="holds the input"):
        write_report(run, out_dir=run)  # nor the run folder, whose files are the input
    assert (run / "best.json").exists() and (run / "oof.parquet").exists()
    (first / "stale.txt").unlink()
    (run / "oof.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="oof.parquet"):
        write_report(run)


def test_fold_scores_are_recomputed_when_best_json_has_none(tmp_path: Path) -> None:
    run = _fake_run(tmp_path)
    best = json.loads((run / "best.json").read_text())
    best.pop("fold_scores", None)
    (run / "best.json").write_text(json.dumps(best))
    out = write_report(run, out_dir=tmp_path / "elsewhere")
    assert (out / "fold_pauc.png").stat().st_size > 1000


def test_importing_the_report_module_does_not_import_matplotlib() -> None:
    code = "import sys, lesionboost.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

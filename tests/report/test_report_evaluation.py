"""The evaluation report and model card, drawn from an evaluation of synthetic scores."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("matplotlib", reason="the report needs matplotlib (extra 'report')")

from PIL import Image  # noqa: E402

from lesionboost.evaluation import Evaluation, evaluate  # noqa: E402
from lesionboost.exceptions import OutputError  # noqa: E402
from lesionboost.report import (  # noqa: E402
    EVALUATION_PLOT_FILES,
    centre_table,
    model_card,
    plot_reliability,
    write_evaluation_report,
)
from lesionboost.simulate import simulate_slice3d  # noqa: E402

CONTEXT = {
    "data": {"source": "simulated (40 patients, seed 0)", "simulated": True},
    "validation": {"scheme": "patient", "description": "3-fold patient-grouped CV"},
    "model": {"name": "LesionBoostClassifier", "configuration": {"n_bags": 1}},
}


@pytest.fixture(scope="module")
def scored() -> tuple[pl.DataFrame, Evaluation, Evaluation]:
    """Simulated lesions, scores that rank them imperfectly, and two evaluations."""
    train = simulate_slice3d(40, seed=0).train
    y = train.get_column("target").to_numpy()
    rng = np.random.default_rng(0)
    score = 1.0 / (1.0 + np.exp(-(rng.normal(size=y.size) + 2.5 * y - 6.0)))
    frame = train.with_columns(pl.Series("score", score))
    before = evaluate(y, score, frame, n_boot=50, seed=0)
    after = evaluate(y, np.clip(score * 0.2, 0, 1), frame, n_boot=50, seed=0)
    return frame, before, after


def test_report_files_and_model_card(scored, tmp_path: Path) -> None:
    frame, before, after = scored
    oof = frame.select("target", "score", "attribution")
    out = write_evaluation_report(
        before, tmp_path / "report", oof=oof, calibrated=after, context=CONTEXT, title="demo"
    )
    names = {p.name for p in out.iterdir()}
    expected = {*EVALUATION_PLOT_FILES, "centres.csv", "model_card.md", "model_card.json"}
    assert expected | {"index.html", ".lesionboost.json"} == names
    for name in EVALUATION_PLOT_FILES:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 300
    page = (out / "index.html").read_text()
    assert page.count("data:image/png;base64,") == len(EVALUATION_PLOT_FILES)
    first = page.split("data:image/png;base64,")[1].split('"')[0]
    assert Image.open(io.BytesIO(base64.b64decode(first))).format == "PNG"

    card_md = (out / "model_card.md").read_text()
    low, high = before.pauc_ci
    assert f"{before.pauc:.4f} (95 % CI {low:.4f}-{high:.4f})" in card_md
    weak = before.weakest_subgroup
    assert weak is not None
    assert f"Weakest subgroup: {weak['subgroup']} = {weak['level']}" in card_md
    for heading in (
        "Intended use",
        "Data and centres",
        "Validation",
        "Performance",
        "Calibration",
        "Subgroups",
        "Limitations",
    ):
        assert f"## {heading}" in card_md
    assert "not a diagnosis" in card_md and "Simulated data" in card_md
    assert "training prevalence" in card_md
    assert "before calibration" in card_md and "after calibration" in card_md

    card = json.loads((out / "model_card.json").read_text())
    assert card["performance"]["pauc"] == {"value": before.pauc, "ci": [low, high]}
    assert card["weakest_subgroup"]["level"] == weak["level"]
    assert card["calibration"]["after"]["brier"] == pytest.approx(after.calibration["brier"])
    assert card["data"]["n_malignant"] == before.n_malignant and card["data"]["simulated"]
    centres = pl.read_csv(out / "centres.csv")
    assert set(centres["centre"]) == set(frame["attribution"].unique())
    assert centres["n"].sum() == frame.height
    assert {"sensitivity_at_80", "referrals_per_1000_at_80", "pauc_ci_low"} <= set(centres.columns)


def test_centre_table_uses_one_threshold(scored) -> None:
    frame, before, _ = scored
    rows = centre_table(before, oof=frame.select("target", "score", "attribution"))
    flagged = sum(r["referrals_per_1000_at_80"] * r["n"] / 1000 for r in rows)
    assert flagged == pytest.approx(before.operating_points[0]["n_flagged"])
    found = sum((r["sensitivity_at_80"] or 0) * r["n_malignant"] for r in rows)
    assert found == pytest.approx(before.operating_points[0]["sensitivity"] * before.n_malignant)


def test_second_curve_as_a_calibration_dict(scored, tmp_path: Path) -> None:
    frame, before, after = scored
    out = write_evaluation_report(before, tmp_path / "r", calibrated=after.calibration)
    card = json.loads((out / "model_card.json").read_text())
    assert card["calibration"]["after"]["slope"] == pytest.approx(after.calibration["slope"])
    assert card["data"]["simulated"] is None and "not recorded" in " ".join(card["limitations"])
    fig = plot_reliability({"before": before.calibration, "after": after.to_dict()["calibration"]})
    assert len(fig.axes[0].get_lines()) == 3  # two curves and the diagonal
    with pytest.raises(TypeError, match="calibrated must be"):
        model_card(before, calibrated=[0.1, 0.2])


def test_output_policy_and_inputs(scored, tmp_path: Path) -> None:
    frame, before, _ = scored
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="did not write"):
        write_evaluation_report(before, foreign)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    out = write_evaluation_report(before, tmp_path / "ours")
    write_evaluation_report(before, out, context=CONTEXT)  # an earlier report is replaced
    assert "3-fold patient-grouped CV" in (out / "model_card.md").read_text()
    with pytest.raises(ValueError, match="pass exactly the lesions"):
        write_evaluation_report(before, tmp_path / "x", oof=frame.head(10))


def test_scores_that_are_not_probabilities(scored, tmp_path: Path) -> None:
    frame, _, _ = scored
    y = frame.get_column("target").to_numpy()
    logits = np.log(frame.get_column("score").to_numpy())  # all negative: not in [0, 1]
    result = evaluate(y, logits, frame, n_boot=0)
    out = write_evaluation_report(result, tmp_path / "logits")
    card = json.loads((out / "model_card.json").read_text())
    assert card["calibration"]["before"] is None and card["performance"]["pauc"]["ci"] is None
    assert any("not probabilities" in note for note in card["limitations"])

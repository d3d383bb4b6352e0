"""The argument parsers of every ``lesionboost`` subcommand.

Each subcommand is declared by ``_add_<name>(subparsers)`` here and run by a
function of its command-group module (:data:`COMMANDS`), imported only when the
command runs, so that ``lesionboost --help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any

from .._version import __version__
from ._output import add_output_options

#: ``lesionboost.simulate.SCENARIOS``, spelled out so that building the parser does not
#: import the simulator (tests/test_simulate_scenarios.py keeps the two equal).
SIMULATION_SCENARIOS: tuple[str, ...] = (
    "default",
    "location_duckling",
    "percentile",
    "multivariate",
    "absolute",
    "interactions",
    "mixed",
)


def _add_simulate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="write a simulated SLICE-3D cohort (Kaggle files + oracle risk)",
        description=(
            "Simulate a SLICE-3D cohort calibrated to the real data and write "
            "train-metadata.csv (exact Kaggle schema), oracle.csv (true logit and "
            "tabular-only logit per isic_id), optionally train-image.hdf5, and with "
            "--test-patients a test-metadata.csv, test-oracle.csv and test-image.hdf5."
        ),
        epilog="example: lesionboost simulate --out sim-data --patients 200 --images 1000",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    parser.add_argument(
        "--patients",
        type=int,
        default=1042,
        metavar="N",
        help="training patients (default 1042: ~401k lesions)",
    )
    parser.add_argument(
        "--test-patients",
        type=int,
        default=0,
        metavar="N",
        help="new patients for a test split (default 0: none)",
    )
    parser.add_argument(
        "--images",
        default="0",
        metavar="N|all",
        help="train crops to render into train-image.hdf5 (a seeded random "
        "choice of lesions, independent of the label; default 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--scenario",
        default="default",
        choices=SIMULATION_SCENARIOS,
        help="how malignancy depends on the lesion and its patient "
        "(default: the risk calibrated to the real data; see the "
        "'Scenarios' section of docs/simulator.md)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace the files of an earlier simulation in --out"
    )
    add_output_options(parser)


def _add_show_versions(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "show-versions",
        help="print library versions, onnxruntime providers and CUDA facts",
        description="Print library versions, onnxruntime providers and CUDA facts.",
        epilog="example: lesionboost show-versions --json",
    )
    add_output_options(parser)


def _add_embed(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "embed",
        help="embed the crops of an HDF5 image file with an ONNX model (Parquet out)",
        description=(
            "Embed the JPEG crops of a Kaggle-layout HDF5 file with an ONNX image model "
            "(default: the built-in label-free embedder) on CUDA or CPU. Writes one row per "
            "crop: isic_id, image_failed, emb_000, ... A missing or corrupt crop gives a NaN "
            "row flagged in image_failed. --shard i/n embeds the i-th of n equal parts of the "
            "sorted ids, so several machines can split one large file."
        ),
        epilog="example: lesionboost embed --images train-image.hdf5 --out emb.parquet --shard 0/4",
    )
    parser.add_argument("--images", required=True, metavar="HDF5", help="Kaggle-layout image file")
    parser.add_argument(
        "--model",
        "--image-model",
        dest="model",
        metavar="MODEL.onnx",
        help="ONNX image model (default: the built-in label-free embedder)",
    )
    parser.add_argument("--out", required=True, metavar="PARQUET", help="output Parquet file")
    parser.add_argument(
        "--shard", metavar="i/n", help="embed shard i of n (0-based) of the sorted ids"
    )
    parser.add_argument(
        "--metadata",
        metavar="FILE",
        help="embed only the isic_id values of this CSV/Parquet file (default: every crop)",
    )
    parser.add_argument("--batch-size", type=int, metavar="N", help="crops per model call")
    parser.add_argument(
        "--providers",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="onnxruntime device: auto = CUDA when available (default), else CPU",
    )
    parser.add_argument(
        "--output-name", metavar="NAME", help="model output to write (default: the embedding)"
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "tf32", "fp16"),
        default=None,
        help="numeric precision, recorded in the table (default fp32: CUDA with TF32 off)",
    )
    parser.add_argument("--workers", type=int, metavar="N", help="JPEG decoders (default: cores)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_output_options(parser)


def _add_tune(subparsers: Any) -> None:
    import textwrap

    parser = subparsers.add_parser(
        "tune",
        help="tune the ensemble with Optuna (resumable, distributed); fit and save the best",
        description=textwrap.fill(
            "Tune LesionBoostClassifier by patient-grouped out-of-fold pAUC with Optuna, then "
            "fit the best configuration on all data. Writes RUN_DIR/model/, best.json, "
            "folds.parquet, oof.parquet and report/. Without --data it tunes on the built-in "
            "simulator with demo settings (150 patients, 3 folds, LightGBM only, 60 rounds, 6 "
            "trials: a few minutes on 2 cores). Rerunning the same command resumes "
            "a killed run without losing finished trials. Several machines: start the same "
            "command with one --storage postgresql://... URL and --study NAME on each."
        ),
        epilog=(
            "examples:\n  lesionboost tune --out runs/demo\n"
            "  lesionboost tune --data train-metadata.csv --trials 100 --workers 2 "
            "--out runs/real\n"
            "  lesionboost tune --data train-metadata.csv --storage "
            "postgresql://user:pw@db/optuna --study isic --out runs/m1"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        metavar="CSV|PARQUET|DIR",
        help="training metadata (default: simulate a demo cohort)",
    )
    parser.add_argument("--images", metavar="HDF5", help="training crops (adds image features)")
    parser.add_argument(
        "--image-model",
        metavar="MODEL",
        help="image model for --images: an .onnx file, a `lesionboost embed` "
        "Parquet file (embeds once for all trials) or a train_embedder folder "
        "(default: the built-in embedder)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="finished trials the study should hold (default 50; demo 6)",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SEC", help="stop starting trials after SEC seconds"
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage: sqlite:///f.db, journal:PATH, postgresql://... "
        "(default: $LESIONBOOST_STORAGE, else RUN_DIR/study.db, or "
        "RUN_DIR/study.journal with --workers > 1)",
    )
    parser.add_argument(
        "--study",
        default="lesionboost",
        metavar="NAME",
        help="study name in the storage (default: lesionboost)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes on this machine sharing the storage (default 1)",
    )
    parser.add_argument(
        "--out",
        default="runs/lesionboost",
        metavar="RUN_DIR",
        help="run folder (default: runs/lesionboost)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="discard a previous run in RUN_DIR and start over (a study in "
        "a --storage outside RUN_DIR is never deleted)",
    )
    parser.add_argument(
        "--folds", type=int, metavar="K", help="patient-grouped folds (default 5; demo 3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of folds, sampler, models")
    parser.add_argument(
        "--members",
        metavar="LIST",
        help=(
            "comma-separated members to tune: lightgbm, xgboost, catboost, linear (default "
            "the estimator's: lightgbm, catboost, linear; demo lightgbm); the search also "
            "switches the raw-column LightGBM member on and off"
        ),
    )
    parser.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help="boosting rounds of every member (default: the estimator's; demo "
        "60); small values make quick test runs",
    )
    parser.add_argument(
        "--patients",
        type=int,
        metavar="N",
        help="size of the simulated cohort without --data (default 150)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the boosters train (default cpu)",
    )
    parser.add_argument(
        "--n-jobs", type=int, metavar="N", help="threads per booster (default: all cores / workers)"
    )
    add_output_options(parser)


def _add_predict(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="score new lesions with a saved model: a Kaggle submission (+ triage view)",
        description=(
            "Score the lesions of a metadata file with a saved model directory and write a "
            "Kaggle submission (isic_id,target). --top-k K also writes OUT-triage.csv: for "
            "each patient their K highest-risk lesions with rank, score and the three "
            "features that pushed the score up most (SHAP contributions of the members, "
            "computed for the listed lesions only)."
        ),
        epilog="example: lesionboost predict --model runs/demo/model --data test-metadata.csv "
        "--out submission.csv --top-k 5",
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="saved model directory")
    parser.add_argument(
        "--data",
        required=True,
        metavar="CSV|PARQUET|DIR",
        help="metadata of the lesions to score (test-metadata.csv, or the folder holding it)",
    )
    parser.add_argument("--images", metavar="HDF5", help="their crops (models with image features)")
    parser.add_argument(
        "--precision",
        choices=("fp32", "tf32", "fp16"),
        help="embed the crops at this precision instead of the one the model was fitted at "
        "(models with image features; a warning says so)",
    )
    parser.add_argument(
        "--out", required=True, metavar="CSV", help="submission file to write (a .csv name)"
    )
    parser.add_argument(
        "--top-k",
        type=int,
        metavar="K",
        help="also write OUT-triage.csv with each patient's top K lesions",
    )
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    add_output_options(parser)


def _add_report(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="draw the plots and HTML page of a tune run",
        description=(
            "Draw ROC (scored region TPR >= 0.8 shaded, pAUC printed), per-fold pAUC, "
            "optimisation history, feature importances and calibration as PNGs, plus one "
            "self-contained index.html, from a tune run folder. Needs matplotlib "
            '(pip install "lesionboost[report]").'
        ),
        epilog="example: lesionboost report runs/demo   (writes runs/demo/report/index.html)",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of a tune run")
    parser.add_argument(
        "--out", metavar="DIR", help="report folder (default RUN_DIR/report; replaced atomically)"
    )
    add_output_options(parser)


def _add_cv(subparsers: Any) -> None:
    import textwrap

    parser = subparsers.add_parser(
        "cv",
        help="cross-validate one configuration (no tuning): OOF scores, evaluation, model card",
        description=textwrap.fill(
            "Cross-validate LesionBoostClassifier with the default configuration (or the "
            "best_params of a tune run's best.json with --params), without tuning. --cv patient "
            "draws patient-grouped folds (--repeats R > 1: R different splits); --cv centre "
            "holds out one centre (attribution) per fold. Writes RUN/oof.parquet, "
            "folds.parquet, cv.json (per-fold and pooled pAUC of every repeat, seeds, "
            "fingerprint), evaluation.json (bootstrap intervals, operating points, "
            "calibration, subgroups of repeat 0) and report/ (plots and a model card). Data "
            "and folds are checked before RUN is created. Without --data it runs on the "
            "built-in simulator (150 patients, 3 folds, LightGBM, 60 rounds). --scheduler "
            "runs the folds on a Dask cluster: an address, or local:N for N local workers."
        ),
        epilog=(
            "examples:\n  lesionboost cv --out runs/cv-demo\n"
            "  lesionboost cv --data train-metadata.csv --repeats 3 --out runs/cv\n"
            "  lesionboost cv --data train-metadata.csv --cv centre --out runs/cv-centre\n"
            "  lesionboost cv --data train-metadata.csv --params runs/real/best.json "
            "--scheduler tcp://10.0.0.5:8786 --out runs/cv-best"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        metavar="CSV|PARQUET|DIR",
        help="training metadata (default: simulate a demo cohort)",
    )
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder to write")
    parser.add_argument(
        "--cv",
        choices=("patient", "centre"),
        default="patient",
        help="patient-grouped folds (default) or one fold per centre",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        metavar="R",
        help="different patient-grouped splits, seeds SEED..SEED+R-1 "
        "(default 1; --cv patient only)",
    )
    parser.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="patient-grouped folds per repeat (default 5; demo 3)",
    )
    parser.add_argument(
        "--params",
        metavar="JSON",
        help="configuration to validate: a tune run's best.json (its "
        "best_params) or a JSON object of estimator parameters",
    )
    parser.add_argument(
        "--members",
        metavar="LIST",
        help=(
            "comma-separated members: lightgbm, xgboost, catboost, linear, or one of them on "
            "the raw metadata columns only, e.g. lightgbm:raw (default: the estimator's, "
            "lightgbm,catboost,lightgbm:raw,linear; demo lightgbm)"
        ),
    )
    parser.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help="boosting rounds of every member (default: the estimator's; demo 60)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the folds, the models and the bootstrap (default 0)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="where the boosters train (default cpu)",
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        metavar="N",
        help="threads per booster (default: all cores; cores / N with local:N)",
    )
    parser.add_argument(
        "--n-boot",
        type=int,
        default=1000,
        metavar="B",
        help="patient-level bootstrap replicates of the evaluation (default 1000; 0: no intervals)",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS|local:N",
        help="run the folds on a Dask cluster: a scheduler address "
        "(tcp://host:8786) or local:N single-thread workers (needs "
        "distributed)",
    )
    parser.add_argument(
        "--patients",
        type=int,
        metavar="N",
        help="size of the simulated cohort without --data (default 150)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an earlier cv run in RUN (only files lesionboost wrote)",
    )
    add_output_options(parser)


def _add_evaluate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="clinical evaluation (pAUC with CI, operating points, subgroups) of a run or model",
        description=(
            "Evaluate malignancy scores with patient-level bootstrap intervals, operating "
            "points, calibration and subgroups: the out-of-fold scores of a cv run (RUN), a "
            "saved model scoring a labelled file (--model DIR --data LABELLED.csv), or a "
            "scores file (isic_id,score or a Kaggle submission) against a labelled file "
            "(--scores CSV --data LABELLED.csv). Prints a short summary, or everything with "
            "--json. --report redraws the plots and model card (RUN/report by default)."
        ),
        epilog=(
            "examples:\n  lesionboost evaluate runs/cv --report\n"
            "  lesionboost evaluate --model runs/real/model --data holdout-metadata.csv --json\n"
            "  lesionboost evaluate --scores submission.csv --data holdout-metadata.csv"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", nargs="?", metavar="RUN", help="a `lesionboost cv` run folder")
    parser.add_argument("--model", metavar="DIR", help="saved model directory to score --data")
    parser.add_argument(
        "--data",
        metavar="CSV|PARQUET|DIR",
        help="labelled lesions (train-metadata.csv layout, or the folder holding it) for "
        "--model/--scores",
    )
    parser.add_argument("--images", metavar="HDF5", help="their crops (models with image features)")
    parser.add_argument(
        "--scores",
        metavar="CSV|PARQUET",
        help="scores to evaluate: isic_id and score (or target) per lesion",
    )
    parser.add_argument(
        "--repeat", type=int, metavar="R", help="repeat of the cv run to evaluate (default 0)"
    )
    parser.add_argument(
        "--n-boot",
        type=int,
        metavar="B",
        help="bootstrap replicates (default: the run's, else 1000)",
    )
    parser.add_argument(
        "--seed", type=int, metavar="S", help="bootstrap seed (default: the run's, else 0)"
    )
    parser.add_argument(
        "--report",
        nargs="?",
        const="",
        metavar="DIR",
        help="draw the evaluation report and model card into DIR (default "
        "RUN/report; a DIR is needed with --model/--scores)",
    )
    add_output_options(parser)


def _add_compare(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare two cv runs on the same folds: paired fold differences, Wilcoxon test",
        description=(
            "Pair the per-fold pAUCs of two `lesionboost cv` runs over every repeat and fold, "
            "and report the mean difference (A - B), the signs, the Wilcoxon signed-rank "
            "p-value and which run is better. Runs on other lesions or other folds are "
            "refused: rerun one with the other's --cv, --folds, --repeats and --seed."
        ),
        epilog="example: lesionboost compare runs/cv-defaults runs/cv-tuned --json",
    )
    parser.add_argument("run_a", metavar="RUN_A", help="first cv run folder (A)")
    parser.add_argument("run_b", metavar="RUN_B", help="second cv run folder (B)")
    add_output_options(parser)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="lesionboost",
        description=(
            "Gradient-boosted skin-cancer triage on ISIC 2024 SLICE-3D. "
            "Run without data to use the built-in simulator."
        ),
        epilog="example: lesionboost tune --out runs/demo   (tunes on simulated data)",
    )
    parser.add_argument("--version", action="version", version=f"lesionboost {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _DECLARE.values():
        add(subparsers)
    return parser


#: subcommand -> (declare its arguments, "module:function" that runs it)
_DECLARE = {
    "show-versions": _add_show_versions,
    "simulate": _add_simulate,
    "embed": _add_embed,
    "tune": _add_tune,
    "cv": _add_cv,
    "predict": _add_predict,
    "evaluate": _add_evaluate,
    "compare": _add_compare,
    "report": _add_report,
}
COMMANDS: dict[str, str] = {
    "show-versions": "._data:run_show_versions",
    "simulate": "._data:run_simulate",
    "embed": "._data:run_embed",
    "tune": "._tune:run_tune",
    "cv": "._cv:run_cv",
    "predict": "._predict:run_predict",
    "evaluate": "._evaluate:run_evaluate",
    "compare": "._compare:run_compare",
    "report": "._report:run_report",
}

"""CPU against CUDA: fit time, quality and reproducibility of the members and the default model.

On one full simulation (1,042 patients, ~401k lesions) it runs the
patient-grouped 5-fold out-of-fold evaluation of

- each member alone (``LesionBoostClassifier(members=(kind,))``, its default
  parameters and bags) and
- ``LesionBoostClassifier()`` with its defaults,

once with ``device="cpu"`` (all cores) and once with ``device="cuda"``, and
reports for each: the OOF pAUC above 80 % TPR, the summed fit seconds of the
folds (features included, the same work on both devices) and the wall time of
the run. The first fold is then fitted a second time on each device to say
whether two fits with one seed give bit-identical scores. Rows a device cannot
run (no GPU, a CPU-only build) say why instead of a number; LightGBM's PyPI
wheel has no CUDA learner, so with ``device="cuda"`` its member trains on the
CPU (the row says so).

Usage (on a GPU machine, where the numbers mean something)::

    python benchmarks/devices.py [--out FILE.json]
    python benchmarks/devices.py --small      # seconds; what the test suite runs

A full run writes ``benchmarks/results/devices.json`` (tables ``devices/models`` and
``devices/reproducibility``). ``--small`` uses 30 patients, 3 folds and small
boosters: it checks that the benchmark runs, not the speed-up.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

import lesionboost as lb
from _common import NA, Table, parser, write_results
from lesionboost.ensemble import library_versions, lightgbm_has_learner

MEMBERS = ("lightgbm", "xgboost", "catboost")


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name, or None when none is visible."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = done.stdout.split("\n") if done.returncode == 0 else []
    names = [name.strip() for name in names if name.strip()]
    return names[0] if names else None


def cuda_support() -> dict[str, str | None]:
    """Per member: None when it can train on CUDA here, else the reason it cannot."""
    reasons: dict[str, str | None] = {}
    gpu = gpu_name()
    import xgboost

    reasons["xgboost"] = (
        None if xgboost.build_info().get("USE_CUDA") else "this xgboost has no CUDA (xgboost-cpu)"
    )
    try:
        from catboost.utils import get_gpu_device_count

        reasons["catboost"] = None if get_gpu_device_count() > 0 else "CatBoost sees no GPU"
    except Exception as exc:  # noqa: BLE001 -- any CatBoost failure is a reason to report
        reasons["catboost"] = f"CatBoost GPU check failed: {exc}"
    reasons["lightgbm"] = (
        None
        if lightgbm_has_learner("cuda")
        else "no CUDA learner in this LightGBM build: trains on the CPU"
    )
    if gpu is None:
        reasons = {k: "no NVIDIA GPU visible" for k in reasons}
    return reasons


def libraries(arguments: dict[str, Any]) -> tuple[str, ...]:
    """The boosting libraries a row's estimator trains, whose CUDA support decides its
    GPU cell (the linear member always runs on the CPU).

    >>> libraries({"members": ("xgboost",)})
    ('xgboost',)
    >>> libraries({})  # LesionBoostClassifier's default members
    ('lightgbm', 'catboost')
    """
    members = arguments.get("members", lb.estimator.DEFAULT_MEMBERS)
    kinds = (member.partition(":")[0] for member in members)
    return tuple(dict.fromkeys(kind for kind in kinds if kind in MEMBERS))


def configurations(small: bool) -> dict[str, dict[str, Any]]:
    """Row name -> LesionBoostClassifier arguments."""
    tiny: dict[str, Any] = {}
    if small:
        tiny = {
            "n_bags": 1,
            "lightgbm_params": {"n_estimators": 20},
            "xgboost_params": {"n_estimators": 20},
            "catboost_params": {"n_estimators": 20, "depth": 4},
        }
    rows = {f"{kind} alone": {**tiny, "members": (kind,)} for kind in MEMBERS}
    rows["LesionBoostClassifier (defaults)"] = dict(tiny)
    return rows


def run_one(
    frame: Any, folds: np.ndarray, arguments: dict[str, Any], device: str
) -> dict[str, Any]:
    """OOF pAUC and fit seconds of one configuration on one device, and a refit check.

    Fold 0 is fitted twice more with the same seed: ``bit_identical_refit`` says
    whether the two give the same scores on its held-out lesions.
    """
    model = lb.LesionBoostClassifier(**arguments, device=device)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        result = lb.cross_val_oof(model, frame, folds, progress=False)
    wall = time.perf_counter() - start
    fallback = any("LightGBM cannot train" in str(w.message) for w in caught)
    # Reproducibility: fit the first fold again with the same seed.
    train = folds != 0
    first = lb.LesionBoostClassifier(**arguments, device=device)
    again = lb.LesionBoostClassifier(**arguments, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = first.fit(frame.filter(train)).predict_proba(frame.filter(~train))[:, 1]
        b = again.fit(frame.filter(train)).predict_proba(frame.filter(~train))[:, 1]
    return {
        "pauc": result.pauc,
        "fit_seconds": float(np.sum(result.fit_seconds)),
        "wall_seconds": wall,
        "bit_identical_refit": bool(np.array_equal(a, b)),
        "max_abs_refit_difference": float(np.max(np.abs(a - b))),
        "lightgbm_on_cpu": fallback,
    }


LABELS = {
    "lightgbm alone": "LightGBM alone",
    "xgboost alone": "XGBoost alone",
    "catboost alone": "CatBoost alone",
    "LesionBoostClassifier (defaults)": "`LesionBoostClassifier()` defaults",
}


def _note(results: dict[str, Any]) -> str:
    machine = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    note = (
        f"Simulator seed {results['seed']}: {results['rows']:,} lesions "
        f"({results['positives']} malignant), patient-grouped {results['n_splits']}-fold; fit "
        f"seconds summed over the folds, features included. {machine['cpus']} CPU cores, GPU: "
        f"{machine['gpu'] or 'none'}; Python {machine['python']}, {versions}."
    )
    if results["small"]:
        note += " A --small run: it checks that the script works, not its figures."
    return note


def tables(results: dict[str, Any]) -> list[Table]:
    """``devices/models`` and ``devices/reproducibility`` from the results."""
    models, refits = [], []
    for name, cells in results["results"].items():
        cpu, cuda = cells["cpu"], cells["cuda"]
        label = LABELS.get(name, name)
        if "pauc" in cuda:
            on_cpu = " (LightGBM on the CPU)" if cuda["lightgbm_on_cpu"] else ""
            cuda_cells = [
                f"{cuda['pauc']:.4f}",
                f"{cuda['fit_seconds']:.1f}{on_cpu}",
                f"{cpu['fit_seconds'] / cuda['fit_seconds']:.2f}x",
            ]
            cuda_refit = [
                "yes" if cuda["bit_identical_refit"] else "no",
                f"{cuda['max_abs_refit_difference']:.2g}",
            ]
        else:
            cuda_cells = [f"{NA} ({cuda['unavailable']})", NA, NA]
            cuda_refit = [f"{NA} ({cuda['unavailable']})", NA]
        models.append([label, f"{cpu['pauc']:.4f}", f"{cpu['fit_seconds']:.1f}", *cuda_cells])
        refits.append(
            [
                label,
                "yes" if cpu["bit_identical_refit"] else "no",
                f"{cpu['max_abs_refit_difference']:.2g}",
                *cuda_refit,
            ]
        )
    note = _note(results)
    return [
        Table(
            "devices/models",
            [
                "model",
                "CPU pAUC",
                f"CPU fit s ({results['machine']['cpus']} cores)",
                "CUDA pAUC",
                "CUDA fit s",
                "CPU / CUDA time",
            ],
            models,
            note=note,
        ),
        Table(
            "devices/reproducibility",
            [
                "model",
                "CPU: refit identical",
                "CPU: max abs. difference",
                "CUDA: refit identical",
                "CUDA: max abs. difference",
            ],
            refits,
            note="Fold 0 fitted twice with one seed on each device; its held-out scores "
            f"compared. {note}",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cli = parser(__doc__.splitlines()[0], name="devices")
    cli.add_argument("--patients", type=int, help="simulated patients (default 1042)")
    cli.add_argument("--folds", type=int, help="patient-grouped folds (default 5)")
    cli.add_argument("--seed", type=int, default=0, help="simulator seed")
    cli.add_argument(
        "--models",
        nargs="+",
        metavar="NAME",
        help="only these rows (e.g. 'xgboost alone'); default all",
    )
    args = cli.parse_args(argv)
    warnings.simplefilter("ignore", lb.DataWarning)
    n_patients = args.patients or (30 if args.small else 1042)
    n_splits = args.folds or (3 if args.small else 5)

    support = cuda_support()
    start = time.perf_counter()
    sim = lb.simulate_slice3d(n_patients, seed=args.seed)
    simulate_seconds = time.perf_counter() - start
    frame = sim.train
    folds = lb.patient_folds(frame, n_splits=n_splits, seed=0)
    print(
        f"{frame.height:,} lesions, {int(frame['target'].sum())} malignant, "
        f"simulated in {simulate_seconds:.1f} s; GPU: {gpu_name()}",
        file=sys.stderr,
    )

    chosen = configurations(args.small)
    if args.models:
        unknown = sorted(set(args.models) - set(chosen))
        if unknown:
            cli.error(f"unknown --models {unknown}; choose from {sorted(chosen)}")
        chosen = {name: chosen[name] for name in args.models}
    rows: dict[str, dict[str, Any]] = {}
    for name, arguments in chosen.items():
        members = libraries(arguments)
        rows[name] = {}
        for device in ("cpu", "cuda"):
            blocked = [
                support[m] for m in members if device == "cuda" and support[m] and m != "lightgbm"
            ]
            if device == "cuda" and (blocked or all(support[m] for m in members)):
                reason = "; ".join(sorted({support[m] for m in members if support[m]}))
                rows[name][device] = {"unavailable": reason}
            else:
                rows[name][device] = run_one(frame, folds, arguments, device)
            cell = rows[name][device]
            text = (
                f"pAUC {cell['pauc']:.4f}  fit {cell['fit_seconds']:7.1f} s"
                if "pauc" in cell
                else cell["unavailable"]
            )
            print(f"  {name:34s} {device:4s} {text}", file=sys.stderr, flush=True)

    results = {
        "benchmark": "devices",
        "small": args.small,
        "n_patients": n_patients,
        "seed": args.seed,
        "rows": frame.height,
        "positives": int(frame["target"].sum()),
        "n_splits": n_splits,
        "simulate_seconds": simulate_seconds,
        "cuda_support": support,
        "results": rows,
        "machine": {
            "cpus": os.cpu_count(),
            "gpu": gpu_name(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "versions": {"lesionboost": lb.__version__, **library_versions(MEMBERS)},
        },
    }
    print_table(results)
    write_results(args.out, results, tables(results))
    return results


def print_table(results: dict[str, Any]) -> None:
    print(
        f"\n{results['rows']:,} lesions, {results['n_splits']}-fold; "
        f"{results['machine']['cpus']} CPU cores; GPU: {results['machine']['gpu']}"
    )
    print(
        "| model | CPU pAUC | CPU fit s | CUDA pAUC | CUDA fit s | CPU / CUDA time "
        "| refit identical (CPU / CUDA) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, cells in results["results"].items():
        cpu, cuda = cells["cpu"], cells["cuda"]
        if "pauc" in cuda:
            note = " (LightGBM on CPU)" if cuda["lightgbm_on_cpu"] else ""
            cuda_text = f"{cuda['pauc']:.4f} | {cuda['fit_seconds']:.1f}{note}"
            ratio = f"{cpu['fit_seconds'] / cuda['fit_seconds']:.2f}x"
            same = f"{cpu['bit_identical_refit']} / {cuda['bit_identical_refit']}"
        else:
            cuda_text, ratio = f"- | {cuda['unavailable']}", "-"
            same = f"{cpu['bit_identical_refit']} / -"
        print(
            f"| {name} | {cpu['pauc']:.4f} | {cpu['fit_seconds']:.1f} | {cuda_text} "
            f"| {ratio} | {same} |"
        )


if __name__ == "__main__":
    main()

"""Image pipeline benchmark: decode and embed speed, the placeholder file, image-feature quality.

Speed (on simulated Kaggle-like crops: 61-239 px, median 131, JPEG q75 4:2:0):

* ``read``          -- JPEG bytes out of the HDF5 file only (one thread, h5py's
  low-level API, as the decoders' reader thread reads them);
* ``decode``        -- read + decode to 64 x 64 RGB (the practical limit of any model);
* ``embed_cpu``     -- read + decode + the built-in embedder on onnxruntime's CPU provider;
* ``model_only``    -- the built-in embedder on already decoded crops;
* ``embed_cuda``    -- as ``embed_cpu`` on CUDA, when onnxruntime has a usable CUDA provider.

Targets (2 cores, 64 px): ``embed_cpu`` >= 1,000 crops/s and ``decode / embed_cpu`` <= 1.5.
Each figure is the best of ``--repeats`` interleaved runs (the median is reported too);
the machine's load average is recorded because shared machines are noisy. The Kaggle
placeholder ``test-image.hdf5`` (in ``$LESIONBOOST_SHARED``) is embedded end to end.

Quality (the simulator with a crop for every lesion, and the estimator): for each
seed, out-of-fold pAUC of the tabular-only model, of the tabular + image model
(built-in embedding features; with ``--train-cnn`` also the out-of-fold score of
:func:`lesionboost.image.train_embedder`), and of the simulator's full oracle;
``gap_closed = (tab+img - tab) / (oracle - tab)``.

Usage::

    python benchmarks/images.py [--skip-speed] [--skip-quality] [--train-cnn] [--out FILE.json]
    python benchmarks/images.py --small            # seconds; what the test suite runs

A full run writes ``benchmarks/results/images.json`` (tables ``images/headline``,
``images/speed``, ``images/quality`` and, with ``--train-cnn``, ``images/cnn``).
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import NA, SHARED, Table, fmt, parser, write_results

from lesionboost.image import OnnxEmbedder, iter_decoded
from lesionboost.io import ImageStore

SIZE = 64
TARGETS = {"embed_cpu_crops_per_s": 1000.0, "decode_over_embed_cpu": 1.5}


# --------------------------------------------------------------------------- crops
def _render_fallback(n: int, seed: int) -> list[tuple[str, bytes]]:
    """Kaggle-like crops drawn with Pillow when the simulator is not installed."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    sides = np.clip(np.round(131 * np.exp(rng.normal(0, 0.17, n))), 61, 239).astype(int)
    items = []
    for i, side in enumerate(sides):
        skin = np.array([rng.uniform(150, 225), rng.uniform(100, 170), rng.uniform(80, 140)])
        base = np.clip(skin + rng.normal(0, 6, (side, side, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(base, "RGB")
        draw = ImageDraw.Draw(image)
        r = side * rng.uniform(0.1, 0.3)
        c = side / 2 + rng.normal(0, 2, 2)
        draw.ellipse(
            [c[0] - r, c[1] - r * 0.8, c[0] + r, c[1] + r * 0.8],
            fill=tuple(int(v) for v in skin * rng.uniform(0.35, 0.7)),
        )
        image = image.filter(ImageFilter.GaussianBlur(1.0))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=75, subsampling=2)
        items.append((f"ISIC_{i:07d}", buffer.getvalue()))
    return items


def _train_images(paths: Any) -> Path:
    """The train image file among the paths ``write_slice3d`` returns."""
    items = paths.items() if isinstance(paths, dict) else []
    for key, value in items:
        if "image" in str(key) and "test" not in str(key):
            return Path(value)
    raise KeyError(f"no train image file among {paths!r}")


def speed_crops(n: int, folder: Path, seed: int = 0) -> tuple[Path, str]:
    """An HDF5 file of ``n`` crops: rendered by the simulator when available, else Pillow-drawn."""
    try:
        from lesionboost.simulate import simulate_slice3d, write_slice3d

        # ~385 lesions per simulated patient on average; ask for enough rows.
        sim = simulate_slice3d(max(3, n // 250 + 1), seed=seed, images=n)
        path = _train_images(write_slice3d(sim, folder / "sim-speed", images=n))
        return path, "simulator"
    except Exception as exc:  # noqa: BLE001 -- any simulator problem: fall back and say so
        source = f"pillow fallback ({type(exc).__name__}: {str(exc)[:80]})"
    path = folder / f"speed-{n}.hdf5"
    ImageStore.write(path, _render_fallback(n, seed))
    return path, source


# --------------------------------------------------------------------------- timing
def default_workers() -> int:
    """Decode threads when none are given: the usable cores, at most 8 (the decoders' default)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, cores or 1))


class RawReader:
    """JPEG bytes of one crop through h5py's low-level API, as the decoders' reader reads them.

    Opening a scalar dataset by name and reading it into a preallocated ``|S<n>``
    buffer skips h5py's high-level layer; anything else goes through
    :meth:`ImageStore.get_bytes`.
    """

    def __init__(self, store: ImageStore) -> None:
        import h5py

        self._h5py, self._store = h5py, store
        self._handle = h5py.File(store.path, "r")

    def __call__(self, isic_id: str) -> bytes:
        h5py = self._h5py
        dataset = h5py.h5d.open(self._handle.id, isic_id.encode())
        kind = dataset.get_type()
        if dataset.shape != () or kind.get_class() != h5py.h5t.STRING or kind.is_variable_str():
            return self._store.get_bytes(isic_id)
        buffer = np.empty((), dtype=f"S{kind.get_size()}")
        dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, buffer)
        return bytes(buffer.item())


def _rate(fn: Any, n: int) -> float:
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def measure_speed(path: Path, repeats: int, *, workers: int | None = None) -> dict[str, Any]:
    store = ImageStore(path)
    ids = store.ids()
    n = len(ids)
    cpu = OnnxEmbedder(providers="cpu", workers=workers)

    def read() -> None:
        reader = RawReader(store)
        for isic_id in ids:
            reader(isic_id)

    def decode() -> None:
        for _ in iter_decoded(store, ids, SIZE, workers=workers):
            pass

    def embed_cpu() -> None:
        out = cpu.embed(store, ids, progress=False)
        assert np.isfinite(out).all()

    decoded = np.concatenate([c.images for c in iter_decoded(store, ids[:4096], SIZE)])

    def model_only() -> None:
        cpu.embed_images(decoded)

    runs: dict[str, Any] = {"read": read, "decode": decode, "embed_cpu": embed_cpu}
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cuda = OnnxEmbedder(providers="cuda", workers=workers)
        if cuda.device == "cuda":
            runs["embed_cuda"] = lambda: cuda.embed(store, ids, progress=False)
    decode()  # warm the page cache and the decoders once
    rates: dict[str, list[float]] = {name: [] for name in [*runs, "model_only"]}
    for _ in range(repeats):  # interleaved, so that load changes hit every variant alike
        for name, fn in runs.items():
            rates[name].append(_rate(fn, n))
        rates["model_only"].append(_rate(model_only, len(decoded)))
    best = {name: max(values) for name, values in rates.items()}
    result = {
        "crops": n,
        "input_size": SIZE,
        "decode_workers": workers or default_workers(),
        "crops_per_s_best": {k: round(v, 1) for k, v in best.items()},
        "crops_per_s_median": {k: round(statistics.median(v), 1) for k, v in rates.items()},
        "runs": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "ratio_decode_over_embed_cpu": round(best["decode"] / best["embed_cpu"], 3),
        "ratio_median": round(
            statistics.median(rates["decode"]) / statistics.median(rates["embed_cpu"]), 3
        ),
    }
    result["targets"] = {
        "embed_cpu_at_least_1000_crops_per_s": best["embed_cpu"]
        >= TARGETS["embed_cpu_crops_per_s"],
        "embed_cpu_within_1.5x_of_decode": result["ratio_decode_over_embed_cpu"]
        <= TARGETS["decode_over_embed_cpu"],
    }
    return result


def placeholder() -> dict[str, Any]:
    path = SHARED / "test-image.hdf5"
    if not path.exists():
        return {"skipped": f"{path} not found"}
    embedder = OnnxEmbedder(providers="cpu")
    out, failed = embedder.embed(path, return_failed=True, progress=False)
    if not np.isfinite(out).all() or failed.any():
        raise RuntimeError(f"the placeholder file did not embed cleanly: {failed}")
    return {
        "file": str(path),
        "crops": int(out.shape[0]),
        "dim": int(out.shape[1]),
        "failed": int(failed.sum()),
        "ids": ImageStore(path).ids(),
    }


# --------------------------------------------------------------------------- quality
# LightGBM alone, one bag: the comparison is tabular vs tabular + image under the same
# model; the full three-library ensemble costs ~10x more CPU for the same contrast.
QUALITY_MODEL: dict[str, Any] = {"members": ("lightgbm",), "n_bags": 1}
SMALL_MODEL = {"lightgbm_params": {"n_estimators": 40}}  # --small: a smoke run, seconds


def _cv(
    metadata: Any, folds: np.ndarray, *, small: bool = False, **image: Any
) -> tuple[float, float, float]:
    import warnings

    from lesionboost import DataWarning
    from lesionboost.estimator import LesionBoostClassifier, cross_val_oof

    model = LesionBoostClassifier(**QUALITY_MODEL, **image)
    if small:
        model.set_params(**SMALL_MODEL)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        result = cross_val_oof(model, metadata, folds, progress=False)
    return result.pauc, result.std_fold_score, time.perf_counter() - start


def quality_one_seed(
    n_patients: int, seed: int, folder: Path, *, train_cnn: bool, n_folds: int, small: bool
) -> dict[str, Any]:
    import polars as pl

    from lesionboost.metrics import pauc_above_tpr
    from lesionboost.model_selection import patient_folds
    from lesionboost.simulate import simulate_slice3d, write_slice3d

    started = time.perf_counter()
    sim = simulate_slice3d(n_patients, seed=seed, images=True)
    images = _train_images(write_slice3d(sim, folder / f"sim-{seed}", images=True))
    meta = sim.train
    labels = meta["target"].to_numpy()
    oracle = meta.select("isic_id").join(
        sim.train_oracle, on="isic_id", how="left", maintain_order="left"
    )
    row: dict[str, Any] = {
        "seed": seed,
        "patients": n_patients,
        "lesions": meta.height,
        "positives": int(labels.sum()),
        "simulate_seconds": round(time.perf_counter() - started, 1),
        "oracle": pauc_above_tpr(labels, oracle["logit"].to_numpy()),
        "tabular_oracle": pauc_above_tpr(labels, oracle["tabular_logit"].to_numpy()),
    }
    folds = patient_folds(meta, n_splits=n_folds, seed=seed)
    # Label-free embeddings once per seed; every CV fold looks them up by isic_id.
    start = time.perf_counter()
    embedder = OnnxEmbedder(providers="auto")
    embeddings, failed = embedder.embed(
        images, meta["isic_id"].to_list(), return_failed=True, progress=False
    )
    table = folder / f"emb-{seed}.parquet"
    columns = {"isic_id": meta["isic_id"], "image_failed": failed}
    columns.update({f"emb_{j:03d}": embeddings[:, j] for j in range(embeddings.shape[1])})
    pl.DataFrame(columns).write_parquet(
        table,
        metadata={"lesionboost.model": "builtin", "lesionboost.model_sha256": embedder.sha256},
    )
    row["embed_seconds"] = round(time.perf_counter() - start, 1)
    row["tabular"], row["tabular_fold_sd"], row["tabular_seconds"] = _cv(meta, folds, small=small)
    row["tabular_image"], row["tabular_image_fold_sd"], row["tabular_image_seconds"] = _cv(
        meta, folds, small=small, images=str(images), image_model=str(table)
    )
    if train_cnn:
        from lesionboost.image import train_embedder

        start = time.perf_counter()
        trained = train_embedder(
            meta,
            images,
            folds,
            out_dir=folder / f"cnn-{seed}",
            epochs=3 if small else 10,
            seed=seed,
            progress=False,
        )
        row["cnn_seconds"] = round(time.perf_counter() - start, 1)
        row["cnn_parity_max"] = max(trained.parity)
        row["cnn_oof_pauc"] = pauc_above_tpr(labels, np.nan_to_num(trained.oof_scores, nan=-1e9))
        row["tabular_image_cnn"], row["tabular_image_cnn_fold_sd"], _ = _cv(
            meta,
            folds,
            small=small,
            images=str(images),
            image_model=[str(table), str(trained.directory)],
        )
    gap = row["oracle"] - row["tabular"]
    for key in ("tabular_image", "tabular_image_cnn"):
        if key in row:
            row[f"{key}_gap_closed"] = (row[key] - row["tabular"]) / gap if gap > 0 else None
    print(
        json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
        flush=True,
    )
    return row


def measure_quality(
    n_patients: int, seeds: list[int], folder: Path, *, train_cnn: bool, n_folds: int, small: bool
) -> dict[str, Any]:
    try:
        from lesionboost.simulate import simulate_slice3d  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"lesionboost.simulate is not available ({exc})"}
    rows = [
        quality_one_seed(
            n_patients, seed, folder, train_cnn=train_cnn, n_folds=n_folds, small=small
        )
        for seed in seeds
    ]
    keys = [
        "oracle",
        "tabular_oracle",
        "tabular",
        "tabular_image",
        "tabular_image_cnn",
        "cnn_oof_pauc",
        "tabular_image_gap_closed",
        "tabular_image_cnn_gap_closed",
    ]
    summary = {
        key: {"mean": float(np.mean([r[key] for r in rows])), "per_seed": [r[key] for r in rows]}
        for key in keys
        if all(r.get(key) is not None for r in rows)
    }
    model = {k: list(v) if isinstance(v, tuple) else v for k, v in QUALITY_MODEL.items()}
    return {"model": model, "folds": n_folds, "seeds": rows, "summary": summary}


def _rate_cell(value: float) -> str:
    return f"{value:,.0f}"


def tables(report: dict[str, Any]) -> list[Table]:
    """``images/headline``, ``images/speed``, ``images/quality`` and ``images/cnn``, as measured."""
    small = report["small"]
    tail = " A --small run: it checks that the script works, not its figures." if small else ""
    speed, quality, placeholder = report.get("speed"), report.get("quality"), report["placeholder"]
    machine = report["machine"]
    out: list[Table] = []
    speed_cell = NA
    if speed:
        best, median = speed["crops_per_s_best"], speed["crops_per_s_median"]
        met = all(speed["targets"].values())
        speed_cell = (
            f"{_rate_cell(best['decode'])} / {_rate_cell(best['embed_cpu'])} crops/s "
            f"({speed['ratio_decode_over_embed_cpu']:.2f}x)" + ("" if met else " (not met)")
        )
        speed_note = (
            f"{speed['crops']:,} crops ({speed['crop_source']}, mean "
            f"{speed['mean_jpeg_bytes']:,.0f} bytes), decoded to {speed['input_size']} px with "
            f"{speed['decode_workers']} decode threads; best and median of "
            f"{len(speed['runs']['decode'])} interleaved runs; "
            f"{machine['cores']} cores, load average {machine['load_average_start'][0]} at the "
            f"start.{tail}"
        )
        stages = {
            "read": "read (JPEG bytes from HDF5)",
            "decode": f"read + decode ({speed['input_size']} px)",
            "embed_cpu": "read + decode + built-in embedder (CPU)",
            "model_only": "built-in embedder alone (decoded crops)",
            "embed_cuda": "read + decode + built-in embedder (CUDA)",
        }
        out.append(
            Table(
                "images/speed",
                ["stage", f"crops/s (best of {len(speed['runs']['decode'])})", "median"],
                [
                    [stages.get(name, name), _rate_cell(best[name]), _rate_cell(median[name])]
                    for name in best
                ],
                note=speed_note,
            )
        )
    summary = (quality or {}).get("summary", {})
    rows = (quality or {}).get("seeds", [])
    quality_cell = NA
    if rows and "tabular_image_gap_closed" in summary:
        quality_cell = (
            f"{summary['tabular']['mean']:.4f} → {summary['tabular_image']['mean']:.4f} "
            f"({100 * summary['tabular_image_gap_closed']['mean']:.0f} % of the gap)"
        )
    placeholder_cell = (
        NA
        if "skipped" in placeholder
        else f"{placeholder['crops']} crops, {placeholder['failed']} failures"
    )
    patients = rows[0]["patients"] if rows else None
    headline = Table(
        "images/headline",
        ["what", "target", "measured"],
        [
            [
                f"image read + decode / + built-in embedder ({SIZE} px)",
                f">= {TARGETS['embed_cpu_crops_per_s']:,.0f} crops/s, <= "
                f"{TARGETS['decode_over_embed_cpu']}x decode",
                speed_cell,
            ],
            [
                f"image features, {fmt(patients, ',.0f')}-patient simulator, {len(rows)} seed"
                + ("s" if len(rows) != 1 else ""),
                "close part of the gap to the full oracle",
                quality_cell,
            ],
            ["Kaggle placeholder `test-image.hdf5`", "embeds every crop", placeholder_cell],
        ],
        note=f"{machine['cores']} cores.{tail}",
    )
    out.insert(0, headline)
    if rows:
        quality_note = (
            f"{patients:,} simulated patients per seed, every lesion with a crop; patient-grouped "
            f"{quality['folds']}-fold out-of-fold pAUC above 80 % TPR; LightGBM-only estimator, "
            f"one bag.{tail}"
        )

        def gap(value: float | None) -> str:
            return fmt(None if value is None else 100 * value, ".0f", " %")

        body = [
            [
                str(r["seed"]),
                f"{r['oracle']:.4f}",
                f"{r['tabular_oracle']:.4f}",
                f"{r['tabular']:.4f}",
                f"{r['tabular_image']:.4f}",
                gap(r.get("tabular_image_gap_closed")),
            ]
            for r in rows
        ]
        if len(rows) > 1:
            gain = summary["tabular_image"]["mean"] - summary["tabular"]["mean"]
            body.append(
                [
                    "mean",
                    f"{summary['oracle']['mean']:.4f}",
                    f"{summary['tabular_oracle']['mean']:.4f}",
                    f"{summary['tabular']['mean']:.4f}",
                    f"{summary['tabular_image']['mean']:.4f} ({gain:+.4f})",
                    gap(summary.get("tabular_image_gap_closed", {}).get("mean")),
                ]
            )
        out.append(
            Table(
                "images/quality",
                [
                    "seed",
                    "full oracle",
                    "tabular oracle",
                    "tabular model",
                    "tabular + image (built-in)",
                    "gap to the full oracle closed",
                ],
                body,
                note=quality_note,
            )
        )
        if "tabular_image_cnn" in summary and "cnn_oof_pauc" in summary:
            out.append(
                Table(
                    "images/cnn",
                    ["image source", "image score alone", "tabular + image"],
                    [
                        [
                            "built-in label-free embedder",
                            NA,
                            f"{summary['tabular_image']['mean']:.4f}",
                        ],
                        [
                            "per-fold CNN (`train_embedder`) with the built-in features",
                            f"{summary['cnn_oof_pauc']['mean']:.4f}",
                            f"{summary['tabular_image_cnn']['mean']:.4f}",
                        ],
                    ],
                    note=f"Out-of-fold pAUC, mean of {len(rows)} seed"
                    + ("s" if len(rows) != 1 else "")
                    + f"; {quality_note}",
                )
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser(__doc__.splitlines()[0], name="images")
    cli.add_argument("--crops", type=int, help="crops for the speed runs (default 20000)")
    cli.add_argument("--repeats", type=int, help="interleaved speed repeats (default 5)")
    cli.add_argument("--workers", type=int, help="decode threads (default: cores, max 8)")
    cli.add_argument("--patients", type=int, help="simulated patients per quality seed")
    cli.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    cli.add_argument("--folds", type=int, default=5)
    cli.add_argument("--skip-quality", action="store_true")
    cli.add_argument("--skip-speed", action="store_true")
    cli.add_argument(
        "--train-cnn",
        action="store_true",
        help="also train the per-fold CNN (needs torch; slow on CPU)",
    )
    args = cli.parse_args(argv)
    n_crops = args.crops or (400 if args.small else 20000)
    repeats = args.repeats or (2 if args.small else 5)
    report: dict[str, Any] = {
        "machine": {
            "cores": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count(),
            "load_average_start": [round(v, 2) for v in os.getloadavg()],
            "python": sys.version.split()[0],
        },
        "small": args.small,
    }
    with tempfile.TemporaryDirectory(prefix="lb-bench-images-") as tmp:
        folder = Path(tmp)
        if not args.skip_speed:
            path, source = speed_crops(n_crops, folder)
            speed = measure_speed(path, repeats, workers=args.workers)
            speed["crop_source"] = source
            speed["mean_jpeg_bytes"] = round(path.stat().st_size / speed["crops"], 1)
            report["speed"] = speed
        report["placeholder"] = placeholder()
        if not args.skip_quality:
            patients = args.patients or (8 if args.small else 300)
            seeds = args.seeds[:1] if args.small else args.seeds
            report["quality"] = measure_quality(
                patients,
                seeds,
                folder,
                train_cnn=args.train_cnn,
                n_folds=2 if args.small else args.folds,
                small=args.small,
            )
    report["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    if "speed" in report:
        best = report["speed"]["crops_per_s_best"]
        print(
            f"crops: {n_crops} ({report['speed']['crop_source']}), 64 px, "
            f"{report['speed']['decode_workers']} decode threads, load {report['machine']}"
        )
        for name in best:
            print(
                f"  {name:12s} {best[name]:9.1f} crops/s (median "
                f"{report['speed']['crops_per_s_median'][name]:.1f})"
            )
        print(
            f"  decode / embed_cpu = {report['speed']['ratio_decode_over_embed_cpu']:.3f} "
            f"(median {report['speed']['ratio_median']:.3f}); targets {report['speed']['targets']}"
        )
    print(f"placeholder: {report['placeholder']}")
    if "quality" in report:
        print("quality:", json.dumps(report["quality"].get("summary", report["quality"]), indent=1))
    written = write_results(args.out, report, tables(report))
    if written is not None:
        print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

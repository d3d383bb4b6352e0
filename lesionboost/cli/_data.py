"""Data commands: ``simulate`` (a SLICE-3D cohort), ``embed`` (image embeddings) and
``show-versions``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._output import EXIT_OK, UsageError, emit

#: What ``lesionboost embed`` records as the writer of its tables.
EMBED_WRITTEN_BY = "lesionboost embed"


def run_simulate(args: argparse.Namespace) -> int:
    import time

    if args.patients < 1:
        raise UsageError(f"--patients must be >= 1, got {args.patients}.")
    if args.test_patients < 0:
        raise UsageError(f"--test-patients must be >= 0, got {args.test_patients}.")
    if args.images == "all":
        images: bool | int = True
    else:
        try:
            images = int(args.images)
        except ValueError:
            raise UsageError(f"--images takes a count or 'all', got {args.images!r}.") from None
        if images < 0:
            raise UsageError(f"--images must be >= 0, got {images}.")
    from ..simulate import simulate_slice3d, write_slice3d
    from ..simulate._simulator import check_simulation_folder

    check_simulation_folder(
        args.out, images=images is True or images > 0, test=args.test_patients > 0,
        overwrite=args.force, option="--out",
    )  # fmt: skip

    start = time.perf_counter()
    sim = simulate_slice3d(
        args.patients,
        n_test_patients=args.test_patients,
        images=images,
        seed=args.seed,
        scenario=args.scenario,
    )
    paths = write_slice3d(sim, args.out, overwrite=args.force)
    summary = {
        "out": args.out,
        "patients": args.patients,
        "rows": sim.train.height,
        "positives": int(sim.train.get_column("target").sum()),
        "test_rows": 0 if sim.test is None else sim.test.height,
        "images": len(sim.image_ids),
        "seed": args.seed,
        "scenario": args.scenario,
        "seconds": round(time.perf_counter() - start, 2),
        "files": {key: str(path) for key, path in paths.items()},
    }
    emit(args, summary, "\n".join(
        [f"simulated {summary['rows']} lesions ({summary['positives']} malignant) of "
         f"{args.patients} patients in {summary['seconds']} s"]
        + [f"  {path}" for path in summary["files"].values()]
    ))  # fmt: skip
    return EXIT_OK


def run_show_versions(args: argparse.Namespace) -> int:
    from .._utils._show_versions import show_versions

    show_versions(as_json=args.json)
    return EXIT_OK


def _parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like i/n (e.g. 0/4), got {text!r}.") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {text}: need 0 <= i < n (shards are numbered from 0).")
    return index, count


def _metadata_ids(source: Path) -> list[str]:
    """The sorted distinct ``isic_id`` values of the ``--metadata`` table ``source``."""
    import polars as pl

    with open(source, "rb") as handle:
        parquet = handle.read(4) == b"PAR1"  # the file's magic bytes, as read_metadata does
    try:
        if parquet:
            columns = list(pl.read_parquet_schema(source))
        else:
            columns = pl.read_csv(source, n_rows=0, infer_schema=False).columns
    except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"--metadata {source} could not be read as a CSV or Parquet table ({exc}); pass "
            "the metadata file of the lesions to embed (e.g. test-metadata.csv)."
        ) from exc
    if "isic_id" not in columns:
        raise UsageError(
            f"--metadata {source} has no isic_id column (it has {columns[:5]}); pass the "
            "metadata file of the lesions to embed (e.g. test-metadata.csv)."
        )
    if parquet:
        table = pl.read_parquet(source, columns=["isic_id"])
    else:
        table = pl.read_csv(source, columns=["isic_id"], infer_schema=False)
    ids = table.get_column("isic_id").cast(pl.String).drop_nulls().unique().sort()
    return [str(v) for v in ids.to_list()]


def run_embed(args: argparse.Namespace) -> int:
    import time

    import numpy as np
    import polars as pl

    from .._utils._atomic import atomic_path
    from .._utils._outputs import check_file_output, claim
    from ..image import OnnxEmbedder
    from ..io import ImageStore

    index, count = _parse_shard(args.shard)
    out = Path(args.out)
    if args.metadata and not Path(args.metadata).is_file():
        raise FileNotFoundError(f"--metadata {args.metadata} does not exist or is not a file.")
    check_file_output(
        out,
        force=args.force,
        written_by=EMBED_WRITTEN_BY,
        inputs=[args.images, args.model, args.metadata],
    )
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}.")
    store = ImageStore(args.images)
    if args.metadata:
        ids = _metadata_ids(Path(args.metadata))
    else:
        ids = sorted(store.ids())
    shard_ids = [str(v) for v in np.array_split(np.asarray(ids, dtype=object), count)[index]]
    embedder = OnnxEmbedder(
        args.model,
        providers=args.providers,
        batch_size=args.batch_size,
        output=args.output_name,
        workers=args.workers,
        precision=args.precision,
    )
    started = time.perf_counter()
    embeddings, failed = embedder.embed(store, shard_ids, return_failed=True)
    seconds = time.perf_counter() - started
    width = max(3, len(str(max(embeddings.shape[1] - 1, 0))))
    columns: dict[str, Any] = {
        "isic_id": pl.Series("isic_id", shard_ids, dtype=pl.String),
        "image_failed": pl.Series("image_failed", failed, dtype=pl.Boolean),
    }
    for j in range(embeddings.shape[1]):
        columns[f"emb_{j:0{width}d}"] = embeddings[:, j]
    from ..image._sources import TABLE_MODEL_KEY, TABLE_PRECISION_KEY, TABLE_SHA_KEY

    # The model's identity travels with the embeddings, so that a model fitted on
    # them refuses embeddings of another model at predict time.
    provenance = {
        TABLE_MODEL_KEY: str(args.model) if args.model else "builtin",
        TABLE_SHA_KEY: embedder.sha256,
        "lesionboost.output": embedder.output,
        "lesionboost.input_size": str(embedder.input_size),
        TABLE_PRECISION_KEY: embedder.precision,
    }
    with atomic_path(out) as tmp:
        pl.DataFrame(columns).write_parquet(tmp, metadata=provenance)
    claim(out.parent, [out.name], written_by=EMBED_WRITTEN_BY)
    stats = embedder.stats
    summary = {
        "out": str(out),
        "images": len(shard_ids),
        "failed": int(failed.sum()),
        "missing": stats.missing if stats else 0,
        "corrupt": stats.corrupt if stats else 0,
        "dim": int(embeddings.shape[1]),
        "model": str(args.model) if args.model else "builtin",
        "output": embedder.output,
        "device": embedder.device,
        "providers": embedder.providers,
        "precision": embedder.precision,
        "shard": f"{index}/{count}",
        "seconds": round(seconds, 3),
        "crops_per_s": round(len(shard_ids) / seconds, 1) if seconds > 0 else None,
    }
    emit(
        args,
        summary,
        f"wrote {out}: {len(shard_ids)} crops x {embeddings.shape[1]} dims on {embedder.device} "
        f"({summary['crops_per_s']} crops/s), {int(failed.sum())} failed",
    )
    return EXIT_OK

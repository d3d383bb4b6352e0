"""Reading SLICE-3D files and writing submissions.

* :func:`read_metadata` reads ``train-metadata.csv`` / ``test-metadata.csv`` (or
  Parquet) unchanged from Kaggle and validates them with :mod:`lesionboost.schema`.
* :class:`ImageStore` reads the JPEG bytes of ``train-image.hdf5`` /
  ``test-image.hdf5`` (one scalar bytes dataset per ``isic_id``).
* :func:`write_submission` writes ``isic_id,target`` atomically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from ._utils._atomic import atomic_path
from .exceptions import ImageStoreError, MissingImageError, SchemaError
from .schema import validate

__all__ = ["read_metadata", "resolve_metadata_path", "ImageStore", "write_submission"]

logger = logging.getLogger(__name__)

_PARQUET_MAGIC = b"PAR1"


def resolve_metadata_path(path: str | os.PathLike[str], kind: str = "auto") -> Path:
    """The metadata file that ``path`` names: itself, or the ``kind`` file of a folder.

    Parameters
    ----------
    path : str or path-like
        A metadata file, or a folder holding ``train-metadata.{parquet,csv}`` and/or
        ``test-metadata.{parquet,csv}``.
    kind : {"auto", "train", "test"}, default="auto"
        Which file of a folder; "auto" needs the folder to hold exactly one of them.

    Returns
    -------
    pathlib.Path
        The file to read (the choice is logged).

    Raises
    ------
    FileNotFoundError
        The path does not exist, or the folder lacks the file.
    SchemaError
        ``kind="auto"`` and the folder holds both files.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"Metadata file {path} does not exist. Pass the path of train-metadata.csv, "
            "test-metadata.csv or a Parquet copy."
        )
    if not path.is_dir():
        return path
    found = {
        stem: next((c for c in (path / f"{stem}.parquet", path / f"{stem}.csv") if c.exists()),
                   None)
        for stem in ("train-metadata", "test-metadata")
    }  # fmt: skip
    if kind == "auto":
        present = [file for file in found.values() if file is not None]
        if len(present) > 1:
            raise SchemaError(
                f"The folder {path} holds both {present[0].name} and {present[1].name}; pass "
                "the file itself (or kind='train' / kind='test')."
            )
        if present:
            logger.info("reading %s from the folder %s", present[0].name, path)
            return present[0]
        stem = "train-metadata or test-metadata"
    else:
        stem = f"{kind}-metadata"
        file = found[stem]
        if file is not None:
            logger.info("reading %s from the folder %s", file.name, path)
            return file
    raise FileNotFoundError(
        f"The folder {path} holds no {stem}.csv or .parquet. Pass the metadata file itself "
        "or the folder that holds it."
    )


def read_metadata(
    path: str | os.PathLike[str],
    *,
    kind: Literal["auto", "train", "test"] = "auto",
) -> pl.DataFrame:
    """Read and validate a SLICE-3D metadata file.

    Parameters
    ----------
    path : str or path-like
        A CSV or Parquet file (the Kaggle files load unchanged), or a folder that
        holds ``train-metadata.{parquet,csv}`` (``kind="train"``) or
        ``test-metadata.{parquet,csv}`` (``kind="test"``); with ``kind="auto"`` the
        folder must hold exactly one of them. The file chosen is logged.
    kind : {"auto", "train", "test"}, default="auto"
        What the file must be; "auto" means train when it has a ``target`` column.

    Returns
    -------
    polars.DataFrame
        All columns, known ones cast to their canonical dtypes (see
        :data:`lesionboost.schema.TRAIN_COLUMNS`), extra columns kept at the end.

    Raises
    ------
    FileNotFoundError
        The path does not exist.
    SchemaError
        The file is empty, not a table, or breaks the column contract; the
        message names the file, the column and the first offending rows.

    Examples
    --------
    >>> from lesionboost import read_metadata, simulate_slice3d
    >>> from lesionboost.simulate import write_slice3d
    >>> paths = write_slice3d(simulate_slice3d(20, seed=0), "data")
    >>> meta = read_metadata("data/train-metadata.csv")
    >>> meta.width, meta.height == simulate_slice3d(20, seed=0).train.height
    (55, True)
    """
    file = resolve_metadata_path(Path(path), kind)
    if file.stat().st_size == 0:
        raise SchemaError(
            f"The metadata file {file} is empty (0 bytes). Pass a SLICE-3D metadata CSV or "
            "Parquet file with a header and one row per lesion."
        )
    with open(file, "rb") as handle:
        head = handle.read(4)
        start = handle.read(60)
    if (head + start).removeprefix(b"\xef\xbb\xbf").lstrip()[:1] in (b"{", b"["):
        raise SchemaError(
            f"{file} holds JSON, not a metadata table. Pass a SLICE-3D metadata CSV or "
            "Parquet file (e.g. train-metadata.csv or test-metadata.csv)."
        )
    try:
        if head == _PARQUET_MAGIC:
            frame = pl.read_parquet(file)
        else:
            # Read every cell as text first so that validation, not the CSV parser,
            # decides what a bad value is and reports it with its column and row.
            frame = pl.read_csv(file, infer_schema=False, null_values=[""], encoding="utf8")
    except (pl.exceptions.PolarsError, UnicodeDecodeError, OSError) as exc:
        raise SchemaError(
            f"Could not read {file} as a table ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
            "Pass a comma-separated CSV with a header row, or a Parquet file."
        ) from exc
    return validate(frame, kind=kind, source=str(file))


class ImageStore:
    """Read-only access to the JPEG crops of a Kaggle-layout HDF5 file.

    The layout is a flat root group with one scalar bytes dataset per
    ``isic_id``, read as ``f[isic_id][()]``. The HDF5 file is opened lazily in
    each process that uses the store (and reopened after a fork), so a store can
    be handed to worker processes safely.

    Parameters
    ----------
    path : str or path-like
        ``train-image.hdf5`` or ``test-image.hdf5``.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ImageStoreError
        The file is not HDF5 (or is truncated).

    Examples
    --------
    >>> from lesionboost import simulate_slice3d
    >>> from lesionboost.simulate import write_slice3d
    >>> sim = simulate_slice3d(5, images=3, seed=0)
    >>> paths = write_slice3d(sim, "data")
    >>> store = ImageStore(paths["train_images"])
    >>> len(store), sim.image_ids[0] in store
    (3, True)
    >>> store.get_bytes(sim.image_ids[0])[:2]  # a JPEG starts with the SOI marker
    b'\xff\xd8'

    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(
                f"Image file {self.path} does not exist. Pass the path of train-image.hdf5 "
                "or test-image.hdf5."
            )
        h5py = _h5py()
        if not h5py.is_hdf5(self.path):
            raise ImageStoreError(
                f"{self.path} is not an HDF5 file. Pass the Kaggle image file "
                "(train-image.hdf5 / test-image.hdf5), not a JPEG folder or a CSV."
            )
        self._handle = None
        self._pid: int | None = None
        self._ids: list[str] | None = None
        self._file  # noqa: B018 -- open once now so a truncated file fails here, not later

    @property
    def _file(self):  # type: ignore[no-untyped-def]
        pid = os.getpid()
        if self._handle is None or self._pid != pid:
            try:
                self._handle = _h5py().File(self.path, "r")
            except OSError as exc:
                raise ImageStoreError(
                    f"Could not open {self.path} as HDF5 ({exc}). The file may be truncated "
                    "or still being written; copy it again."
                ) from exc
            self._pid = pid
        return self._handle

    def close(self) -> None:
        """Close the file handle of this process (it reopens on next use)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, object]:
        # Never ship an open h5py handle to another process.
        return {"path": self.path, "_handle": None, "_pid": None, "_ids": self._ids}

    def ids(self) -> list[str]:
        """All ``isic_id`` keys in file order."""
        if self._ids is None:
            try:
                self._ids = list(self._file.keys())
            except (OSError, RuntimeError) as exc:
                raise ImageStoreError(
                    f"Could not list the images in {self.path} ({exc}); the file may be "
                    "truncated. Copy it again."
                ) from exc
        return self._ids

    def __len__(self) -> int:
        return len(self.ids())

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def __contains__(self, isic_id: object) -> bool:
        return isinstance(isic_id, str) and isic_id in self._file

    def get_bytes(self, isic_id: str) -> bytes:
        """Return the JPEG file bytes stored for ``isic_id``.

        Raises
        ------
        MissingImageError
            ``isic_id`` is not in the file (a ``KeyError``).
        ImageStoreError
            The dataset exists but cannot be read (a damaged file).
        """
        try:
            dataset = self._file[isic_id]
        except KeyError:
            raise MissingImageError(
                f"No image for isic_id {isic_id!r} in {self.path}. Check that the metadata and "
                "the image file come from the same split (train vs test)."
            ) from None
        try:
            value = dataset[()]
        except (OSError, RuntimeError, ValueError) as exc:
            raise ImageStoreError(
                f"Could not read the image {isic_id!r} from {self.path} ({exc}); "
                "the file may be damaged."
            ) from exc
        if isinstance(value, np.ndarray):
            value = value.tobytes()
        return bytes(value)

    def __repr__(self) -> str:
        return f"ImageStore({str(self.path)!r})"

    @staticmethod
    def write(path: str | os.PathLike[str], items: Iterable[tuple[str, bytes]]) -> Path:
        """Write ``(isic_id, jpeg_bytes)`` pairs as a Kaggle-layout HDF5 file, atomically.

        Returns
        -------
        pathlib.Path
            The written path.
        """
        h5py = _h5py()
        target = Path(path)
        with atomic_path(target) as tmp:
            with h5py.File(tmp, "w") as handle:
                for isic_id, payload in items:
                    # A scalar fixed-length bytes dataset (|S<n>), as in the Kaggle file.
                    handle.create_dataset(isic_id, data=np.bytes_(payload))
        return target


def _h5py():  # type: ignore[no-untyped-def]
    import h5py  # core dependency; imported here to keep `import lesionboost` light

    return h5py


def write_submission(
    isic_ids: Sequence[str] | pl.Series | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = True,
) -> Path:
    """Write a Kaggle submission ``isic_id,target`` atomically.

    Parameters
    ----------
    isic_ids : sequence of str
        One id per scored lesion, unique.
    scores : array-like of float
        Malignancy scores, finite.
    path : str or path-like
        Output CSV path.
    overwrite : bool, default=True
        When False, an existing file is an error.

    Returns
    -------
    pathlib.Path
    """
    ids = pl.Series("isic_id", list(isic_ids), dtype=pl.String)
    values = np.asarray(scores, dtype=np.float64).ravel()
    if len(ids) != len(values):
        raise ValueError(
            f"write_submission got {len(ids)} isic_ids but {len(values)} scores; "
            "pass one score per id."
        )
    if not np.isfinite(values).all():
        bad = np.flatnonzero(~np.isfinite(values))[:5].tolist()
        raise ValueError(
            f"write_submission got non-finite scores at positions {bad}; every lesion "
            "needs a finite score."
        )
    if ids.is_duplicated().any():
        raise ValueError(
            "write_submission got duplicate isic_ids "
            f"{ids.filter(ids.is_duplicated()).unique().head(5).to_list()}; each must appear once."
        )
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists. Choose another path or allow overwriting "
            "(--force on the command line)."
        )
    with atomic_path(target) as tmp:
        pl.DataFrame({"isic_id": ids, "target": values}).write_csv(tmp)
    return target

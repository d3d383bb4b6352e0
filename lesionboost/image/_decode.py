"""JPEG crops -> fixed-size RGB ``uint8`` arrays, read by one thread and decoded by a pool.

Two facts shape this module:

* h5py serialises every call behind one global lock, so reading from several
  threads gains nothing. One *reader* thread pulls the JPEG bytes out of the
  HDF5 file in order and hands chunks of them to a thread pool.
* Pillow releases the GIL while it decodes and resizes, so a pool of threads
  decodes in parallel. ``Image.draft("RGB", (s, s))`` asks libjpeg to decode
  at 1/2, 1/4 or 1/8 scale in the DCT domain (the smallest scale that still
  gives at least ``s`` pixels), which is several times cheaper than a full
  decode; an exact area-averaging resize to ``s x s`` follows.

A crop that is missing from the store or cannot be decoded never stops a run:
its row is left as zeros, flagged in the ``failed`` mask, counted in a
:class:`DecodeStats` and logged (the first few one by one, then a summary).
"""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..exceptions import ImageStoreError, MissingImageError
from ..io import ImageStore

__all__ = ["decode_jpeg", "iter_decoded", "DecodeStats", "DecodedChunk", "default_workers"]

logger = logging.getLogger(__name__)

# Individual failures logged before switching to a summary; a damaged file with
# thousands of bad crops must not flood the log.
_MAX_LOGGED_FAILURES = 10


def default_workers() -> int:
    """Decode threads to use: the usable cores, at most 8 (JPEG crops are tiny)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


def decode_jpeg(data: bytes, size: int) -> np.ndarray:
    """Decode one image file to an RGB ``uint8`` array of shape ``(size, size, 3)``.

    JPEGs are decoded at a reduced scale in the DCT domain (Pillow's draft mode)
    and then resized exactly by area averaging (Pillow's BOX filter); other
    formats Pillow reads (PNG, ...) are decoded in full and resized.

    Parameters
    ----------
    data : bytes
        The complete image file.
    size : int
        Side of the square output in pixels.

    Returns
    -------
    numpy.ndarray of uint8, shape (size, size, 3)

    Raises
    ------
    OSError
        The bytes are not an image Pillow can decode, or the file is truncated.

    Examples
    --------
    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (131, 131), (200, 150, 120)).save(buffer, "JPEG", quality=75)
    >>> decode_jpeg(buffer.getvalue(), 64).shape
    (64, 64, 3)
    """
    with Image.open(io.BytesIO(data)) as image:
        # draft() only configures the decoder; it must come before load().
        image.draft("RGB", (size, size))
        rgb = image.convert("RGB") if image.mode != "RGB" else image
        rgb.load()
        if rgb.size != (size, size):
            # Area averaging (BOX): the usual filter for downscaling, and ~25 % cheaper
            # than BILINEAR here, where resizing costs as much as decoding.
            rgb = rgb.resize((size, size), Image.Resampling.BOX)
        return np.asarray(rgb, dtype=np.uint8)


@dataclass
class DecodeStats:
    """Counts of one decoding run: how many crops were read and why some failed.

    Attributes
    ----------
    total : int
        Crops requested.
    missing : int
        ``isic_id`` not present in the HDF5 file.
    corrupt : int
        Bytes present but not decodable (truncated, not an image, unreadable dataset).
    examples : list of str
        The first failures, ``"isic_id: reason"``.
    """

    total: int = 0
    missing: int = 0
    corrupt: int = 0
    examples: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def failed(self) -> int:
        """Crops that gave no image (missing + corrupt)."""
        return self.missing + self.corrupt

    def _record(self, isic_id: str, kind: str, reason: str) -> None:
        # Called from the reader thread (missing keys) and the consumer (corrupt bytes).
        with self._lock:
            if kind == "missing":
                self.missing += 1
            else:
                self.corrupt += 1
            first = len(self.examples) < _MAX_LOGGED_FAILURES
            if first:
                self.examples.append(f"{isic_id}: {reason}")
            announce_more = not first and self.failed == _MAX_LOGGED_FAILURES + 1
        if first:
            logger.warning(
                "Image %s is %s (%s); its row is NaN and flagged.", isic_id, kind, reason
            )
        elif announce_more:
            logger.warning("More images fail; further failures are only counted.")

    def summary(self) -> str:
        """One sentence for logs and command-line output."""
        if not self.failed:
            return f"all {self.total} images decoded"
        return (
            f"{self.failed} of {self.total} images gave no pixels "
            f"({self.missing} missing from the file, {self.corrupt} corrupt); "
            "their rows are NaN and flagged"
        )


@dataclass
class DecodedChunk:
    """A run of consecutive crops: ``images[k]`` belongs to ``ids[start + k]``."""

    start: int
    images: np.ndarray  # (k, size, size, 3) uint8, zeros where failed
    failed: np.ndarray  # (k,) bool


def _decode_chunk(
    ids: Sequence[str], payloads: Sequence[bytes | None], size: int
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str, str]]]:
    images = np.zeros((len(ids), size, size, 3), dtype=np.uint8)
    failed = np.zeros(len(ids), dtype=bool)
    problems: list[tuple[str, str, str]] = []
    for k, (isic_id, data) in enumerate(zip(ids, payloads, strict=True)):
        if data is None:
            failed[k] = True  # already recorded by the reader
            continue
        try:
            images[k] = decode_jpeg(data, size)
        except (
            OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError
        ) as exc:
            # Pillow raises OSError for truncated/garbled JPEGs, SyntaxError for
            # some malformed headers and DecompressionBombError for absurd sizes;
            # all mean "this crop is unusable", never "stop the run".
            failed[k] = True
            problems.append((isic_id, "corrupt", f"{type(exc).__name__}: {exc}"))
    return images, failed, problems


class _RawReader:
    """Read JPEG bytes with h5py's low-level API, falling back to :class:`ImageStore`.

    ``f[isic_id][()]`` spends ~150 us per crop in h5py's high-level Python layer;
    opening the dataset by name and reading it into a preallocated ``|S<n>``
    scalar takes ~30 us, which keeps the single reader thread ahead of the
    decoders. Anything that is not the Kaggle layout (a missing key, a group,
    a variable-length or integer dataset) goes through ``store.get_bytes``,
    which reads it or raises the right error.
    """

    def __init__(self, store: ImageStore) -> None:
        import h5py  # core dependency; imported lazily like in lesionboost.io

        self._h5py = h5py
        self._store = store
        # Own handle, opened in the reading thread's process; read-only handles
        # to one file coexist safely.
        self._handle = h5py.File(store.path, "r")
        self._fid = self._handle.id

    def close(self) -> None:
        """Close this reader's own HDF5 handle."""
        self._handle.close()

    def __call__(self, isic_id: str) -> bytes:
        h5py = self._h5py
        try:
            dataset = h5py.h5d.open(self._fid, isic_id.encode())
        except (KeyError, ValueError):
            return self._store.get_bytes(isic_id)
        kind = dataset.get_type()
        if dataset.shape != () or kind.get_class() != h5py.h5t.STRING or kind.is_variable_str():
            return self._store.get_bytes(isic_id)
        buffer = np.empty((), dtype=f"S{kind.get_size()}")
        try:
            dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, buffer)
        except (OSError, RuntimeError) as exc:
            raise ImageStoreError(
                f"Could not read the image {isic_id!r} from {self._store.path} ({exc}); "
                "the file may be damaged."
            ) from exc
        # Same bytes as ImageStore.get_bytes: numpy drops trailing NUL padding.
        return bytes(buffer.item())


_DONE = object()


def iter_decoded(
    store: ImageStore,
    isic_ids: Sequence[str],
    size: int,
    *,
    chunk_size: int = 64,
    workers: int | None = None,
    stats: DecodeStats | None = None,
    prefetch: int = 4,
) -> Iterator[DecodedChunk]:
    """Yield decoded crops in the order of ``isic_ids``, in chunks.

    One reader thread reads the JPEG bytes (h5py holds a global lock, so more
    readers would only queue); ``workers`` threads decode chunks concurrently.
    At most ``prefetch`` chunks per worker are in flight, which bounds memory
    and lets a consumer (e.g. onnxruntime) run while the next chunks decode.

    Parameters
    ----------
    store : ImageStore
        The Kaggle-layout HDF5 file.
    isic_ids : sequence of str
        Crops to decode, in output order; duplicates are allowed.
    size : int
        Output side in pixels.
    chunk_size : int, default=64
        Crops per decode task.
    workers : int, optional
        Decode threads; defaults to :func:`default_workers`.
    stats : DecodeStats, optional
        Filled in with the counts of missing and corrupt crops.
    prefetch : int, default=4
        Chunks queued per worker ahead of the consumer.

    Yields
    ------
    DecodedChunk
        Consecutive chunks covering ``isic_ids`` exactly once, in order.
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    stats = stats if stats is not None else DecodeStats()
    stats.total += len(isic_ids)
    n_workers = workers or default_workers()
    pending: queue.Queue[Any] = queue.Queue(maxsize=max(2, prefetch * n_workers))
    stop = threading.Event()
    reader_error: list[BaseException] = []

    def read_all(pool: ThreadPoolExecutor) -> None:
        read: _RawReader | None = None
        try:
            read = _RawReader(store)
            for start in range(0, len(isic_ids), chunk_size):
                if stop.is_set():
                    return
                ids = list(isic_ids[start : start + chunk_size])
                payloads: list[bytes | None] = []
                for isic_id in ids:
                    try:
                        payloads.append(read(isic_id))
                    except MissingImageError:
                        payloads.append(None)
                        stats._record(isic_id, "missing", f"not in {store.path.name}")
                    except Exception as exc:  # noqa: BLE001 -- one bad entry must not stop the run
                        # ImageStoreError for a damaged dataset; h5py raises TypeError and
                        # friends for entries that are not byte datasets (e.g. a group).
                        payloads.append(None)
                        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                        stats._record(isic_id, "corrupt", reason)
                future = pool.submit(_decode_chunk, ids, payloads, size)
                while not stop.is_set():
                    try:
                        pending.put((start, future), timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # surfaced in the consumer thread
            reader_error.append(exc)
        finally:
            if read is not None:
                read.close()
            pending.put(_DONE)

    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="lb-decode") as pool:
        reader = threading.Thread(target=read_all, args=(pool,), name="lb-hdf5-reader", daemon=True)
        reader.start()
        try:
            while True:
                item = pending.get()
                if item is _DONE:
                    break
                start, future = item
                images, failed, problems = future.result()
                for isic_id, kind, reason in problems:
                    stats._record(isic_id, kind, reason)
                yield DecodedChunk(start=start, images=images, failed=failed)
        finally:
            # The consumer may stop early (an error, a break): let the reader finish.
            stop.set()
            while reader.is_alive():
                try:
                    item = pending.get(timeout=0.05)
                except queue.Empty:
                    continue
                if isinstance(item, tuple):
                    item[1].cancel()
            reader.join()
    if reader_error:
        raise reader_error[0]
    if stats.failed:
        logger.info("Decoding: %s.", stats.summary())

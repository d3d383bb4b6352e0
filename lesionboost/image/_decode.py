"""JPEG crops -> fixed-size RGB ``uint8`` arrays, decoded in parallel, yielded in order.

Two facts shape this module (measured in ``benchmarks/images.py``, table
``images/scaling``):

* h5py serialises every call behind one lock per process, so reading from
  several threads of one process gains nothing.
* Pillow releases the GIL only inside its C decode and resample loops; for a
  Kaggle crop (about 2 kB, decoded at 1/2 scale by ``Image.draft``) the Python
  around them costs more than the C, so decoding *threads* queue on the GIL and
  barely scale (3,721 crops/s at 8 threads and 3,738 at 16 on a 16-core machine).

So :func:`iter_decoded` has two backends:

``"processes"``
    ``workers`` decoder processes (``python -m lesionboost.image._jpeg``), each
    with its own GIL and its own HDF5 handle, read *and* decode whole chunks of
    ids; the results come back in order. Plain subprocesses rather than
    :mod:`multiprocessing`, so the caller's ``__main__`` is never re-imported
    and nothing is forked from a process that runs threads (or CUDA).
``"threads"``
    One reader thread reads the JPEG bytes and a thread pool decodes them;
    no start-up cost, so it serves small requests and one worker.

``"auto"`` (the default) takes processes for at least :data:`PROCESS_MIN_CROPS`
crops and more than one worker, else threads, and falls back to threads (with a
warning) where processes cannot be started.

A crop that is missing from the store or cannot be decoded never stops a run:
its row is left as zeros, flagged in the ``failed`` mask, counted in a
:class:`DecodeStats` and logged (the first few one by one, then a summary).
"""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..exceptions import ImageStoreError
from ..io import ImageStore
from ._jpeg import (
    READY,
    Problem,
    _RawReader,
    decode_chunk,
    decode_jpeg,
    read_message,
    read_one,
    write_message,
)

__all__ = [
    "decode_jpeg",
    "iter_decoded",
    "DecodeStats",
    "DecodedChunk",
    "default_workers",
    "PROCESS_MIN_CROPS",
]

logger = logging.getLogger(__name__)

# Individual failures logged before switching to a summary; a damaged file with
# thousands of bad crops must not flood the log.
_MAX_LOGGED_FAILURES = 10

#: Fewest crops for which ``backend="auto"`` starts decoder processes: starting one
#: costs about 0.15-0.3 s of CPU (numpy, Pillow, h5py), what one core decodes ~1,000
#: crops in; below this, threads finish first.
PROCESS_MIN_CROPS = 2048

Backend = Literal["auto", "processes", "threads"]


def default_workers() -> int:
    """Decoders to use: the usable cores (at most 32)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        cores = os.cpu_count() or 1
    return max(1, min(32, cores))


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


class _DecoderProcesses:
    """``n`` decoder processes fed through pipes, one pump thread each; a tiny ordered pool.

    :meth:`submit` returns a :class:`~concurrent.futures.Future`; a process that
    dies fails its request and every later one it takes (nothing waits forever).
    """

    def __init__(self, n: int) -> None:
        env = dict(os.environ)
        # The child imports the lesionboost this process runs, wherever it comes from
        # (this process's path, "" being its working folder), and nothing else first.
        path = [p or os.getcwd() for p in sys.path if isinstance(p, str)]
        env["PYTHONPATH"] = os.pathsep.join(path)
        env["PYTHONSAFEPATH"] = "1"  # Python >= 3.11: no working folder in front of it
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, "1")  # one busy thread per decoder
        self._procs: list[subprocess.Popen[bytes]] = []
        self._tasks: queue.Queue[Any] = queue.Queue()
        self._threads: list[threading.Thread] = []
        try:
            for _ in range(n):
                self._procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "lesionboost.image._jpeg"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        env=env,
                    )
                )
            for proc in self._procs:  # all start in parallel; wait for each to be ready
                assert proc.stdout is not None
                hello, _ = read_message(proc.stdout)
                if hello.get("ready") != READY:
                    raise OSError(f"unexpected greeting {hello!r:.60}")
        except (OSError, EOFError, ValueError, KeyError) as exc:
            self.close()
            raise OSError(f"a decoder process did not start ({exc or type(exc).__name__})") from exc
        for k, proc in enumerate(self._procs):
            thread = threading.Thread(
                target=self._pump, args=(proc,), name=f"lb-decoder-{k}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def submit(self, path: str, ids: list[str], size: int) -> Future[Any]:
        future: Future[Any] = Future()
        self._tasks.put((future, (path, ids, size)))
        return future

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        broken: str | None = None
        while True:
            item = self._tasks.get()
            if item is None:
                return
            future, request = item
            if not future.set_running_or_notify_cancel():
                continue
            if broken is None:
                try:
                    path, ids, size = request
                    write_message(proc.stdin, {"path": path, "ids": list(ids), "size": size})
                    reply, arrays = read_message(proc.stdout)
                    status = reply["status"]
                    if status == "ok":
                        problems = [tuple(p) for p in reply["problems"]]
                        payload: Any = (arrays[0], arrays[1], problems)
                    else:
                        payload = reply.get("message", "")
                except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
                    broken = f"{type(exc).__name__}: {exc}"
            if broken is not None:
                future.set_exception(
                    ImageStoreError(
                        f"A JPEG decoder process stopped (exit code {proc.poll()}; {broken}); "
                        "its error, if any, is on stderr above. Run again with workers=1 to "
                        "decode in this process."
                    )
                )
            elif status != "ok":
                future.set_exception(ImageStoreError(f"A JPEG decoder process failed: {payload}"))
            else:
                future.set_result(payload)

    def close(self) -> None:
        """Cancel what has not started, let the processes finish and end them."""
        while True:
            try:
                item = self._tasks.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join()
        for proc in self._procs:
            if proc.stdin is not None:
                try:
                    proc.stdin.close()  # EOF: the child leaves its loop
                except OSError:
                    pass
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a hung child
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _record(stats: DecodeStats, problems: list[Problem]) -> None:
    for isic_id, kind, reason in problems:
        stats._record(isic_id, kind, reason)


def _iter_processes(
    pool: _DecoderProcesses,
    store: ImageStore,
    isic_ids: Sequence[str],
    size: int,
    chunk_size: int,
    window: int,
    stats: DecodeStats,
) -> Iterator[DecodedChunk]:
    path = str(Path(store.path).resolve())
    starts = iter(range(0, len(isic_ids), chunk_size))
    in_flight: deque[tuple[int, Future[Any]]] = deque()

    def fill() -> None:
        while len(in_flight) < window:
            start = next(starts, None)
            if start is None:
                return
            ids = [str(v) for v in isic_ids[start : start + chunk_size]]
            in_flight.append((start, pool.submit(path, ids, size)))

    fill()
    while in_flight:
        start, future = in_flight.popleft()
        images, failed, problems = future.result()
        fill()
        _record(stats, problems)
        yield DecodedChunk(start=start, images=images, failed=failed)


def _iter_threads(
    store: ImageStore,
    isic_ids: Sequence[str],
    size: int,
    chunk_size: int,
    n_workers: int,
    prefetch: int,
    stats: DecodeStats,
) -> Iterator[DecodedChunk]:
    pending: queue.Queue[Any] = queue.Queue(maxsize=max(2, prefetch * n_workers))
    stop = threading.Event()
    reader_error: list[BaseException] = []
    done = object()

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
                    data, problem = read_one(read, isic_id, store.path.name)
                    payloads.append(data)
                    if problem is not None:
                        stats._record(*problem)
                future = pool.submit(decode_chunk, ids, payloads, size)
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
            pending.put(done)

    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="lb-decode") as pool:
        reader = threading.Thread(target=read_all, args=(pool,), name="lb-hdf5-reader", daemon=True)
        reader.start()
        try:
            while True:
                item = pending.get()
                if item is done:
                    break
                start, future = item
                images, failed, problems = future.result()
                _record(stats, problems)
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


def iter_decoded(
    store: ImageStore,
    isic_ids: Sequence[str],
    size: int,
    *,
    chunk_size: int = 64,
    workers: int | None = None,
    stats: DecodeStats | None = None,
    prefetch: int = 2,
    backend: Backend = "auto",
) -> Iterator[DecodedChunk]:
    """Yield decoded crops in the order of ``isic_ids``, in chunks.

    ``workers`` decoders work on chunks concurrently: processes that each read
    and decode (``backend="processes"``), or one reader thread and a pool of
    decoding threads (``"threads"``); see the module docstring for why. At most
    ``prefetch`` chunks per worker are in flight, which bounds memory and lets a
    consumer (e.g. onnxruntime) run while the next chunks decode. Every backend
    gives the same arrays.

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
        Decoders; defaults to :func:`default_workers` (the usable cores).
    stats : DecodeStats, optional
        Filled in with the counts of missing and corrupt crops.
    prefetch : int, default=2
        Chunks in flight per worker ahead of the consumer (at 224 px and 16
        workers, 2 hold about 300 MB of decoded crops).
    backend : {"auto", "processes", "threads"}, default="auto"
        "auto": processes for at least :data:`PROCESS_MIN_CROPS` crops and more
        than one worker, else threads. Where processes cannot start, threads
        decode instead (with a warning).

    Yields
    ------
    DecodedChunk
        Consecutive chunks covering ``isic_ids`` exactly once, in order.
    """
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    if backend not in ("auto", "processes", "threads"):
        raise ValueError(f"backend must be 'auto', 'processes' or 'threads', got {backend!r}.")
    stats = stats if stats is not None else DecodeStats()
    stats.total += len(isic_ids)
    n_workers = workers or default_workers()
    use_processes = backend == "processes" or (
        backend == "auto" and n_workers > 1 and len(isic_ids) >= PROCESS_MIN_CROPS
    )
    pool: _DecoderProcesses | None = None
    if use_processes and len(isic_ids):
        try:
            pool = _DecoderProcesses(n_workers)
        except OSError as exc:
            logger.warning("Decoding in threads: %s.", exc)
    if pool is not None:
        try:
            yield from _iter_processes(
                pool, store, isic_ids, size, chunk_size, max(2, prefetch * n_workers), stats
            )
        finally:
            pool.close()
    else:
        yield from _iter_threads(store, isic_ids, size, chunk_size, n_workers, prefetch, stats)
    if stats.failed:
        logger.info("Decoding: %s.", stats.summary())

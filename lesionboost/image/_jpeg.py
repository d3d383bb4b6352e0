"""One crop's bytes to pixels, and the loop of a decoder process.

The lowest image layer: it imports numpy, Pillow and h5py, never the rest of
lesionboost (bar its exceptions), so that a decoder process started with
``python -m lesionboost.image._jpeg`` is ready in a fraction of a second.

* :func:`decode_jpeg` -- JPEG bytes to a ``(size, size, 3)`` ``uint8`` array:
  Pillow's draft mode decodes at 1/2, 1/4 or 1/8 scale in the DCT domain, then
  an exact area-averaging resize.
* :class:`_RawReader` -- JPEG bytes out of a Kaggle-layout HDF5 file through
  h5py's low-level API (about five times faster than ``f[isic_id][()]``).
* :func:`read_and_decode` -- a chunk of ids to an array, with the failures.
* :func:`_serve` -- the decoder process: ``(path, ids, size)`` requests on stdin,
  results on stdout, until stdin closes. Messages are a length-prefixed JSON header
  followed by ``.npy`` arrays (:func:`write_message`, :func:`read_message`): nothing
  that crosses the pipe can run code when it is read.

Why processes: Pillow releases the GIL only inside its C decode and resample
loops. For a 2 kB crop the Python around them (``Image.open`` parsing the JPEG
markers, ``load``, ``resize``, ``asarray``) costs most of the ~0.4 ms a crop
takes, so decoding threads queue on the GIL and stop scaling after a core or
two. Separate processes hold separate GILs (and separate h5py locks, so each
reads its own crops).
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..exceptions import ImageStoreError, MissingImageError

__all__ = ["decode_jpeg", "read_and_decode", "DECODE_ERRORS"]

#: What Pillow raises for bytes that are not a decodable image: OSError for truncated or
#: garbled JPEGs, SyntaxError for some malformed headers, DecompressionBombError for
#: absurd sizes. All mean "this crop is unusable", never "stop the run".
DECODE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)

#: A problem with one crop: ``(isic_id, "missing" | "corrupt", reason)``.
Problem = tuple[str, str, str]


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


class _RawReader:
    """Read JPEG bytes with h5py's low-level API, falling back to :class:`ImageStore`.

    ``f[isic_id][()]`` spends ~150 us per crop in h5py's high-level Python layer;
    opening the dataset by name and reading it into a preallocated ``|S<n>``
    scalar takes ~30 us. Anything that is not the Kaggle layout (a variable-length
    or integer dataset, a group) goes through ``ImageStore.get_bytes``, which
    reads it or raises the right error. ``store`` is an ``ImageStore`` or the
    file's path (a decoder process gets the path and opens the store only when
    an entry needs it, which keeps polars out of its start-up).
    """

    def __init__(self, store: Any) -> None:
        import h5py  # core dependency; imported lazily like in lesionboost.io

        self._h5py = h5py
        is_path = isinstance(store, (str, os.PathLike))
        self._store = None if is_path else store
        self._path = Path(store) if is_path else Path(store.path)
        # Own handle, opened in the reading thread's process; read-only handles
        # to one file coexist safely.
        self._handle = h5py.File(self._path, "r")
        self._fid = self._handle.id

    def close(self) -> None:
        """Close this reader's own HDF5 handle."""
        self._handle.close()

    def _fallback(self, isic_id: str) -> bytes:
        if self._store is None:
            from ..io import ImageStore

            self._store = ImageStore(self._path)
        return bytes(self._store.get_bytes(isic_id))

    def __call__(self, isic_id: str) -> bytes:
        h5py = self._h5py
        try:
            dataset = h5py.h5d.open(self._fid, isic_id.encode())
        except (KeyError, ValueError):
            if isic_id not in self._handle:  # the message ImageStore.get_bytes gives
                raise MissingImageError(
                    f"No image for isic_id {isic_id!r} in {self._path}. Check that the metadata "
                    "and the image file come from the same split (train vs test)."
                ) from None
            return self._fallback(isic_id)  # a group, a link, ...: ImageStore says what
        kind = dataset.get_type()
        if dataset.shape != () or kind.get_class() != h5py.h5t.STRING or kind.is_variable_str():
            return self._fallback(isic_id)
        buffer = np.empty((), dtype=f"S{kind.get_size()}")
        try:
            dataset.read(h5py.h5s.ALL, h5py.h5s.ALL, buffer)
        except (OSError, RuntimeError) as exc:
            raise ImageStoreError(
                f"Could not read the image {isic_id!r} from {self._path} ({exc}); "
                "the file may be damaged."
            ) from exc
        # Same bytes as ImageStore.get_bytes: numpy drops trailing NUL padding.
        return bytes(buffer.item())


def read_one(read: _RawReader, isic_id: str, path_name: str) -> tuple[bytes | None, Problem | None]:
    """The bytes of one crop, or None and why (missing, or an unreadable entry)."""
    try:
        return read(isic_id), None
    except MissingImageError:
        return None, (isic_id, "missing", f"not in {path_name}")
    except Exception as exc:  # noqa: BLE001 -- one bad entry must not stop the run
        # ImageStoreError for a damaged dataset; h5py raises TypeError and friends for
        # entries that are not byte datasets (e.g. a group).
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, (isic_id, "corrupt", reason)


def decode_chunk(
    ids: Sequence[str],
    payloads: Sequence[bytes | None],
    size: int,
    read_problems: dict[int, Problem] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Problem]]:
    """Decode a chunk: images (zeros where failed), the failed mask and the problems in row order.

    A ``None`` payload could not be read: its row is flagged, and its problem
    (``read_problems[k]``, when given) listed in its place.
    """
    images = np.zeros((len(ids), size, size, 3), dtype=np.uint8)
    failed = np.zeros(len(ids), dtype=bool)
    problems: list[Problem] = []
    for k, (isic_id, data) in enumerate(zip(ids, payloads, strict=True)):
        if data is None:
            failed[k] = True
            if read_problems and k in read_problems:
                problems.append(read_problems[k])
            continue
        try:
            images[k] = decode_jpeg(data, size)
        except DECODE_ERRORS as exc:
            failed[k] = True
            problems.append((isic_id, "corrupt", f"{type(exc).__name__}: {exc}"))
    return images, failed, problems


def read_and_decode(
    read: _RawReader, ids: Sequence[str], size: int, path_name: str
) -> tuple[np.ndarray, np.ndarray, list[Problem]]:
    """Read and decode a chunk of crops; every failure is returned, in row order."""
    payloads: list[bytes | None] = []
    read_problems: dict[int, Problem] = {}
    for k, isic_id in enumerate(ids):
        data, problem = read_one(read, isic_id, path_name)
        payloads.append(data)
        if problem is not None:
            read_problems[k] = problem
    return decode_chunk(ids, payloads, size, read_problems)


# --------------------------------------------------------------------------- decoder process
READY = "lesionboost-decoder-ready"
_LENGTH = struct.Struct(">Q")


def write_message(stream: Any, header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> None:
    """Write one message: a JSON header (8-byte length first), then ``arrays`` as ``.npy``."""
    payload = json.dumps({**header, "arrays": len(arrays)}).encode("utf-8")
    stream.write(_LENGTH.pack(len(payload)))
    stream.write(payload)
    for array in arrays:
        buffer = io.BytesIO()  # pipes have no file position, which .npy writing may ask for
        np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
        stream.write(_LENGTH.pack(buffer.tell()))
        stream.write(buffer.getvalue())
    stream.flush()


def read_message(stream: Any) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Read one message written by :func:`write_message`; ``EOFError`` at the end of the stream."""
    prefix = stream.read(_LENGTH.size)
    if len(prefix) < _LENGTH.size:
        raise EOFError("the stream ended")
    (length,) = _LENGTH.unpack(prefix)
    raw = stream.read(length)
    if len(raw) < length:
        raise EOFError("the stream ended inside a message")
    header = json.loads(raw.decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("a message header must be a JSON object")
    arrays = []
    for _ in range(int(header["arrays"])):
        (size,) = _LENGTH.unpack(_read_exactly(stream, _LENGTH.size))
        buffer = io.BytesIO(_read_exactly(stream, size))
        arrays.append(np.lib.format.read_array(buffer, allow_pickle=False))
    return header, arrays


def _read_exactly(stream: Any, size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the stream ended inside a message")
    return bytes(data)


def _serve() -> None:  # pragma: no cover - runs in the child; tested through iter_decoded
    """Serve decode requests: ``{path, ids, size}`` in, ``{status, problems}`` + arrays out."""
    # Ctrl-C reaches the whole process group: the parent handles it and closes our stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol owns the real stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    source = sys.stdin.buffer
    write_message(out, {"ready": READY, "pid": os.getpid()})
    readers: dict[str, _RawReader] = {}
    while True:
        try:
            request, _ = read_message(source)
        except EOFError:
            break
        path, ids, size = str(request["path"]), list(request["ids"]), int(request["size"])
        try:
            if path not in readers:
                readers[path] = _RawReader(path)
            images, failed, problems = read_and_decode(readers[path], ids, size, Path(path).name)
        except Exception as exc:  # noqa: BLE001 -- reported to the parent, which raises it
            write_message(out, {"status": "error", "message": f"{type(exc).__name__}: {exc}"})
        else:
            write_message(
                out, {"status": "ok", "problems": [list(p) for p in problems]}, [images, failed]
            )
    for reader in readers.values():
        reader.close()


if __name__ == "__main__":  # pragma: no cover
    _serve()

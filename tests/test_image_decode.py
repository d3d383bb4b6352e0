"""JPEG decoding: draft-mode sizes, ordered chunks, and failures that never stop a run."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from _crops import render_crop, write_crops
from lesionboost.image import DecodeStats, decode_jpeg, iter_decoded
from lesionboost.image._decode import _RawReader
from lesionboost.io import ImageStore


def _jpeg(array: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, "RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.mark.parametrize("side", [61, 64, 131, 239])
def test_decode_gives_exact_size_rgb(side: int) -> None:
    data = render_crop(np.random.default_rng(side), side=side)
    out = decode_jpeg(data, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def test_decode_keeps_colour_and_layout() -> None:
    # Left half red, right half blue: survives DCT downscaling and resize in place.
    array = np.zeros((128, 128, 3), np.uint8)
    array[:, :64] = (220, 30, 30)
    array[:, 64:] = (30, 30, 220)
    out = decode_jpeg(_jpeg(array), 32).astype(int)
    assert out[:, :12, 0].mean() > 180 and out[:, :12, 2].mean() < 70
    assert out[:, -12:, 2].mean() > 180 and out[:, -12:, 0].mean() < 70


def test_decode_uses_jpeg_draft_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import JpegImagePlugin

    seen: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):  # type: ignore[no-untyped-def]
        result = original(self, mode, size)
        seen.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    decode_jpeg(render_crop(np.random.default_rng(0), side=160), 64)
    # 160 px decodes at 1/2 scale in the DCT domain: 80 px, then resized to 64.
    assert seen == [(80, 80)]


def test_decode_grayscale_and_png_become_rgb() -> None:
    buffer = io.BytesIO()
    Image.new("L", (100, 100), 77).save(buffer, "JPEG")
    assert decode_jpeg(buffer.getvalue(), 32).shape == (32, 32, 3)
    buffer = io.BytesIO()
    Image.new("RGB", (50, 50), (1, 2, 3)).save(buffer, "PNG")
    out = decode_jpeg(buffer.getvalue(), 20)
    assert out.shape == (20, 20, 3) and tuple(out[10, 10]) == (1, 2, 3)


def test_corrupt_bytes_raise_oserror() -> None:
    with pytest.raises(OSError):
        decode_jpeg(b"not a jpeg at all", 64)
    good = render_crop(np.random.default_rng(1))
    with pytest.raises(OSError):
        decode_jpeg(good[: len(good) // 2], 64)  # truncated


@pytest.fixture
def crops_file(tmp_path: Path) -> tuple[Path, list[str]]:
    ids = [f"ISIC_{i:07d}" for i in range(150)]
    good = render_crop(np.random.default_rng(5))
    extra = {"ISIC_9000001": b"\xff\xd8garbage", "ISIC_9000002": good[: len(good) // 3]}
    return write_crops(tmp_path / "crops.hdf5", ids, seed=3, extra=extra), ids


def test_iter_decoded_covers_ids_in_order(crops_file: tuple[Path, list[str]]) -> None:
    path, ids = crops_file
    store = ImageStore(path)
    wanted = ids[::-1][:97] + [ids[0], ids[0]]  # any order, duplicates allowed
    chunks = list(iter_decoded(store, wanted, 32, chunk_size=10, workers=3))
    starts = [c.start for c in chunks]
    assert starts == list(range(0, len(wanted), 10))
    images = np.concatenate([c.images for c in chunks])
    assert images.shape == (len(wanted), 32, 32, 3)
    for k in (0, 50, len(wanted) - 1):
        expected = decode_jpeg(store.get_bytes(wanted[k]), 32)
        np.testing.assert_array_equal(images[k], expected)


def test_failures_are_counted_flagged_and_logged(
    crops_file: tuple[Path, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    path, ids = crops_file
    wanted = [ids[0], "ISIC_9000001", "ISIC_missing", ids[1], "ISIC_9000002"]
    stats = DecodeStats()
    with caplog.at_level(logging.WARNING, logger="lesionboost.image"):
        chunks = list(iter_decoded(ImageStore(path), wanted, 32, chunk_size=2, stats=stats))
    failed = np.concatenate([c.failed for c in chunks])
    assert failed.tolist() == [False, True, True, False, True]
    assert (stats.total, stats.missing, stats.corrupt, stats.failed) == (5, 1, 2, 3)
    assert "3 of 5 images" in stats.summary()
    assert "ISIC_missing" in caplog.text and "ISIC_9000001" in caplog.text
    images = np.concatenate([c.images for c in chunks])
    assert not images[failed].any()  # failed rows stay zero


def test_raw_reader_matches_imagestore_and_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "mixed.hdf5"
    payload = render_crop(np.random.default_rng(2))
    with h5py.File(path, "w") as handle:
        handle.create_dataset("fixed", data=np.bytes_(payload))
        handle.create_dataset("as_uint8", data=np.frombuffer(payload, np.uint8))
        handle.create_group("a_group")
    store = ImageStore(path)
    read = _RawReader(store)
    assert read("fixed") == store.get_bytes("fixed") == payload
    assert read("as_uint8") == payload  # non-Kaggle dtype goes through ImageStore
    with pytest.raises(KeyError):
        read("nope")  # MissingImageError, a KeyError
    stats = DecodeStats()
    chunks = list(iter_decoded(store, ["fixed", "as_uint8", "a_group", "nope"], 16, stats=stats))
    assert chunks[0].failed.tolist() == [False, False, True, True]
    assert stats.failed == 2


def test_consumer_can_stop_early(crops_file: tuple[Path, list[str]]) -> None:
    path, ids = crops_file
    iterator = iter_decoded(ImageStore(path), ids, 16, chunk_size=4, workers=2, prefetch=1)
    first = next(iterator)
    iterator.close()  # must not hang on the bounded queue
    assert first.start == 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="size"):
        list(iter_decoded(None, ["x"], 0))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- decoder processes
def test_processes_give_the_arrays_one_thread_gives(crops_file: tuple[Path, list[str]]) -> None:
    path, ids = crops_file
    store = ImageStore(path)
    wanted = [*ids[::-1], "ISIC_9000001", ids[3], "ISIC_missing", "ISIC_9000002"]
    results = {}
    for backend, workers in [("threads", 1), ("threads", 3), ("processes", 1), ("processes", 2)]:
        stats = DecodeStats()
        chunks = list(
            iter_decoded(
                store, wanted, 32, chunk_size=16, workers=workers, stats=stats, backend=backend
            )
        )
        assert [c.start for c in chunks] == list(range(0, len(wanted), 16))
        results[backend, workers] = (
            np.concatenate([c.images for c in chunks]),
            np.concatenate([c.failed for c in chunks]),
            (stats.total, stats.missing, stats.corrupt),
            [e.split(":")[0] for e in stats.examples],
        )
    reference = results["threads", 1]
    assert reference[2] == (len(wanted), 1, 2)
    for key, (images, failed, counts, examples) in results.items():
        np.testing.assert_array_equal(images, reference[0], err_msg=str(key))
        np.testing.assert_array_equal(failed, reference[1], err_msg=str(key))
        assert counts == reference[2], key
        assert sorted(examples) == sorted(reference[3]), key


def test_auto_takes_processes_only_for_large_requests(
    crops_file: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lesionboost.image import _decode

    started: list[int] = []
    real = _decode._DecoderProcesses

    class Spy(real):  # type: ignore[misc,valid-type]
        def __init__(self, n: int) -> None:
            started.append(n)
            super().__init__(n)

    monkeypatch.setattr(_decode, "_DecoderProcesses", Spy)
    path, ids = crops_file
    store = ImageStore(path)
    list(iter_decoded(store, ids, 16, workers=2))  # 150 crops: threads
    list(iter_decoded(store, ids, 16, workers=1, backend="auto"))
    assert started == []
    monkeypatch.setattr(_decode, "PROCESS_MIN_CROPS", 100)
    list(iter_decoded(store, ids, 16, workers=2))
    list(iter_decoded(store, ids, 16, workers=1))  # one worker: a thread
    assert started == [2]


def test_processes_that_cannot_start_leave_it_to_threads(
    crops_file: tuple[Path, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import sys

    path, ids = crops_file
    monkeypatch.setattr(sys, "executable", str(path.parent / "no-such-python"))
    with caplog.at_level(logging.WARNING, logger="lesionboost.image"):
        chunks = list(iter_decoded(ImageStore(path), ids[:20], 16, workers=2, backend="processes"))
    assert "Decoding in threads" in caplog.text
    assert sum(len(c.failed) for c in chunks) == 20 and not any(c.failed.any() for c in chunks)


def test_a_failing_decoder_process_raises_a_clear_error(tmp_path: Path) -> None:
    from lesionboost.exceptions import ImageStoreError
    from lesionboost.image._decode import _DecoderProcesses

    pool = _DecoderProcesses(1)
    try:
        not_hdf5 = tmp_path / "notes.txt"
        not_hdf5.write_text("isic_id\n")
        future = pool.submit(str(not_hdf5), ["ISIC_0000000"], 16)
        with pytest.raises(ImageStoreError, match="decoder process failed"):
            future.result(timeout=60)
    finally:
        pool.close()


def test_consumer_can_stop_early_with_processes(crops_file: tuple[Path, list[str]]) -> None:
    path, ids = crops_file
    iterator = iter_decoded(
        ImageStore(path), ids, 16, chunk_size=4, workers=2, prefetch=1, backend="processes"
    )
    first = next(iterator)
    iterator.close()  # cancels what is queued and ends the processes
    assert first.start == 0 and len(first.failed) == 4
    with pytest.raises(ValueError, match="backend"):
        list(iter_decoded(ImageStore(path), ids, 16, backend="fibres"))  # type: ignore[arg-type]


def test_the_decoder_process_protocol_carries_json_and_plain_arrays_only() -> None:
    import io

    import numpy as np
    import pytest

    from lesionboost.image._jpeg import read_message, write_message

    stream = io.BytesIO()
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    write_message(
        stream,
        {"status": "ok", "problems": [["ISIC_1", "corrupt", "x"]]},
        [images, np.array([False, True])],
    )
    stream.seek(0)
    header, arrays = read_message(stream)
    assert header["problems"] == [["ISIC_1", "corrupt", "x"]]
    np.testing.assert_array_equal(arrays[0], images)
    assert arrays[1].tolist() == [False, True]
    with pytest.raises(EOFError):
        read_message(stream)
    # an object array (which would need unpickling to read) is refused when written
    with pytest.raises(ValueError):
        write_message(io.BytesIO(), {"status": "ok"}, [np.array([object()], dtype=object)])

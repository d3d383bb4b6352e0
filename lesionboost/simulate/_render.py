"""Render simulated SLICE-3D crops: square JPEG tiles drawn from a lesion's row.

Each crop is a 15 mm x 15 mm field of view at 61-239 px (median ~131), encoded
as baseline JPEG at quality 75 with 4:2:0 chroma subsampling, like the Kaggle
tiles. What is drawn, and from which column:

* skin: the surrounding-skin colour (``Lext, Aext, Bext`` -> sRGB through CIELAB)
  with a smooth texture whose strength follows ``stdLExt``, plus a few hairs;
* lesion: an ellipse of ``clin_size_long_diam_mm`` x ``tbp_lv_minorAxisMM`` turned by
  ``tbp_lv_symm_2axis_angle``, coloured from ``L, A, B``; its rim is roughened by
  ``norm_border``, pushed off-centre by ``symm_2axis``; internal mottling follows
  ``norm_color`` / ``stdL`` and a darker core follows ``radial_color_std_max``;
* the image-only component ``u`` (``(logit - tabular_logit) / image_sd`` in the oracle):
  an irregular dark network plus a blue-white veil whose strength is ``Phi(u)``.
  No column carries ``u``; only the pixels do.

Everything is vectorised numpy on float32 tiles plus Pillow's encoder; smooth noise
comes from a bank of textures made once per process, cropped at random offsets.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
from PIL import Image, ImageDraw
from scipy import special, stats

__all__ = ["lab_to_rgb", "render_crops"]

FIELD_OF_VIEW_MM = 15.0
_SIZE_MEDIAN, _SIZE_SIGMA, _SIZE_MIN, _SIZE_MAX = 131.0, 0.17, 61, 239
_BANK, _BANK_SIZE = 6, 256
_VEIL_RGB = np.array([112.0, 128.0, 160.0], dtype=np.float32)  # blue-grey
_NETWORK_RGB = np.array([45.0, 28.0, 24.0], dtype=np.float32)  # dark brown


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65) to sRGB in [0, 255], for an array of shape (..., 3)."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = fy + lab[..., 1] / 500.0
    fz = fy - lab[..., 2] / 200.0
    delta = 6.0 / 29.0

    def finv(t: np.ndarray) -> np.ndarray:
        return np.where(t > delta, t**3, 3 * delta**2 * (t - 4.0 / 29.0))

    xyz = np.stack([0.95047 * finv(fx), finv(fy), 1.08883 * finv(fz)], axis=-1)
    matrix = np.array(
        [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]
    )
    linear = np.clip(xyz @ matrix.T, 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return srgb * 255.0


def _sizes_from_normal(z: np.ndarray) -> np.ndarray:
    """Side lengths in pixels: log-normal around 131 px, clipped to 61-239."""
    sizes = _SIZE_MEDIAN * np.exp(_SIZE_SIGMA * z)
    return np.clip(np.rint(sizes), _SIZE_MIN, _SIZE_MAX).astype(np.int64)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a fast, well-mixed integer hash (uint64 arithmetic wraps)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _uniforms(keys: np.ndarray, seed: int, streams: int) -> np.ndarray:
    """Uniforms in (0, 1) of shape (len(keys), streams), a pure function of (key, seed).

    Every random choice of a crop comes from its own lesion's key, so a crop looks the
    same whichever other crops are rendered with it.
    """
    base = _mix64(keys.astype(np.uint64) ^ _mix64(np.array([seed], dtype=np.uint64)))
    counters = np.arange(1, streams + 1, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)
    bits = _mix64(base[:, None] ^ counters[None, :])
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def _keys(metadata: Any) -> np.ndarray:
    ids = metadata.get_column("isic_id")
    digits = ids.str.extract(r"(\d+)$").cast(pl.UInt64, strict=False)
    if digits.null_count():  # ids without a numeric tail: fall back to the row position
        return np.arange(metadata.height, dtype=np.uint64)
    return digits.to_numpy().astype(np.uint64)


@functools.lru_cache(maxsize=1)
def _texture_bank() -> np.ndarray:
    """Smooth noise textures (zero mean, unit SD), deterministic, made once per process."""
    rng = np.random.default_rng(20240626)
    freq = np.fft.fftfreq(_BANK_SIZE)
    radius = np.hypot(freq[:, None], freq[None, :])
    bank = np.empty((_BANK, _BANK_SIZE, _BANK_SIZE), dtype=np.float32)
    for k in range(_BANK):
        white = rng.standard_normal((_BANK_SIZE, _BANK_SIZE))
        scale = (0.03, 0.05, 0.07, 0.12, 0.18, 0.25)[k]  # coarse blobs ... fine grain
        field = np.real(np.fft.ifft2(np.fft.fft2(white) * np.exp(-((radius / scale) ** 2))))
        bank[k] = (field - field.mean()) / field.std()
    return bank


@functools.lru_cache(maxsize=256)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in mm, origin at the crop centre."""
    step = FIELD_OF_VIEW_MM / size
    axis = ((np.arange(size, dtype=np.float32) + 0.5) - size / 2) * step
    return np.meshgrid(axis, axis)


def _patch(rng_values: np.ndarray, size: int, which: int) -> np.ndarray:
    bank = _texture_bank()
    top = int(rng_values[0] * (_BANK_SIZE - size))
    left = int(rng_values[1] * (_BANK_SIZE - size))
    return bank[which % _BANK, top : top + size, left : left + size]


def _column(metadata: Any, name: str) -> np.ndarray:
    return np.asarray(metadata.get_column(name).to_numpy(), dtype=np.float64)


def render_crops(
    metadata: Any, image_u: np.ndarray, seed: int, *, quality: int = 75
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(isic_id, jpeg_bytes)`` for every row of ``metadata`` (a polars frame).

    ``image_u`` holds the standardised image-only component of each row; ``seed``
    and the lesion's ``isic_id`` fix every other choice (size, textures, hairs).
    """
    n = metadata.height
    keys = _keys(metadata)
    u = _uniforms(keys, seed, 16)
    sizes = _sizes_from_normal(special.ndtri(u[:, 0]))
    offsets = u[:, 1:7]
    # Textures 0-2 are coarse (lesion outline, mottling), 3-5 fine (skin, network).
    half = _BANK // 2
    picks = np.minimum((u[:, 7:10] * half).astype(int), half - 1) + np.array([half, 0, half])
    shape_picks = np.minimum((u[:, 10] * half).astype(int), half - 1)
    hairs = stats.poisson.ppf(u[:, 11], 0.8).astype(int)
    hair_tone = 0.35 + 0.4 * u[:, 12]
    blotch = (2 * u[:, 13:15] - 1).astype(np.float32)
    hair_start = np.concatenate([[0], np.cumsum(hairs)])
    owner = np.repeat(np.arange(n), hairs)
    hair_u = _uniforms(
        keys[owner] * np.uint64(64) + (np.arange(len(owner)) - hair_start[owner]).astype(np.uint64),
        seed + 1,
        5,
    )
    hair_paths = _hair_paths(hair_u)  # (hairs, points, 2) in crop units
    skin_rgb = lab_to_rgb(
        np.column_stack(
            [_column(metadata, c) for c in ("tbp_lv_Lext", "tbp_lv_Aext", "tbp_lv_Bext")]
        )
    ).astype(np.float32)
    lesion_rgb = lab_to_rgb(
        np.column_stack([_column(metadata, c) for c in ("tbp_lv_L", "tbp_lv_A", "tbp_lv_B")])
    ).astype(np.float32)
    core_lab = np.column_stack(
        [
            _column(metadata, "tbp_lv_L") - 1.5 * _column(metadata, "tbp_lv_radial_color_std_max"),
            _column(metadata, "tbp_lv_A"),
            _column(metadata, "tbp_lv_B") - _column(metadata, "tbp_lv_radial_color_std_max"),
        ]
    )
    core_rgb = lab_to_rgb(core_lab).astype(np.float32)
    major = _column(metadata, "clin_size_long_diam_mm") / 2
    minor = _column(metadata, "tbp_lv_minorAxisMM") / 2
    theta = np.radians(_column(metadata, "tbp_lv_symm_2axis_angle"))
    border = _column(metadata, "tbp_lv_norm_border") / 10.0
    asymmetry = _column(metadata, "tbp_lv_symm_2axis")
    mottle = (_column(metadata, "tbp_lv_norm_color") + _column(metadata, "tbp_lv_stdL")) * 2.2
    skin_grain = _column(metadata, "tbp_lv_stdLExt") * 2.5
    # The image-only component: faint for most lesions, striking for the top ~20 %.
    strength = special.ndtr(1.2 * (np.asarray(image_u, dtype=np.float64) - 0.8))
    ids = metadata.get_column("isic_id").to_list()
    for i in range(n):
        size = int(sizes[i])
        # Draw at half resolution (the tiles are smooth at this scale) and let Pillow
        # upsample; lesion maths only runs inside the lesion's bounding box.
        work = (size + 1) // 2
        grain = _patch(offsets[i, 0:2], work, picks[i, 0])
        canvas = skin_rgb[i] + np.float32(skin_grain[i]) * grain[..., None]
        half_box = min(FIELD_OF_VIEW_MM / 2, 1.8 * max(major[i], 0.3) + 0.4)
        step = FIELD_OF_VIEW_MM / work
        lo = max(0, int((FIELD_OF_VIEW_MM / 2 - half_box) / step))
        hi = min(work, int(np.ceil((FIELD_OF_VIEW_MM / 2 + half_box) / step)))
        gx, gy = _grid(work)
        gx, gy = gx[lo:hi, lo:hi], gy[lo:hi, lo:hi]
        cos_t, sin_t = np.float32(np.cos(theta[i])), np.float32(np.sin(theta[i]))
        u = gx * cos_t + gy * sin_t
        v = gy * cos_t - gx * sin_t
        # Asymmetry: one side of the lesion bulges out along the 2nd axis.
        bulge = 1.0 + np.float32(0.6 * asymmetry[i]) * np.tanh(
            v * np.float32(1.0 / (minor[i] + 1e-3))
        )
        radius = np.sqrt(
            (u * np.float32(1.0 / major[i])) ** 2 + (v * np.float32(1.0 / minor[i])) ** 2
        )
        outline = _patch(offsets[i, 0:2], work, shape_picks[i])[lo:hi, lo:hi]
        radius = radius / bulge + np.float32(0.25 * border[i]) * outline
        edge = np.float32(max(0.08, 0.7 * step / max(minor[i], 0.3)))
        alpha = np.clip((1.0 - radius) * (1.0 / edge) + 0.5, 0.0, 1.0)
        core = np.clip(1.0 - radius, 0.0, 1.0)
        texture = _patch(offsets[i, 2:4], work, picks[i, 1])[lo:hi, lo:hi]
        # Image-only component: a dark irregular network and a blue-white veil.
        s = np.float32(strength[i])
        network = np.clip(
            np.abs(_patch(offsets[i, 4:6], work, picks[i, 2])[lo:hi, lo:hi]) * 2.5 - 1.5, 0.0, 1.0
        )
        veil = np.exp(
            (
                (u - np.float32(blotch[i, 0] * major[i] * 0.4)) ** 2
                + (v - np.float32(blotch[i, 1] * minor[i] * 0.4)) ** 2
            )
            * np.float32(-0.5 / (0.45 * minor[i] + 0.1) ** 2)
        )
        net_w = (np.float32(0.65) * s) * network
        veil_w = (np.float32(0.7) * s * s) * veil
        inside = (
            lesion_rgb[i]
            + (core_rgb[i] - lesion_rgb[i]) * core[..., None]
            + np.float32(0.6 * mottle[i]) * texture[..., None]
        )
        inside += (_NETWORK_RGB - inside) * net_w[..., None]
        inside += (_VEIL_RGB - inside) * veil_w[..., None]
        box = canvas[lo:hi, lo:hi]
        box += (inside - box) * alpha[..., None]
        image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
        if work != size:
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        if hairs[i]:
            draw = ImageDraw.Draw(image)
            colour = tuple(int(c) for c in skin_rgb[i] * hair_tone[i])
            for path in hair_paths[hair_start[i] : hair_start[i + 1]] * size:
                draw.line(path.ravel().tolist(), fill=colour, width=1)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality, subsampling=2)
        yield ids[i], buffer.getvalue()


def _hair_paths(u: np.ndarray) -> np.ndarray:
    """Gently curved hair polylines in unit crop coordinates from 5 uniforms per hair."""
    start = u[:, None, 0:2]
    angle = np.pi * u[:, 2:3]
    direction = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    bend = 0.15 * special.ndtri(u[:, None, 3:5])
    t = np.linspace(-0.6, 0.9, 6)[None, :, None]
    return start + t * (direction + bend * t)

"""Pillow-drawn lesion crops for the image tests (skin-coloured noise + a dark ellipse).

Kept independent of :mod:`lesionboost.simulate` so that the image tests need
nothing but Pillow; ``atypical`` crops get a larger, irregular, two-coloured
lesion so that a trained model has something to learn.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lesionboost.io import ImageStore


def render_crop(
    rng: np.random.Generator, *, atypical: bool = False, side: int | None = None
) -> bytes:
    side = int(side or rng.integers(100, 170))
    skin = np.array([rng.uniform(170, 225), rng.uniform(120, 170), rng.uniform(90, 140)])
    noise = rng.normal(0, 6, (side, side, 3))
    base = np.clip(skin + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(image)
    centre = side / 2 + rng.normal(0, side * 0.03, 2)
    radius = side * (rng.uniform(0.22, 0.34) if atypical else rng.uniform(0.10, 0.2))
    colour = tuple(int(v) for v in skin * rng.uniform(0.35, 0.6))
    if atypical:
        # A ragged polygon and a second, darker blotch: irregular border, two colours.
        angles = np.sort(rng.uniform(0, 2 * np.pi, 14))
        radii = radius * rng.uniform(0.6, 1.25, angles.size)
        points = [
            (centre[0] + r * np.cos(a), centre[1] + r * np.sin(a))
            for a, r in zip(angles, radii, strict=True)
        ]
        draw.polygon(points, fill=colour)
        inner = radius * 0.45
        offset = rng.normal(0, radius * 0.2, 2)
        box = [
            centre[0] + offset[0] - inner,
            centre[1] + offset[1] - inner,
            centre[0] + offset[0] + inner,
            centre[1] + offset[1] + inner,
        ]
        draw.ellipse(box, fill=tuple(int(v * 0.5) for v in colour))
    else:
        squash = rng.uniform(0.7, 1.0)
        box = [
            centre[0] - radius,
            centre[1] - radius * squash,
            centre[0] + radius,
            centre[1] + radius * squash,
        ]
        draw.ellipse(box, fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(radius=1.2))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)  # Pillow's default 4:2:0 at this quality, as Kaggle
    return buffer.getvalue()


def write_crops(
    path: Path,
    ids: list[str],
    *,
    atypical: np.ndarray | None = None,
    seed: int = 0,
    extra: dict[str, bytes] | None = None,
) -> Path:
    """Write one crop per id (plus raw ``extra`` payloads) as a Kaggle-layout HDF5 file."""
    rng = np.random.default_rng(seed)
    flags = np.zeros(len(ids), dtype=bool) if atypical is None else np.asarray(atypical, bool)
    items = [
        (isic_id, render_crop(rng, atypical=bool(flag)))
        for isic_id, flag in zip(ids, flags, strict=True)
    ]
    items += list((extra or {}).items())
    return ImageStore.write(path, items)

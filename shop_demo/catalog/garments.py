"""Product photos for the demo, drawn with Pillow: garments of different shapes and colours."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFilter

SIZE = (900, 1200)
BACKGROUND = (246, 244, 240)


def _tshirt(w, h):
    return [
        (0.30, 0.18),
        (0.42, 0.14),
        (0.58, 0.14),
        (0.70, 0.18),
        (0.90, 0.32),
        (0.80, 0.42),
        (0.72, 0.36),
        (0.72, 0.86),
        (0.28, 0.86),
        (0.28, 0.36),
        (0.20, 0.42),
        (0.10, 0.32),
    ]


def _dress(w, h):
    return [
        (0.38, 0.12),
        (0.62, 0.12),
        (0.64, 0.34),
        (0.60, 0.44),
        (0.84, 0.90),
        (0.16, 0.90),
        (0.40, 0.44),
        (0.36, 0.34),
    ]


def _hoodie(w, h):
    return [
        (0.38, 0.10),
        (0.50, 0.06),
        (0.62, 0.10),
        (0.72, 0.20),
        (0.92, 0.70),
        (0.82, 0.74),
        (0.72, 0.42),
        (0.74, 0.88),
        (0.26, 0.88),
        (0.28, 0.42),
        (0.18, 0.74),
        (0.08, 0.70),
        (0.28, 0.20),
    ]


def _skirt(w, h):
    return [(0.32, 0.26), (0.68, 0.26), (0.70, 0.32), (0.86, 0.80), (0.14, 0.80), (0.30, 0.32)]


def _trousers(w, h):
    return [
        (0.32, 0.10),
        (0.68, 0.10),
        (0.74, 0.90),
        (0.56, 0.90),
        (0.50, 0.36),
        (0.44, 0.90),
        (0.26, 0.90),
    ]


def _jacket(w, h):
    return [
        (0.30, 0.14),
        (0.44, 0.12),
        (0.50, 0.30),
        (0.56, 0.12),
        (0.70, 0.14),
        (0.90, 0.78),
        (0.80, 0.80),
        (0.72, 0.40),
        (0.72, 0.88),
        (0.28, 0.88),
        (0.28, 0.40),
        (0.20, 0.80),
        (0.10, 0.78),
    ]


SHAPES = {
    "tshirt": _tshirt,
    "dress": _dress,
    "hoodie": _hoodie,
    "skirt": _skirt,
    "trousers": _trousers,
    "jacket": _jacket,
}


def draw_garment(shape: str, color: tuple[int, int, int], accent: tuple[int, int, int]) -> bytes:
    """A JPEG product photo of a garment: soft shadow, body colour, an accent stripe."""
    w, h = SIZE
    points = [(x * w, y * h) for x, y in SHAPES[shape](w, h)]
    image = Image.new("RGB", SIZE, BACKGROUND)
    shadow = Image.new("L", SIZE, 0)
    ImageDraw.Draw(shadow).polygon([(x + 14, y + 18) for x, y in points], fill=90)
    image.paste((200, 198, 192), mask=shadow.filter(ImageFilter.GaussianBlur(18)))
    draw = ImageDraw.Draw(image)
    draw.polygon(points, fill=color, outline=tuple(max(0, c - 40) for c in color))
    top = min(y for _, y in points)
    draw.rectangle((w * 0.30, top + h * 0.30, w * 0.70, top + h * 0.34), fill=accent)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()

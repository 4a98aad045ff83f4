"""Pillow drawings for the HiDream simulator: result pictures and template previews.

The simulator must hand back *real* pictures so that everything downstream (download,
size measurement, thumbnails, storage) is exercised as with HiDream. A result is drawn
from the submitted product image: a scene background (from the scene template, or from
a hash of the prompt), a simple "model" figure (from the human template, or the prompt
hash) wearing the product over its torso, and a caption with the sub-task index, so each
sub-task, template and prompt gives a visibly different picture.

This module also owns the simulator's template catalogue, because each template's
entry drives how it is drawn. Nothing here speaks HTTP or imports Django.
"""

import colorsys
import hashlib
import io
import random
from dataclasses import dataclass, replace
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

RESULT_SIZE = (768, 1024)  # portrait, like HiDream's model photos
PREVIEW_SIZE = (768, 1024)
HORIZON = 700  # where the wall or sky meets the floor or ground
PRODUCT_MAX_SIDE = 512  # the product is kept this small in memory: it only fills a torso


@dataclass(frozen=True)
class PersonLook:
    """How the drawn model looks."""

    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    long_hair: bool
    broad: bool  # wider shoulders (the Man templates)
    outfit: tuple[int, int, int]
    trousers: tuple[int, int, int]


@dataclass(frozen=True)
class SceneLook:
    """How the background is drawn; `decor` picks the props."""

    top: tuple[int, int, int]
    bottom: tuple[int, int, int]
    floor: tuple[int, int, int]
    decor: str  # studio, buildings, waves, window, trees or sofa


_HUMANS = (
    (
        {"id": "h-001", "name_zh": "都市女性", "name_en": "Urban woman", "gender": "Woman"},
        PersonLook((241, 204, 178), (45, 32, 28), True, False, (236, 236, 240), (52, 62, 96)),
    ),
    (
        {"id": "h-002", "name_zh": "商务男士", "name_en": "Business man", "gender": "Man"},
        PersonLook((224, 182, 150), (25, 25, 30), False, True, (40, 48, 70), (35, 38, 50)),
    ),
    (
        {"id": "h-003", "name_zh": "运动女孩", "name_en": "Sporty girl", "gender": "Woman"},
        PersonLook((198, 150, 112), (120, 70, 35), True, False, (230, 90, 80), (60, 60, 65)),
    ),
    (
        {"id": "h-004", "name_zh": "文艺青年", "name_en": "Artsy young man", "gender": "Man"},
        PersonLook((250, 220, 196), (90, 60, 40), False, False, (150, 170, 120), (90, 80, 70)),
    ),
    (
        {"id": "h-005", "name_zh": "优雅女士", "name_en": "Elegant lady", "gender": "Woman"},
        PersonLook((150, 105, 75), (15, 12, 12), True, False, (120, 30, 60), (30, 25, 35)),
    ),
    (
        {"id": "h-006", "name_zh": "休闲男士", "name_en": "Casual man", "gender": "Man"},
        PersonLook((236, 196, 160), (200, 170, 110), False, True, (80, 130, 190), (120, 100, 80)),
    ),
)
_SCENE_FIELDS = ("id", "name_zh", "name_en", "scenes_type", "region")
_SCENES = (
    (
        ("s-001", "简约白棚", "Plain white studio", "indoor scenes", "China"),
        SceneLook((246, 246, 248), (214, 216, 222), (200, 200, 206), "studio"),
    ),
    (
        ("s-002", "城市街头", "City street", "outdoor scenes", "China"),
        SceneLook((120, 160, 210), (200, 215, 230), (95, 95, 100), "buildings"),
    ),
    (
        ("s-003", "海边沙滩", "Seaside beach", "outdoor scenes", "Southeast Asia"),
        SceneLook((70, 150, 230), (180, 225, 250), (236, 214, 160), "waves"),
    ),
    (
        ("s-004", "咖啡馆", "Cafe", "indoor scenes", "Europe"),
        SceneLook((150, 105, 75), (196, 150, 110), (110, 75, 50), "window"),
    ),
    (
        ("s-005", "森林小径", "Forest path", "outdoor scenes", "North America"),
        SceneLook((150, 200, 170), (210, 235, 200), (90, 120, 60), "trees"),
    ),
    (
        ("s-006", "客厅", "Living room", "indoor scenes", "Japan"),
        SceneLook((235, 225, 205), (220, 205, 180), (170, 140, 105), "sofa"),
    ),
)

# The public template items, as the template-list endpoints return them (without
# `show_image`, which depends on the simulator's address).
HUMAN_TEMPLATES: tuple[dict, ...] = tuple(item for item, _ in _HUMANS)
SCENE_TEMPLATES: tuple[dict, ...] = tuple(
    dict(zip(_SCENE_FIELDS, row, strict=True)) for row, _ in _SCENES
)
_HUMAN_LOOKS = {item["id"]: look for item, look in _HUMANS}
_SCENE_LOOKS = {row[0]: look for row, look in _SCENES}
_NAMES = {item["id"]: item for item in HUMAN_TEMPLATES + SCENE_TEMPLATES}

_SKINS = tuple(look.skin for look in _HUMAN_LOOKS.values())
_HAIRS = tuple(look.hair for look in _HUMAN_LOOKS.values())
_DECORS = ("studio", "buildings", "waves", "window", "trees", "sofa")


def is_human_template(template_id: str) -> bool:
    return template_id in _HUMAN_LOOKS


def is_scene_template(template_id: str) -> bool:
    return template_id in _SCENE_LOOKS


def decode_product(data: bytes, max_side: int) -> Image.Image:
    """The submitted picture as a small upright RGBA copy, for pasting onto the model.

    Raises ValueError (with a message for the API user) if `data` is not a picture
    Pillow can decode, or if its longest side exceeds `max_side`.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            # The header gives the size: refuse before decoding megapixels for nothing.
            if max(img.size) > max_side:
                raise ValueError(
                    f"{img.width}x{img.height} exceeds the 4K limit "
                    f"(longest side must be <= {max_side} px)"
                )
            small = ImageOps.exif_transpose(img).convert("RGBA")
    except Image.DecompressionBombError:
        raise ValueError(f"exceeds the 4K limit (longest side <= {max_side} px)") from None
    except (OSError, SyntaxError):  # what Pillow raises for bytes it cannot decode
        raise ValueError("the data is not a picture that can be decoded") from None
    small.thumbnail((PRODUCT_MAX_SIDE, PRODUCT_MAX_SIDE))
    return small


def render_result(
    product: Image.Image,
    *,
    human_template_id: str | None,
    scene_template_id: str | None,
    prompt: str | None,
    index: int,
    count: int,
) -> bytes:
    """The JPEG of sub-task `index` (1-based) of `count`, wearing `product`."""
    if human_template_id and scene_template_id:
        person, scene = _HUMAN_LOOKS[human_template_id], _SCENE_LOOKS[scene_template_id]
        label = f"{human_template_id} / {scene_template_id}"
        seed = f"{human_template_id}/{scene_template_id}"
    else:
        digest = hashlib.sha256((prompt or "").encode("utf-8")).digest()
        person, scene = _person_from_digest(prompt or "", digest), _scene_from_digest(digest)
        label = f"prompt #{digest.hex()[:8]}"
        seed = digest.hex()
    # Each sub-task gets its own light, position and pose, as HiDream's variants differ.
    scene = replace(scene, top=_shift_hue(scene.top, 0.03 * (index - 1)))
    img = Image.new("RGB", RESULT_SIZE)
    _draw_scene(img, scene, random.Random(seed))
    centre = RESULT_SIZE[0] // 2 + (0, -90, 90, -40)[(index - 1) % 4]
    swing = (index * 17) % 50 - 10
    _draw_person(img, person, centre, swing, product)
    _badge(img, f"{index}/{count}")
    _caption(img, f"HiDream simulator  {index}/{count}  {label}")
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


@lru_cache(maxsize=64)
def render_preview(template_id: str, width: int | None = None) -> bytes | None:
    """The PNG preview (`show_image`) of a template, or None if there is no such template.

    Cached: previews are pure functions of (template, width), and lists show them often.
    """
    item = _NAMES.get(template_id)
    if item is None:
        return None
    img = Image.new("RGB", PREVIEW_SIZE)
    rng = random.Random(template_id)
    if template_id in _HUMAN_LOOKS:
        backdrop = SceneLook((238, 238, 242), (205, 208, 216), (190, 192, 200), "studio")
        _draw_scene(img, backdrop, rng)
        _draw_person(img, _HUMAN_LOOKS[template_id], PREVIEW_SIZE[0] // 2, 0, None)
        _caption(img, f"{template_id}  {item['name_en']}  ({item['gender']})")
    else:
        _draw_scene(img, _SCENE_LOOKS[template_id], rng)
        _caption(img, f"{template_id}  {item['name_en']}  ({item['scenes_type']})")
    if width and width != img.width:
        img = img.resize(
            (width, max(1, round(img.height * width / img.width))), Image.Resampling.LANCZOS
        )
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def _person_from_digest(prompt: str, digest: bytes) -> PersonLook:
    text = prompt.lower()
    # A prompt that names a gender should get it; otherwise the hash decides.
    if "女" in prompt or "woman" in text or "female" in text or "girl" in text:
        man = False
    elif "男" in prompt or "man" in text or "male" in text or "boy" in text:
        man = True
    else:
        man = bool(digest[2] & 1)
    return PersonLook(
        skin=_SKINS[digest[0] % len(_SKINS)],
        hair=_HAIRS[digest[1] % len(_HAIRS)],
        long_hair=not man,
        broad=man,
        outfit=_hsv(digest[6] / 255, 0.45, 0.8),
        trousers=_hsv(digest[7] / 255, 0.4, 0.3),
    )


def _scene_from_digest(digest: bytes) -> SceneLook:
    hue = digest[3] / 255
    return SceneLook(
        top=_hsv(hue, 0.45, 0.9),
        bottom=_hsv(hue + 0.08, 0.2, 0.97),
        floor=_hsv(digest[4] / 255, 0.3, 0.55),
        decor=_DECORS[digest[5] % 6],
    )


def _hsv(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def _shift_hue(colour: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    hue, sat, val = colorsys.rgb_to_hsv(*(channel / 255 for channel in colour))
    if amount:
        sat = max(sat, 0.12)  # greys have no hue to turn, so tint them a little instead
    return _hsv(hue + amount, sat, val)


def _draw_scene(img: Image.Image, scene: SceneLook, rng: random.Random) -> None:
    width, height = img.size
    gradient = Image.linear_gradient("L").resize((width, HORIZON))
    sky = Image.composite(
        Image.new("RGB", (width, HORIZON), scene.bottom),
        Image.new("RGB", (width, HORIZON), scene.top),
        gradient,
    )
    img.paste(sky, (0, 0))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, HORIZON, width, height), fill=scene.floor)
    draw.line((0, HORIZON, width, HORIZON), fill=_darker(scene.floor, 0.7), width=4)
    if scene.decor == "studio":
        draw.ellipse(
            (width * 0.15, HORIZON - 40, width * 0.85, HORIZON + 120),
            fill=_darker(scene.floor, 1.08),
        )
    elif scene.decor == "buildings":
        x = -20
        while x < width:
            w, h = rng.randint(70, 140), rng.randint(180, 420)
            draw.rectangle((x, HORIZON - h, x + w, HORIZON), fill=_darker(scene.top, 0.55))
            for wy in range(HORIZON - h + 20, HORIZON - 30, 40):
                for wx in range(x + 12, x + w - 20, 30):
                    draw.rectangle((wx, wy, wx + 12, wy + 18), fill=(250, 230, 150))
            x += w + rng.randint(6, 30)
    elif scene.decor == "waves":
        draw.ellipse((width - 200, 80, width - 90, 190), fill=(255, 235, 120))
        draw.rectangle((0, HORIZON - 110, width, HORIZON), fill=(40, 120, 190))
        for y in range(HORIZON - 100, HORIZON, 22):
            for x in range(rng.randint(-40, 0), width, 80):
                draw.arc((x, y, x + 60, y + 18), 200, 340, fill=(230, 245, 255), width=3)
    elif scene.decor == "window":
        draw.rectangle((70, 120, 330, 460), fill=(200, 225, 240), outline=(90, 60, 40), width=12)
        draw.line((200, 120, 200, 460), fill=(90, 60, 40), width=8)
        draw.line((70, 290, 330, 290), fill=(90, 60, 40), width=8)
        draw.rectangle((width - 260, HORIZON - 150, width - 60, HORIZON - 130), fill=(70, 45, 30))
        draw.rectangle((width - 170, HORIZON - 130, width - 150, HORIZON), fill=(70, 45, 30))
    elif scene.decor == "trees":
        for _ in range(9):
            x, h = rng.randint(-40, width), rng.randint(220, 480)
            draw.rectangle((x - 8, HORIZON - 60, x + 8, HORIZON), fill=(90, 60, 35))
            draw.polygon(
                [(x, HORIZON - h), (x - 70, HORIZON - 50), (x + 70, HORIZON - 50)],
                fill=_darker(scene.floor, 0.75 + rng.random() * 0.3),
            )
    elif scene.decor == "sofa":
        draw.rounded_rectangle(
            (60, HORIZON - 170, width - 60, HORIZON - 20), 40, fill=(120, 140, 160)
        )
        draw.rectangle((width - 120, 160, width - 112, HORIZON - 170), fill=(60, 60, 60))
        draw.polygon(
            [(width - 160, 160), (width - 68, 160), (width - 95, 100), (width - 133, 100)],
            fill=(250, 240, 210),
        )


def _draw_person(
    img: Image.Image, look: PersonLook, cx: int, swing: int, product: Image.Image | None
) -> None:
    draw = ImageDraw.Draw(img)
    shoulder, waist = (125, 85) if look.broad else (105, 72)
    if look.long_hair:  # drawn first, so it falls behind head and shoulders
        draw.rounded_rectangle((cx - 78, 180, cx + 78, 430), 60, fill=look.hair)
    draw.rectangle((cx - 20, 295, cx + 20, 350), fill=look.skin)  # neck
    for side in (-1, 1):  # arms and hands
        top = (cx + side * (shoulder - 12), 365)
        hand = (cx + side * (shoulder + 35 + swing), 610 - abs(swing))
        draw.line((top, hand), fill=look.outfit, width=38)
        draw.ellipse((hand[0] - 21, hand[1] - 21, hand[0] + 21, hand[1] + 21), fill=look.skin)
    draw.polygon(
        [(cx - shoulder, 345), (cx + shoulder, 345), (cx + waist, 645), (cx - waist, 645)],
        fill=look.outfit,
    )  # torso
    for x0, x1 in ((cx - waist + 4, cx - 8), (cx + 8, cx + waist - 4)):  # legs and shoes
        draw.rectangle((x0, 645, x1, 935), fill=look.trousers)
        draw.ellipse((x0 - 8, 920, x1 + 8, 958), fill=(35, 30, 30))
    draw.ellipse((cx - 60, 190, cx + 60, 310), fill=look.skin)  # head
    if not look.long_hair:
        draw.chord((cx - 64, 182, cx + 64, 290), 180, 360, fill=look.hair)
    else:
        draw.chord((cx - 64, 182, cx + 64, 262), 180, 360, fill=look.hair)
    for side in (-1, 1):
        draw.ellipse((cx + side * 22 - 6, 246, cx + side * 22 + 6, 258), fill=(40, 30, 30))
    draw.arc((cx - 20, 262, cx + 20, 288), 20, 160, fill=(150, 60, 60), width=4)
    if product is not None:
        # The "garment": the submitted picture, fitted into the torso and pasted with its
        # own transparency, so cut-outs sit on the body and photos look like a print.
        box = (cx - shoulder + 18, 355, cx + shoulder - 18, 635)
        fitted = ImageOps.contain(product, (box[2] - box[0], box[3] - box[1]))
        left = box[0] + (box[2] - box[0] - fitted.width) // 2
        top = box[1] + (box[3] - box[1] - fitted.height) // 2
        img.paste(fitted, (left, top), fitted)


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # a Pillow built without FreeType only has the bitmap font
        return ImageFont.load_default()


def _caption(img: Image.Image, text: str) -> None:
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, img.height - 56, img.width, img.height), fill=(24, 24, 28))
    draw.text((20, img.height - 44), text, fill=(245, 245, 245), font=_font(26))


def _badge(img: Image.Image, text: str) -> None:
    draw = ImageDraw.Draw(img)
    right = img.width - 24
    draw.rounded_rectangle((right - 130, 24, right, 94), 20, fill=(24, 24, 28))
    draw.text((right - 65, 59), text, fill=(255, 255, 255), font=_font(40), anchor="mm")


def _darker(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, round(channel * factor))) for channel in colour)

"""The drawing code of the offline ``local`` provider (see ``generation/providers/local.py``).

It lives apart from the provider so that ``local.py`` stays a short read about the Provider
interface, its settings and its errors, while this module holds everything that decides the
pixels: the parameters, the palette, the choice of motifs and the rendering of new designs and
edits; the motifs themselves are painted by ``local_motifs.py``. Any change here changes the
bytes of the PNGs the provider returns.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import json
import math
import random
import re
from typing import Any

from PIL import Image, ImageFilter, ImageOps

from generation import params as vocabulary
from generation.providers.base import OutputRequest, ReferenceImage
from generation.providers.local_motifs import RGB, _draw_motifs, _mix, _Palette

_RENDER_VERSION = b"atelier-local-v1"

# The styles it paints differently; any other ("none") is drawn as the default.
STYLES = tuple(style for style in vocabulary.STYLES if style != vocabulary.STYLE_NONE)
DEFAULT_STYLE = vocabulary.API_DEFAULT_STYLE
QUALITY_LONG_SIDE = dict(zip(vocabulary.QUALITIES, (512, 768, 1024), strict=True))
DEFAULT_QUALITY = vocabulary.DEFAULT_QUALITY
ASPECT_RATIOS = {
    "1:1": (1, 1),
    "4:3": (4, 3),
    "3:4": (3, 4),
    "16:9": (16, 9),
    "9:16": (9, 16),
    "3:2": (3, 2),
    "2:3": (2, 3),
}
DEFAULT_ASPECT_RATIO = "1:1"
DEFAULT_STRENGTH = 0.6

_WORD = re.compile(r"[a-z]+")

# Words that pull the palette towards a colour.
COLOUR_WORDS: dict[str, tuple[int, int, int]] = {
    "red": (214, 38, 40),
    "crimson": (178, 18, 52),
    "scarlet": (230, 36, 30),
    "ruby": (168, 16, 52),
    "cherry": (200, 20, 50),
    "maroon": (110, 20, 30),
    "burgundy": (122, 20, 46),
    "fire": (226, 72, 22),
    "lava": (214, 60, 16),
    "orange": (245, 128, 30),
    "tangerine": (247, 120, 24),
    "amber": (250, 172, 10),
    "coral": (255, 112, 90),
    "peach": (255, 184, 148),
    "rust": (183, 65, 14),
    "sunset": (244, 108, 62),
    "autumn": (200, 100, 32),
    "yellow": (245, 208, 40),
    "lemon": (246, 224, 60),
    "sunflower": (250, 196, 20),
    "mustard": (212, 170, 30),
    "gold": (212, 168, 52),
    "golden": (218, 165, 42),
    "green": (42, 160, 72),
    "emerald": (20, 150, 100),
    "jade": (0, 160, 110),
    "lime": (160, 220, 50),
    "olive": (120, 130, 40),
    "mint": (150, 228, 190),
    "sage": (150, 172, 130),
    "forest": (34, 110, 52),
    "jungle": (30, 120, 60),
    "teal": (0, 128, 128),
    "turquoise": (48, 200, 190),
    "cyan": (0, 190, 220),
    "aqua": (40, 210, 220),
    "blue": (40, 90, 210),
    "azure": (40, 140, 240),
    "cobalt": (0, 71, 171),
    "sapphire": (20, 50, 160),
    "navy": (20, 32, 92),
    "ocean": (18, 92, 164),
    "sea": (24, 110, 170),
    "sky": (118, 178, 235),
    "indigo": (62, 32, 132),
    "purple": (122, 50, 172),
    "violet": (140, 70, 200),
    "lavender": (178, 158, 226),
    "lilac": (196, 160, 220),
    "plum": (120, 40, 100),
    "magenta": (210, 30, 140),
    "fuchsia": (220, 40, 160),
    "pink": (240, 118, 168),
    "rose": (228, 88, 120),
    "blush": (240, 170, 180),
    "brown": (122, 76, 40),
    "chocolate": (96, 56, 30),
    "coffee": (111, 78, 55),
    "bronze": (170, 110, 50),
    "copper": (184, 115, 51),
    "beige": (225, 205, 170),
    "sand": (215, 190, 140),
    "desert": (214, 168, 110),
    "black": (14, 14, 18),
    "noir": (14, 14, 18),
    "charcoal": (50, 52, 56),
    "white": (246, 246, 242),
    "ivory": (250, 246, 230),
    "cream": (246, 236, 210),
    "snow": (240, 245, 250),
    "silver": (190, 195, 202),
    "grey": (128, 128, 130),
    "gray": (128, 128, 130),
}

_DARK_WORDS = frozenset(
    [
        "dark",
        "night",
        "midnight",
        "deep",
        "noir",
        "moody",
        "shadow",
        "shadows",
        "space",
        "galaxy",
        "cosmos",
        "neon",
        "black",
    ]
)
_LIGHT_WORDS = frozenset(["light", "bright", "pastel", "white", "snow", "soft", "airy", "cream", "ivory", "morning"])
_VIVID_WORDS = frozenset(["vivid", "vibrant", "neon", "bold", "saturated", "colorful", "colourful", "psychedelic"])
_MUTED_WORDS = frozenset(["muted", "faded", "vintage", "dusty", "calm", "subtle"])

# Words that ask for a motif.
_MOTIF_WORDS: dict[str, str] = {}
for _motif, _words in {
    "sun": "sun moon planet orb eclipse sunrise sunset",
    "circles": "circle circles bubble bubbles bokeh balloon balloons dot dots",
    "ridges": "mountain mountains landscape hill hills valley peak peaks alps desert dune dunes",
    "waves": "ocean sea wave waves water river lake beach surf tide",
    "blocks": "city skyline building buildings architecture tower towers urban street",
    "stars": "star stars night space galaxy cosmos snow rain confetti sparkle",
    "polygons": "geometric abstract crystal crystals triangle triangles hexagon pattern mosaic",
    "stripes": "stripe stripes line lines flag retro striped",
    "brush": "paint painting painted brush strokes expressive graffiti",
    "flowers": "flower flowers floral garden bloom blossom petal petals rose tulip",
    "trees": "forest tree trees woods pine jungle",
}.items():
    for _word in _words.split():
        _MOTIF_WORDS.setdefault(_word, _motif)

# drawing order, back to front
_BACK_MOTIFS = ("stars", "sun", "ridges", "waves", "stripes")
_MID_MOTIFS = ("circles", "blocks", "polygons", "flowers", "trees")
_FRONT_MOTIFS = ("brush",)
_SCENE_MOTIFS = frozenset({"ridges", "waves", "blocks", "trees"})
_PATTERN_MOTIFS = frozenset({"polygons", "stripes", "flowers", "circles"})
_MINIMAL_SUBJECTS = frozenset({"circles", "polygons", "flowers", "blocks", "sun", "trees"})
_MINIMAL_ACCENTS = frozenset({"ridges", "waves", "stripes", "stars"})
# Phrases whose words would otherwise be misread ("negative space" is not outer space).
_IGNORED_PHRASES = re.compile(r"negative space|clean lines|natural lighting|true-to-life", re.IGNORECASE)


# -- parameters --------------------------------------------------------------------------------


def _style(params: dict) -> str:
    style = params.get("style")
    return style if isinstance(style, str) and style in STYLES else DEFAULT_STYLE


def _long_side(params: dict) -> int:
    quality = params.get("quality")
    if isinstance(quality, str) and quality in QUALITY_LONG_SIDE:
        return QUALITY_LONG_SIDE[quality]
    return QUALITY_LONG_SIDE[DEFAULT_QUALITY]


def _ratio(value: Any) -> tuple[int, int] | None:
    """The (width, height) proportions for an aspect-ratio parameter such as "16:9"."""
    if not isinstance(value, str):
        return None
    if value in ASPECT_RATIOS:
        return ASPECT_RATIOS[value]
    match = re.fullmatch(r"\s*(\d{1,3})\s*[:x/]\s*(\d{1,3})\s*", value)
    if match:
        a, b = int(match[1]), int(match[2])
        if a and b and 0.25 <= a / b <= 4:
            return a, b
    return None


def _size(long_side: int, ratio: tuple[float, float]) -> tuple[int, int]:
    a, b = ratio
    if a >= b:
        return long_side, max(1, round(long_side * b / a))
    return max(1, round(long_side * a / b)), long_side


def _strength(params: dict) -> float:
    try:
        value = float(params.get("strength", DEFAULT_STRENGTH))
    except (TypeError, ValueError):
        return DEFAULT_STRENGTH
    if math.isnan(value):
        return DEFAULT_STRENGTH
    return min(1.0, max(0.0, value))


# -- input images ------------------------------------------------------------------------------


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _average_colour(content: bytes) -> RGB | None:
    try:
        opened = Image.open(io.BytesIO(content))
        opened.draft("RGB", (64, 64))
        image = to_rgb(opened)
        image.thumbnail((64, 64))
        r, g, b = image.resize((1, 1), Image.Resampling.BOX).tobytes()
        return r, g, b
    except Exception:  # noqa: BLE001 - Pillow raises many kinds; an unreadable reference is ignored
        return None


# -- rendering ---------------------------------------------------------------------------------


def _digest(request: OutputRequest) -> bytes:
    """Everything that decides the picture. Quality is left out: it only sets the resolution,
    so a draft and a high-quality render of one request show the same design."""
    params = {k: v for k, v in (request.params or {}).items() if k != "quality"}
    payload = {
        "kind": request.kind,
        "prompt": request.prompt,
        "seed": request.seed,
        "index": request.index,
        "params": params,
        "source": hashlib.sha256(request.source_image).hexdigest() if request.source_image else None,
        "references": [[hashlib.sha256(ref.content).hexdigest(), ref.weight] for ref in request.references],
    }
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=True)
    return hashlib.sha256(_RENDER_VERSION + text.encode()).digest()


def render(request: OutputRequest, source: Image.Image | None = None) -> Image.Image:
    """The RGB picture for `request` (an edit needs its decoded `source`)."""
    params = request.params or {}
    style = _style(params)
    rng = random.Random(int.from_bytes(_digest(request), "big"))
    words = _WORD.findall(_IGNORED_PHRASES.sub(" ", request.prompt or "").lower())
    palette = _make_palette(words, request.prompt or "", style, rng, request.references)
    motifs = _pick_motifs(words, style, palette.dark_mode, rng)

    if source is None:
        ratio = _ratio(params.get("aspect_ratio")) or ASPECT_RATIOS[DEFAULT_ASPECT_RATIO]
        return _render_design(_size(_long_side(params), ratio), palette, motifs, style, rng)
    ratio = _ratio(params.get("aspect_ratio")) or source.size
    size = _size(_long_side(params), ratio)
    return _render_edit(source, size, palette, motifs, style, rng, _strength(params))


# palette


def _hls(rgb: RGB) -> tuple[float, float, float]:
    return colorsys.rgb_to_hls(*(c / 255 for c in rgb))


def _rgb(h: float, lum: float, s: float) -> RGB:
    r, g, b = colorsys.hls_to_rgb(h % 1.0, min(1.0, max(0.0, lum)), min(1.0, max(0.0, s)))
    return round(r * 255), round(g * 255), round(b * 255)


def _make_palette(
    words: list[str],
    prompt: str,
    style: str,
    rng: random.Random,
    references: tuple[ReferenceImage, ...],
) -> _Palette:
    # The prompt alone picks the base hues, so every output of a job shares a colour story;
    # the seed only jitters them.
    prompt_rng = random.Random(hashlib.sha256(prompt.lower().encode()).digest())
    word_set = set(words)
    named = list(dict.fromkeys(COLOUR_WORDS[w] for w in words if w in COLOUR_WORDS))[:4]
    chromatic = [_hls(c) for c in named if _hls(c)[2] >= 0.18]
    achromatic = [_hls(c) for c in named if _hls(c)[2] < 0.18]

    if chromatic:
        hues = [(h, s) for h, _lum, s in chromatic]
        if len(hues) == 1:
            h, s = hues[0]
            hues += [(h + 0.04, s), (h - 0.05, s * 0.9)]
        spread = 0.015
    else:
        base = prompt_rng.random()
        offsets = prompt_rng.choice(
            [(0, 0.08, -0.08), (0, 0.5, 0.06), (0, 1 / 3, 2 / 3), (0, 0.42, 0.58), (0, 0.12, 0.5)]
        )
        sat = 0.1 if achromatic else prompt_rng.uniform(0.55, 0.85)
        hues = [(base + o, sat) for o in offsets]
        spread = 0.03

    sat_scale = {"realistic": 1.0, "artistic": 1.25, "minimal": 0.6}[style]
    if word_set & _VIVID_WORDS:
        sat_scale *= 1.2
    if word_set & _MUTED_WORDS:
        sat_scale *= 0.8

    if word_set & _DARK_WORDS or any(lum < 0.3 for _h, lum, _s in achromatic):
        dark = True
    elif word_set & _LIGHT_WORDS or any(lum > 0.7 for _h, lum, _s in achromatic):
        dark = False
    elif style == "minimal":
        dark = prompt_rng.random() < 0.15
    else:
        dark = prompt_rng.random() < 0.5
    # A named light colour (pink, mint, ...) reads better on a light ground and vice versa.
    if chromatic and not (word_set & (_DARK_WORDS | _LIGHT_WORDS)) and not achromatic:
        mean_lum = sum(lum for _h, lum, _s in chromatic) / len(chromatic)
        dark = mean_lum < 0.45 if style != "minimal" else mean_lum < 0.25

    def jitter(h: float) -> float:
        return h + rng.uniform(-spread, spread)

    h0, s0 = hues[0]
    h1, s1 = hues[1 % len(hues)]
    if dark:
        bg_top = _rgb(jitter(h1), rng.uniform(0.2, 0.3), s1 * sat_scale * 0.8)
        bg_bottom = _rgb(jitter(h0), rng.uniform(0.07, 0.14), s0 * sat_scale * 0.8)
        shape_lum = (0.42, 0.68)
        ink = _rgb(h0, 0.06, s0 * 0.5)
        light = _rgb(h1, 0.9, s1 * 0.6)
    else:
        top_lum = 0.93 if style == "minimal" else rng.uniform(0.8, 0.9)
        bg_top = _rgb(jitter(h1), top_lum, s1 * sat_scale * 0.9)
        bg_bottom = _rgb(jitter(h0), top_lum - rng.uniform(0.06, 0.16), s0 * sat_scale)
        shape_lum = (0.3, 0.6) if style != "minimal" else (0.45, 0.7)
        ink = _rgb(h0, 0.12, s0 * 0.6)
        light = _rgb(h1, 0.97, s1 * 0.4)
    glow = _rgb(jitter(hues[-1][0]), 0.75 if dark else 0.97, min(1.0, hues[-1][1] * sat_scale))

    shapes = []
    for i in range(6):
        h, s = hues[i % len(hues)]
        shapes.append(_rgb(jitter(h), rng.uniform(*shape_lum), s * sat_scale * rng.uniform(0.85, 1)))
    rng.shuffle(shapes)

    colours = [bg_top, bg_bottom, glow, *shapes, ink, light]
    for ref in references:
        avg = _average_colour(ref.content)
        if avg is None:
            continue
        try:
            t = 0.35 * min(1.0, max(0.0, float(ref.weight)))
        except (TypeError, ValueError):
            continue
        colours = [_mix(c, avg, t) for c in colours]
    bg_top, bg_bottom, glow, *shapes, ink, light = colours
    return _Palette(bg_top, bg_bottom, glow, tuple(shapes), ink, light, dark)


def _pick_motifs(words: list[str], style: str, dark: bool, rng: random.Random) -> list[str]:
    wanted = list(dict.fromkeys(_MOTIF_WORDS[w] for w in words if w in _MOTIF_WORDS))
    if style == "artistic" and "brush" not in wanted:
        wanted.append("brush")
    count = {"realistic": 3, "artistic": 4, "minimal": 2}[style]
    chosen: list[str] = []
    for motif in wanted:
        if len(chosen) < count and _fits(motif, chosen, style):
            chosen.append(motif)
    pool = ["sun", "ridges", "waves", "stripes", "circles", "blocks", "polygons", "stars"]
    if style != "minimal":
        pool += ["flowers", "trees"]
    if not dark:
        pool.remove("stars")  # specks on a light sky look like dust
    rng.shuffle(pool)
    asked_scene = any(m in _SCENE_MOTIFS for m in chosen)
    for motif in pool:
        if asked_scene and motif in _SCENE_MOTIFS:
            continue  # the prompt already set the scene
        if len(chosen) < count and motif not in chosen and _fits(motif, chosen, style):
            chosen.append(motif)
    order = {m: i for i, m in enumerate(_BACK_MOTIFS + _MID_MOTIFS + _FRONT_MOTIFS)}
    return sorted(chosen, key=order.__getitem__)


def _fits(motif: str, chosen: list[str], style: str) -> bool:
    """Keeps a composition coherent: one or two scenery layers, no floating shapes in a
    realistic landscape, one subject and one accent in a minimal one."""
    scenes = [m for m in chosen if m in _SCENE_MOTIFS]
    if style == "minimal":
        group = _MINIMAL_SUBJECTS if motif in _MINIMAL_SUBJECTS else _MINIMAL_ACCENTS
        return not any(m in group for m in chosen)
    if motif in _SCENE_MOTIFS and len(scenes) >= 2:
        return False
    if style == "realistic":
        patterns = [m for m in chosen if m in _PATTERN_MOTIFS]
        if motif in _PATTERN_MOTIFS and scenes:
            return False
        if motif in _SCENE_MOTIFS and patterns:
            return False
    return True


# drawing helpers


def _gradient_mask(size: tuple[int, int], angle: float) -> Image.Image:
    """An 'L' mask that runs from 0 to 255 across the picture along `angle` degrees."""
    base = Image.linear_gradient("L").resize((362, 362), Image.Resampling.BILINEAR)
    rotated = base.rotate(angle, resample=Image.Resampling.BILINEAR)
    core = ImageOps.autocontrast(rotated.crop((90, 90, 272, 272)))
    return core.resize(size, Image.Resampling.BILINEAR)


def _radial_mask(size: tuple[int, int], strength: int = 255) -> Image.Image:
    """An 'L' mask, `strength` at the centre fading to 0 at the rim of the ellipse."""
    mask = ImageOps.invert(Image.radial_gradient("L"))
    mask = mask.point(lambda v: (v * v // 255) * strength // 255)
    return mask.resize(size, Image.Resampling.BILINEAR)


def _background(size: tuple[int, int], palette: _Palette, rng: random.Random) -> Image.Image:
    # Smooth by nature, so it is painted at a quarter of the size and scaled up.
    w, h = max(1, size[0] // 4), max(1, size[1] // 4)
    angle = rng.uniform(-40, 40) + rng.choice((0, 0, 180))
    mask = _gradient_mask((w, h), angle)
    top = Image.new("RGB", (w, h), palette.bg_top)
    image = Image.composite(Image.new("RGB", (w, h), palette.bg_bottom), top, mask)
    for _ in range(rng.randint(1, 2)):
        gw = max(1, int(w * rng.uniform(0.8, 1.6)))
        gh = max(1, int(gw * rng.uniform(0.7, 1.2)) if w >= h else int(h * rng.uniform(0.8, 1.4)))
        x = int(w * rng.uniform(-0.3, 0.7))
        y = int(h * rng.uniform(-0.4, 0.5))
        glow = _radial_mask((gw, gh), rng.randint(70, 150))
        image.paste(palette.glow, (x, y, x + gw, y + gh), glow)
    return image.resize(size, Image.Resampling.BICUBIC)


def _vignette(image: Image.Image, palette: _Palette, amount: int) -> Image.Image:
    mask = ImageOps.invert(_radial_mask(image.size, 255)).point(lambda v: v * amount // 255)
    return Image.composite(Image.new("RGB", image.size, palette.ink), image, mask)


def _render_design(
    size: tuple[int, int], palette: _Palette, motifs: list[str], style: str, rng: random.Random
) -> Image.Image:
    if style == "realistic":
        # Draw at half size, soften, and scale up: smooth, photographic-looking blends.
        work = (max(1, size[0] // 2), max(1, size[1] // 2))
        image = _background(work, palette, rng)
        _draw_motifs(image, palette, motifs, style, rng)
        image = image.filter(ImageFilter.GaussianBlur(max(1.0, min(work) * 0.003)))
        image = _vignette(image, palette, 90)
        return image.resize(size, Image.Resampling.BILINEAR)
    image = _background(size, palette, rng)
    _draw_motifs(image, palette, motifs, style, rng)
    # ImageDraw does not antialias; a hair of blur hides the stair-steps.
    return image.filter(ImageFilter.BoxBlur(1))


def _render_edit(
    source: Image.Image,
    size: tuple[int, int],
    palette: _Palette,
    motifs: list[str],
    style: str,
    rng: random.Random,
    strength: float,
) -> Image.Image:
    base = ImageOps.fit(source, size, Image.Resampling.BICUBIC)
    grey = ImageOps.grayscale(base)
    if style == "artistic":
        grey = ImageOps.posterize(ImageOps.autocontrast(grey, cutoff=2), 2)
        styled = ImageOps.colorize(grey, palette.ink, palette.light, mid=palette.shapes[0])
    elif style == "minimal":
        styled = ImageOps.colorize(ImageOps.autocontrast(grey), palette.ink, palette.light, mid=palette.bg_top)
        styled = Image.blend(styled, Image.new("RGB", size, palette.light), 0.35)
    else:
        duo = ImageOps.colorize(grey, palette.bg_bottom, palette.light, mid=palette.shapes[0])
        styled = Image.blend(base, duo, 0.7)
    result = Image.blend(base, styled, strength)
    decorated = result.copy()
    # scenery would hide the picture; keep the lighter motifs, at partial opacity
    edit_motifs = [m for m in motifs if m not in _SCENE_MOTIFS] or ["circles"]
    _draw_motifs(decorated, palette, edit_motifs, style, rng)
    return Image.blend(result, decorated, 0.5 * strength)

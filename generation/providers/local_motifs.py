"""The motif drawing routines of the local provider (see ``local_art.py``).

They live apart from ``local_art.py`` so that both modules stay a short read: that one decides
the parameters, the palette, the background and the overall rendering; this one holds the canvas
and the routine that paints each motif ("sun", "waves", "blocks", ...) onto it, plus the small
palette type and colour helper both modules share. Any change here changes the bytes of the PNGs
the provider returns.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class _Palette:
    bg_top: RGB
    bg_bottom: RGB
    glow: RGB
    shapes: tuple[RGB, ...]
    ink: RGB
    light: RGB
    dark_mode: bool


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        round(a[0] + (b[0] - a[0]) * t),
        round(a[1] + (b[1] - a[1]) * t),
        round(a[2] + (b[2] - a[2]) * t),
    )


# -- motifs ------------------------------------------------------------------------------------


def _ellipse_points(cx: float, cy: float, rx: float, ry: float, angle: float, n: int = 28) -> list[tuple[float, float]]:
    """The outline of an ellipse turned by `angle` radians (ImageDraw cannot rotate one)."""
    ca, sa = math.cos(angle), math.sin(angle)
    points = []
    for i in range(n):
        t = 2 * math.pi * i / n
        x, y = rx * math.cos(t), ry * math.sin(t)
        points.append((cx + x * ca - y * sa, cy + x * sa + y * ca))
    return points


class _Canvas:
    def __init__(self, image: Image.Image, palette: _Palette, style: str, rng: random.Random):
        self.image = image
        self.draw = ImageDraw.Draw(image, "RGBA")
        self.w, self.h = image.size
        self.u = min(self.w, self.h)
        self.palette = palette
        self.style = style
        self.rng = rng

    def colour(self, alpha: int | None = None) -> tuple[int, int, int, int]:
        r, g, b = self.rng.choice(self.palette.shapes)
        if alpha is None:
            alpha = {
                "realistic": self.rng.randint(90, 190),
                "artistic": self.rng.randint(225, 255),
                "minimal": 255,
            }[self.style]
        return r, g, b, alpha

    def outline(self) -> dict[str, Any]:
        """Extra drawing arguments: artistic shapes get a bold ink outline."""
        if self.style == "artistic":
            return {"outline": (*self.palette.ink, 255), "width": max(2, round(self.u * 0.008))}
        return {}

    def px(self, x: float, y: float) -> tuple[float, float]:
        return x * self.w, y * self.h


def _motif_sun(c: _Canvas) -> None:
    rng = c.rng
    cx, cy = c.px(rng.uniform(0.25, 0.75), rng.uniform(0.2, 0.5))
    r = c.u * rng.uniform(0.14, 0.24)
    base = c.colour(255)
    rings = 1 if c.style == "minimal" else rng.randint(3, 5)
    for i in range(rings, 0, -1):
        rr = r * (1 + 0.22 * (i - 1))
        alpha = 255 if i == 1 else int(60 / i)
        c.draw.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), fill=(*base[:3], alpha))
    if c.style == "artistic":
        extra = c.outline()
        c.draw.ellipse((cx - r, cy - r, cx + r, cy + r), **extra)


def _motif_circles(c: _Canvas) -> None:
    rng = c.rng
    n = {"realistic": rng.randint(6, 10), "artistic": rng.randint(4, 7), "minimal": 2}[c.style]
    extra = c.outline()
    for i in range(n):
        if c.style == "minimal":
            cx, cy = c.px(rng.choice((1 / 3, 2 / 3)), rng.choice((0.36, 0.62)))
            r = c.u * (0.16 if i == 0 else 0.06)
        else:
            cx, cy = c.px(rng.uniform(0.08, 0.92), rng.uniform(0.08, 0.92))
            r = c.u * rng.uniform(0.05, 0.26)
        box = (cx - r, cy - r, cx + r, cy + r)
        if rng.random() < 0.25:
            width = max(2, round(c.u * rng.uniform(0.006, 0.02)))
            c.draw.ellipse(box, outline=c.colour(), width=width)
        else:
            c.draw.ellipse(box, fill=c.colour(), **extra)


def _motif_ridges(c: _Canvas) -> None:
    rng = c.rng
    layers = 2 if c.style == "minimal" else rng.randint(3, 5)
    shade_from = c.palette.light if c.palette.dark_mode else c.palette.bg_top
    for layer in range(layers):
        base_y = 0.5 + 0.4 * (layer + 1) / (layers + 1) - 0.1
        amp = rng.uniform(0.06, 0.16) * (1.2 - 0.5 * layer / layers)
        n = rng.randint(5, 9) if c.style != "minimal" else 3
        xs = [i / n for i in range(n + 1)]
        pts = [c.px(x, base_y - amp * rng.uniform(0.2, 1.0) * (1 if i % 2 else 0.4)) for i, x in enumerate(xs)]
        if c.style == "realistic":
            # smooth the ridge line a little
            pts = (
                [pts[0]]
                + [((a[0] + b[0]) / 2, (a[1] + b[1]) / 2) for a, b in zip(pts, pts[1:], strict=False)]
                + [pts[-1]]
            )
        pts += [(c.w, c.h), (0, c.h)]
        # far layers fade into the sky, near ones are deep and strong
        colour = c.colour(255)[:3]
        near = (layer + 1) / layers
        colour = _mix(shade_from, _mix(colour, c.palette.ink, 0.35 * near), 0.35 + 0.65 * near)
        alpha = 255 if c.style != "realistic" else 230
        c.draw.polygon(pts, fill=(*colour, alpha), **c.outline())


def _motif_waves(c: _Canvas) -> None:
    rng = c.rng
    bands = 2 if c.style == "minimal" else rng.randint(3, 6)
    top, depth = (0.7, 0.2) if c.style == "minimal" else (0.45, 0.5)
    for band in range(bands):
        y0 = top + depth * band / bands
        amp = rng.uniform(0.015, 0.05) * (0.5 if c.style == "minimal" else 1)
        freq = rng.uniform(1.0, 3.0)
        phase = rng.uniform(0, 2 * math.pi)
        pts = [c.px(i / 48, y0 + amp * math.sin(phase + freq * 2 * math.pi * i / 48)) for i in range(49)]
        crest = pts[:]
        pts += [(c.w, c.h), (0, c.h)]
        if c.style == "minimal":
            colour = _mix(c.colour(255)[:3], c.palette.bg_bottom, 0.55 - 0.2 * band)
            c.draw.polygon(pts, fill=(*colour, 255))
        elif c.style == "artistic":
            c.draw.polygon(pts, fill=c.colour(255))
            c.draw.line(crest, fill=(*c.palette.ink, 255), width=max(2, round(c.u * 0.008)))
        else:
            c.draw.polygon(pts, fill=c.colour(150))


def _motif_blocks(c: _Canvas) -> None:
    rng = c.rng
    extra = c.outline()
    if c.style == "minimal":
        # a small skyline standing on a thin baseline, with the sky left empty
        count = rng.randint(3, 5)
        left = rng.choice((0.14, 0.3, 0.46))
        ground = rng.uniform(0.7, 0.8)
        x = left
        for _ in range(count):
            bw = rng.uniform(0.05, 0.09)
            x0, y0 = c.px(x, ground - rng.uniform(0.12, 0.34))
            x1, y1 = c.px(x + bw, ground)
            c.draw.rounded_rectangle((x0, y0, x1, y1), radius=c.u * 0.008, fill=c.colour())
            x += bw + 0.012
        line = max(1, round(c.u * 0.004))
        c.draw.line([c.px(0.08, ground), c.px(0.92, ground)], fill=(*c.palette.ink, 220), width=line)
        return
    x = -0.02
    ground = rng.uniform(0.82, 0.95)
    while x < 1.0:
        bw = rng.uniform(0.06, 0.14)
        top = ground - rng.uniform(0.15, 0.55)
        x0, y0 = c.px(x, top)
        x1, y1 = c.px(x + bw, 1.01)
        colour = c.colour(255 if c.style == "artistic" else rng.randint(170, 235))
        c.draw.rounded_rectangle((x0, y0, x1, y1), radius=c.u * 0.012, fill=colour, **extra)
        # windows
        win = c.palette.light if c.palette.dark_mode else c.palette.ink
        step = c.u * 0.035
        size = c.u * 0.012
        if rng.random() < 0.7:
            yy = y0 + step * 0.7
            while yy < c.h * ground - step:
                xx = x0 + step * 0.5
                while xx < x1 - step * 0.5:
                    if rng.random() < 0.6:
                        c.draw.rectangle((xx, yy, xx + size, yy + size), fill=(*win, 170))
                    xx += step * 0.8
                yy += step
        x += bw + rng.uniform(-0.01, 0.02)


def _motif_stripes(c: _Canvas) -> None:
    rng = c.rng
    if c.style == "minimal":
        # a small cluster of parallel bars in one third of the picture
        bars = rng.randint(3, 5)
        vertical = rng.random() < 0.5
        ox, oy = rng.choice((0.12, 0.7)), rng.choice((0.14, 0.66))
        thick = c.u * 0.014
        for i in range(bars):
            length = rng.uniform(0.1, 0.2)
            if vertical:
                x0, y0 = c.px(ox + i * 0.03, oy)
                box = (x0, y0, x0 + thick, y0 + length * c.h)
            else:
                x0, y0 = c.px(ox, oy + i * 0.03)
                box = (x0, y0, x0 + length * c.w, y0 + thick)
            c.draw.rounded_rectangle(box, radius=thick / 2, fill=c.colour())
        return
    slant = rng.uniform(-0.4, 0.4)
    n = rng.randint(4, 8)
    start = rng.uniform(0.05, 0.4)
    width = rng.uniform(0.03, 0.08)
    gap = rng.uniform(0.02, 0.07)
    for i in range(n):
        x = start + i * (width + gap)
        pts = [c.px(x, -0.05), c.px(x + width, -0.05), c.px(x + width + slant, 1.05), c.px(x + slant, 1.05)]
        c.draw.polygon(pts, fill=c.colour())


def _motif_polygons(c: _Canvas) -> None:
    rng = c.rng
    n = {"realistic": rng.randint(6, 12), "artistic": rng.randint(5, 9), "minimal": 1}[c.style]
    extra = c.outline()
    for _ in range(n):
        if c.style == "minimal":
            cx, cy, r = c.w * rng.choice((0.36, 0.62)), c.h * 0.45, c.u * 0.2
            ring = r * 1.25
            c.draw.ellipse(
                (cx - ring, cy - ring, cx + ring, cy + ring),
                outline=(*c.palette.ink, 200),
                width=max(1, round(c.u * 0.004)),
            )
        else:
            cx, cy = c.px(rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95))
            r = c.u * rng.uniform(0.04, 0.18)
        sides = rng.choice((3, 3, 4, 5, 6))
        c.draw.regular_polygon((cx, cy, r), sides, rotation=rng.uniform(0, 360), fill=c.colour(), **extra)


def _motif_stars(c: _Canvas) -> None:
    rng = c.rng
    n = {"realistic": rng.randint(60, 120), "artistic": rng.randint(30, 60), "minimal": 12}[c.style]
    top = 0.75 if c.style != "minimal" else 0.5
    for _ in range(n):
        x, y = c.px(rng.random(), rng.random() * top)
        r = c.u * rng.uniform(0.0015, 0.006) * (2.5 if c.style == "artistic" else 1)
        if not c.palette.dark_mode:  # confetti rather than stars on a light ground
            colour = c.colour(255)
            r *= 1.8
        elif c.style == "artistic" and rng.random() < 0.5:
            colour = c.colour(255)
        else:
            colour = (*c.palette.light, rng.randint(120, 255))
        c.draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)


def _motif_brush(c: _Canvas) -> None:
    rng = c.rng
    strokes = rng.randint(5, 9) if c.style == "artistic" else rng.randint(2, 4)
    for _ in range(strokes):
        x0, y0 = rng.uniform(-0.1, 0.7), rng.uniform(0.05, 0.95)
        length = rng.uniform(0.35, 0.8)
        angle = rng.uniform(-0.6, 0.6)
        bend = rng.uniform(-0.12, 0.12)
        thick = c.u * rng.uniform(0.025, 0.07)
        base = c.colour(255)
        dx, dy = math.cos(angle), math.sin(angle)
        nx, ny = -dy, dx
        bristles = 7
        for b in range(bristles):
            off = (b / (bristles - 1) - 0.5) * thick
            shade = _mix(base[:3], c.palette.ink if b % 3 == 0 else c.palette.light, 0.12)
            pts = []
            for i in range(17):
                t = i / 16
                bow = bend * math.sin(math.pi * t)
                x = (x0 + dx * length * t + nx * bow) * c.w + nx * off
                y = (y0 + dy * length * t + ny * bow) * c.h + ny * off
                pts.append((x, y))
            cut = rng.randint(12, 17)  # bristles end unevenly
            c.draw.line(
                pts[:cut],
                fill=(*shade, 255),  # opaque, so the segment joints do not show
                width=max(2, round(thick / bristles * 1.8)),
            )


def _motif_flowers(c: _Canvas) -> None:
    rng = c.rng
    n = {"realistic": rng.randint(3, 6), "artistic": rng.randint(3, 5), "minimal": 1}[c.style]
    extra = c.outline()
    for _ in range(n):
        if c.style == "minimal":
            cx, cy = c.px(rng.choice((1 / 3, 2 / 3)), rng.uniform(0.3, 0.4))
            r = c.u * 0.12
            stem = max(2, round(c.u * 0.006))
            c.draw.line([(cx, cy), c.px(cx / c.w + 0.03, 0.88)], fill=(*c.palette.ink, 220), width=stem)
        else:
            cx, cy = c.px(rng.uniform(0.12, 0.88), rng.uniform(0.15, 0.85))
            r = c.u * rng.uniform(0.06, 0.14)
        petals = rng.randint(5, 9)
        colour = c.colour()
        turn = rng.uniform(0, math.pi)
        for p in range(petals):
            a = turn + 2 * math.pi * p / petals
            px, py = cx + math.cos(a) * r * 0.6, cy + math.sin(a) * r * 0.6
            c.draw.polygon(_ellipse_points(px, py, r * 0.6, r * 0.26, a), fill=colour, **extra)
        core = r * 0.25
        c.draw.ellipse((cx - core, cy - core, cx + core, cy + core), fill=(*c.palette.glow, 255), **extra)


def _motif_trees(c: _Canvas) -> None:
    rng = c.rng
    ground = rng.uniform(0.8, 0.95)
    n = rng.randint(5, 11)
    extra = c.outline()
    for i in range(n):
        x = (i + rng.uniform(0.1, 0.9)) / n
        height = rng.uniform(0.2, 0.5)
        half = rng.uniform(0.04, 0.08)
        colour = _mix(c.colour(255)[:3], c.palette.ink, rng.uniform(0.2, 0.5))
        alpha = 255 if c.style != "realistic" else rng.randint(200, 245)
        for tier in range(3):
            top = ground - height * (1 - tier * 0.22)
            bottom = ground - height * (0.45 - tier * 0.2)
            w = half * (0.7 + 0.3 * tier)
            c.draw.polygon([c.px(x, top), c.px(x + w, bottom), c.px(x - w, bottom)], fill=(*colour, alpha), **extra)
    c.draw.rectangle((0, c.h * ground, c.w, c.h), fill=(*_mix(c.palette.ink, c.palette.bg_bottom, 0.3), 255))


_MOTIFS = {
    "sun": _motif_sun,
    "circles": _motif_circles,
    "ridges": _motif_ridges,
    "waves": _motif_waves,
    "blocks": _motif_blocks,
    "stripes": _motif_stripes,
    "polygons": _motif_polygons,
    "stars": _motif_stars,
    "brush": _motif_brush,
    "flowers": _motif_flowers,
    "trees": _motif_trees,
}


def _draw_motifs(image: Image.Image, palette: _Palette, motifs: list[str], style: str, rng: random.Random) -> None:
    canvas = _Canvas(image, palette, style, rng)
    for motif in motifs:
        _MOTIFS[motif](canvas)

"""Camera, drawing canvas and per-image appearance ("look") of a SynthCity scene.

The canvas draws every polygon once, into a single 8-bit "slot" image; a slot is a
(trainId, colour, texture) triple, so the label and the flat colour image come from the same
rasterisation and can never disagree. Shadows go to a separate shade image (128 = unshaded).
"""

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ann.data.labels import IGNORE_INDEX

from . import textures

RGB = tuple[int, int, int]

Z_NEAR = 1.0  # metres; the ground nearer than this is below the image for every camera drawn
Z_FAR = 400.0


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at (0, height_m, 0) looking along +z; the ground is y = 0, x points right."""

    width: int
    height: int
    focal: float  # pixels
    horizon: float  # image row of the horizon
    height_m: float

    def uv(self, x: float, y: float, z: float) -> tuple[float, float]:
        return (self.width / 2 + self.focal * x / z, self.horizon - self.focal * (y - self.height_m) / z)

    def points(self, xyz: list[tuple[float, float, float]]) -> list[tuple[float, float]]:
        return [self.uv(x, y, z) for x, y, z in xyz]

    def scale(self, z: float) -> float:
        """Pixels per metre at depth z."""
        return self.focal / z


def scale_rgb(rgb: RGB, k: float) -> RGB:
    return tuple(int(min(255, max(0, round(c * k)))) for c in rgb)


def hsv(h: float, s: float, v: float) -> RGB:
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


class Canvas:
    """Draws polygons into the slot image; at most 255 distinct slots per image."""

    def __init__(self, size: tuple[int, int]):
        self.size = size
        self.slots = Image.new("L", size, 0)
        self.shade = Image.new("L", size, 128)
        self._draw = ImageDraw.Draw(self.slots)
        self.shadow = ImageDraw.Draw(self.shade)
        self.table: list[tuple[int, RGB, int]] = [(IGNORE_INDEX, (0, 0, 0), 0)]
        self._index: dict[tuple[int, RGB, int], int] = {}
        self._first: dict[int, int] = {}

    def slot(self, cls: int, rgb: RGB, tex: int) -> int:
        key = (cls, rgb, tex)
        if key not in self._index:
            # Nearly full: reuse a slot of the same class (wrong shade, right label); the last
            # 20 slots stay free so that every class can still get its first one.
            if len(self.table) >= 236 and cls in self._first:
                return self._first[cls]
            self._index[key] = len(self.table)
            self._first.setdefault(cls, len(self.table))
            self.table.append(key)
        return self._index[key]

    def poly(self, pts: list[tuple[float, float]], cls: int, rgb: RGB, tex: int) -> None:
        self._draw.polygon(pts, fill=self.slot(cls, rgb, tex))

    def ellipse(self, box: tuple[float, float, float, float], cls: int, rgb: RGB, tex: int) -> None:
        x0, y0, x1, y1 = box
        if x1 - x0 >= 1 and y1 - y0 >= 1:
            self._draw.ellipse((x0, y0, x1, y1), fill=self.slot(cls, rgb, tex))

    def ring(self, box, width: float, cls: int, rgb: RGB, tex: int) -> None:
        x0, y0, x1, y1 = box
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            slot = self.slot(cls, rgb, tex)
            self._draw.ellipse(box, outline=slot, width=max(1, round(width)))

    def line(self, pts, width: float, cls: int, rgb: RGB, tex: int) -> None:
        self._draw.line(pts, fill=self.slot(cls, rgb, tex), width=max(1, round(width)))

    def rect(self, box: tuple[float, float, float, float], cls: int, rgb: RGB, tex: int) -> None:
        x0, y0, x1, y1 = box
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], cls, rgb, tex)


@dataclass
class Look:
    """Appearance drawn once per image. Each pair of context classes takes its colours and
    texture from one shared entry here (docs/synthcity.md, "Context pairs")."""

    ground: RGB  # road AND sidewalk
    ground_tex: int
    facades: list[RGB]  # building AND wall
    facade_tex: int
    greens: list[RGB]  # vegetation AND terrain
    green_tex: int
    paints: list[RGB]  # truck AND bus AND train
    glass: list[RGB]  # windows of buildings and vehicles
    clothes: list[RGB]  # person AND rider
    skins: list[RGB]
    sky_top: RGB
    sky_low: RGB
    cloud: RGB
    sun: int  # -1: sun on the left, +1: on the right, 0: overcast
    shadow: float  # shade multiplier in cast shadows


def sample_look(rng: np.random.Generator) -> Look:
    u = rng.uniform
    ground_v = u(0.3, 0.65)
    overcast = u() < 0.35
    sky_v = u(0.75, 0.95)
    return Look(
        ground=hsv(u(0.0, 1.0), u(0.0, 0.12), ground_v),
        ground_tex=textures.variant("ground", rng),
        facades=[hsv(u(0.02, 0.15), u(0.05, 0.45), u(0.35, 0.9)) for _ in range(3)],
        facade_tex=textures.variant("facade", rng),
        greens=[hsv(u(0.17, 0.30), u(0.35, 0.75), u(0.25, 0.6)) for _ in range(2)],
        green_tex=textures.variant("foliage", rng),
        paints=[hsv(u(), u(0.0, 0.8), u(0.3, 0.95)) for _ in range(3)],
        glass=[hsv(u(0.5, 0.65), u(0.05, 0.35), u(0.1, 0.45)) for _ in range(3)],
        clothes=[hsv(u(), u(0.0, 0.8), u(0.1, 0.85)) for _ in range(6)],
        skins=[hsv(u(0.03, 0.09), u(0.25, 0.6), u(0.35, 0.95)) for _ in range(2)],
        sky_top=hsv(u(0.55, 0.63), u(0.05, 0.2) if overcast else u(0.35, 0.7), sky_v * 0.85),
        sky_low=hsv(u(0.55, 0.62), u(0.02, 0.15) if overcast else u(0.1, 0.35), sky_v),
        cloud=hsv(0.6, u(0.0, 0.06), u(0.85, 1.0)),
        sun=0 if overcast else int(rng.choice([-1, 1])),
        shadow=u(0.45, 0.7),
    )


def pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]

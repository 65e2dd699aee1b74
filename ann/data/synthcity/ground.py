"""Sky and ground plane of a SynthCity street: road, kerbs, sidewalks, grass, markings, shadows.

Road and sidewalk share one colour and texture per image (Look.ground): only the kerb, the
markings and where a pixel lies relative to the street tell them apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ann.data.labels import IGNORE_INDEX

from . import textures
from .canvas import Z_FAR, Z_NEAR, Camera, Canvas, Look, hsv, pick, scale_rgb

if TYPE_CHECKING:
    from .scene import Street

ROAD, SIDEWALK, TERRAIN, SKY = 0, 1, 9, 10
FLAT = textures.texture_id("flat")
METAL = textures.texture_id("metal")
PAINT_WHITE = (222, 222, 215)


def quad(cam: Camera, x0: float, x1: float, z0: float, z1: float, y: float = 0.0):
    return cam.points([(x0, y, z0), (x1, y, z0), (x1, y, z1), (x0, y, z1)])


def draw_sky(canvas: Canvas, cam: Camera, look: Look, rng: np.random.Generator) -> None:
    """A vertical gradient in bands (one slot each), then clusters of cloud ellipses."""
    w, h = canvas.size
    bands = 16
    for i in range(bands):
        t = i / (bands - 1)
        rgb = tuple(int(round(a + (b - a) * t)) for a, b in zip(look.sky_top, look.sky_low, strict=True))
        y0 = cam.horizon * i / bands
        y1 = h if i == bands - 1 else cam.horizon * (i + 1) / bands
        canvas.rect((0, y0, w, y1), SKY, rgb, FLAT)
    for _ in range(int(rng.integers(0, 7))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, cam.horizon * 0.7)
        rx = rng.uniform(0.03, 0.12) * w
        for _ in range(int(rng.integers(3, 7))):
            dx, dy = rng.uniform(-rx, rx), rng.uniform(-0.3, 0.3) * rx
            r = rx * rng.uniform(0.3, 0.6)
            rgb = scale_rgb(look.cloud, pick(rng, [0.92, 1.0]))
            canvas.ellipse((cx + dx - r, cy + dy - r * 0.5, cx + dx + r, cy + dy + r * 0.5), SKY, rgb, FLAT)


def draw_ground(canvas: Canvas, cam: Camera, street: Street, look: Look, rng: np.random.Generator) -> None:
    w, h = canvas.size
    green = look.greens[0]
    canvas.rect((0, cam.horizon - 1, w, h), TERRAIN, green, look.green_tex)
    canvas.poly(quad(cam, street.left, street.right, Z_NEAR, Z_FAR), ROAD, look.ground, look.ground_tex)
    for side in (-1, 1):
        for seg in street.segments[side]:
            if seg.kind == "park":
                bx = street.building_x(side)
                canvas.poly(
                    quad(cam, bx, side * 150.0, seg.z0, seg.z1, street.curb), TERRAIN, green, look.green_tex
                )
        for z0, z1 in walk_ranges(street):
            _draw_walk(canvas, cam, street, look, side, z0, z1)
    if street.cross:
        _draw_cross(canvas, cam, street, look)
    _draw_patches(canvas, cam, street, look, rng)
    _draw_markings(canvas, cam, street, rng)
    _draw_shadows(canvas, cam, street, look, rng)


def walk_ranges(street: Street) -> list[tuple[float, float]]:
    if street.cross is None:
        return [(Z_NEAR, Z_FAR)]
    zc, wc, _ = street.cross
    return [(Z_NEAR, zc), (zc + wc, Z_FAR)]


def _draw_walk(canvas, cam, street, look, side, z0, z1) -> None:
    """Kerb face, grass verge and sidewalk of one side between depths z0 and z1."""
    edge, curb = street.edge(side), street.curb
    inner = edge + side * street.verge[side]
    canvas.poly(
        quad(cam, inner, street.building_x(side), z0, z1, curb), SIDEWALK, look.ground, look.ground_tex
    )
    if street.verge[side] > 0:
        canvas.poly(quad(cam, edge, inner, z0, z1, curb), TERRAIN, look.greens[-1], look.green_tex)
    face = cam.points([(edge, 0, z0), (edge, 0, z1), (edge, curb, z1), (edge, curb, z0)])
    canvas.poly(face, SIDEWALK, scale_rgb(look.ground, 1.15), look.ground_tex)


def _draw_cross(canvas, cam, street, look) -> None:
    """The cross street: road to both sides, its sidewalks, and the kerb facing the camera."""
    zc, wc, walk = street.cross
    canvas.poly(quad(cam, -300.0, 300.0, zc, zc + wc), ROAD, look.ground, look.ground_tex)
    for side in (-1, 1):
        edge, curb = street.edge(side), street.curb
        canvas.poly(
            quad(cam, street.building_x(side), side * 300.0, zc - walk, zc, curb),
            SIDEWALK,
            look.ground,
            look.ground_tex,
        )
        z2 = zc + wc
        canvas.poly(
            quad(cam, edge, side * 300.0, z2, z2 + walk, curb), SIDEWALK, look.ground, look.ground_tex
        )
        face = cam.points([(edge, 0, z2), (side * 300.0, 0, z2), (side * 300.0, curb, z2), (edge, curb, z2)])
        canvas.poly(face, SIDEWALK, scale_rgb(look.ground, 1.15), look.ground_tex)


def _draw_patches(canvas, cam, street, look, rng) -> None:
    """Repairs and stains: the same distribution on road and on sidewalk."""
    for _ in range(int(rng.integers(0, 6))):
        side = int(rng.choice([-1, 1]))
        on_road = rng.uniform() < 0.5
        if on_road:
            x0 = rng.uniform(street.left, street.right - 1.0)
            x1 = min(street.right, x0 + rng.uniform(0.5, 3.0))
            cls, y = ROAD, 0.0
        else:
            inner = street.edge(side) + side * street.verge[side]
            x0, x1 = sorted((inner, inner + side * rng.uniform(0.5, street.walk[side])))
            cls, y = SIDEWALK, street.curb
        z0 = rng.uniform(2.0, 40.0)
        rgb = scale_rgb(look.ground, rng.uniform(0.75, 1.2))
        canvas.poly(quad(cam, x0, x1, z0, z0 + rng.uniform(1.0, 8.0), y), cls, rgb, look.ground_tex)


def _dashes(canvas, cam, x, width, z0, z1, dash, period, gap, colour) -> None:
    z = z0
    while z < z1:
        if not (gap and gap[0] - 1 < z < gap[1]):
            canvas.poly(quad(cam, x - width / 2, x + width / 2, z, z + dash), ROAD, colour, FLAT)
        z += period


def _draw_markings(canvas, cam, street, rng) -> None:
    colour = scale_rgb(PAINT_WHITE, rng.uniform(0.75, 1.05))
    gap = (street.cross[0], street.cross[0] + street.cross[1]) if street.cross else None
    far = min(street.far(), 150.0)
    dash, period = rng.uniform(2.0, 4.0), rng.uniform(6.0, 12.0)
    for (xa, da), (xb, db) in zip(street.lanes, street.lanes[1:], strict=False):
        x = (xa + xb) / 2
        if da != db:  # solid line between the directions
            for z0, z1 in [(Z_NEAR, gap[0] - 1), (gap[1], far)] if gap else [(Z_NEAR, far)]:
                canvas.poly(quad(cam, x - 0.08, x + 0.08, z0, z1), ROAD, colour, FLAT)
        else:
            _dashes(canvas, cam, x, 0.14, Z_NEAR + rng.uniform(0, period), far, dash, period, gap, colour)
    if street.zebra is not None:
        z0 = street.zebra
        x = street.left + 0.3
        while x < street.right - 0.5:
            canvas.poly(quad(cam, x, x + 0.5, z0, z0 + 3.0), ROAD, colour, FLAT)
            x += 1.0
        canvas.poly(quad(cam, 0.0, street.right, z0 - 1.5, z0 - 1.2), ROAD, colour, FLAT)
    if street.tram is not None:
        steel = hsv(0.6, 0.05, rng.uniform(0.3, 0.6))
        for dx in (-0.72, 0.72):
            x = street.tram + dx
            canvas.poly(quad(cam, x - 0.05, x + 0.05, Z_NEAR, street.far()), ROAD, steel, METAL)


def _draw_shadows(canvas, cam, street, look, rng) -> None:
    """Cast shadows of the sun-side buildings and walls onto the ground (shade image only)."""
    if look.sun == 0:
        return
    side = look.sun
    bx = street.building_x(side)
    value = int(round(128 * look.shadow))
    for seg in street.segments[side]:
        if seg.kind == "park":
            continue
        reach = rng.uniform(3.0, 14.0) if seg.kind == "building" else rng.uniform(0.5, 2.0)
        canvas.shadow.polygon(quad(cam, bx, bx - side * reach, seg.z0, seg.z1), fill=value)


def draw_hood(canvas: Canvas, cam: Camera, rng: np.random.Generator) -> None:
    """The ego car's bonnet along the bottom edge, void as in Cityscapes (label 255)."""
    w, h = canvas.size
    top = h * (1 - rng.uniform(0.04, 0.1))
    pts = [(0, h), (0, top + 0.04 * h), (w * 0.2, top), (w * 0.8, top), (w, top + 0.04 * h), (w, h)]
    rgb = pick(rng, [(20, 20, 22), (180, 180, 185), (90, 20, 20), (30, 40, 80)])
    canvas.poly(pts, IGNORE_INDEX, rgb, textures.texture_id("paint"))

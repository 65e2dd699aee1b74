"""Building-line structures: facades with windows and doors, walls, parks with hedges and fences.

Buildings and walls share the facade colours and texture of the image (Look.facades): a wall is
a low facade without windows in front of something else, so only its height, the absence of
windows and what is around it separate it from a building.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from . import props, textures
from .canvas import Z_NEAR, Camera, Canvas, Look, pick, scale_rgb

if TYPE_CHECKING:
    from .scene import Street

BUILDING, WALL, FENCE, VEGETATION = 2, 3, 4, 8
GLASS = textures.texture_id("glass")
METAL = textures.texture_id("metal")
Draw = Callable[[Canvas], None]


def _windows(look: Look, rng: np.random.Generator) -> dict:
    floor = rng.uniform(2.9, 3.6)
    spacing = rng.uniform(2.4, 4.5)
    return {
        "floor": floor,
        "spacing": spacing,
        "width": spacing * rng.uniform(0.35, 0.65),
        "height": floor * rng.uniform(0.35, 0.6),
        "glass": pick(rng, look.glass),
        "door": pick(rng, [(60, 40, 30), (35, 35, 38), (90, 70, 50)]),
        "shop": rng.uniform() < 0.4,
    }


def facade(
    canvas: Canvas, cam: Camera, to_xyz, along: tuple[float, float], height: float, rgb, look: Look, win: dict
) -> None:
    """A planar facade with a window grid. to_xyz(s, y) maps facade coordinates (s along the
    facade, y up) to world points, so the same code draws side facades and front facades."""
    s0, s1 = along
    corners = [to_xyz(s0, 0), to_xyz(s1, 0), to_xyz(s1, height), to_xyz(s0, height)]
    canvas.poly(cam.points(corners), BUILDING, rgb, look.facade_tex)
    cornice = [to_xyz(s0, height - 0.35), to_xyz(s1, height - 0.35), to_xyz(s1, height), to_xyz(s0, height)]
    canvas.poly(cam.points(cornice), BUILDING, scale_rgb(rgb, 0.8), look.facade_tex)
    sp, ww, wh, fl = win["spacing"], win["width"], win["height"], win["floor"]
    for s in np.arange(s0 + (sp - ww) / 2, s1 - ww, sp).tolist():
        (ua, _), (ub, _) = cam.uv(*to_xyz(s, 0)), cam.uv(*to_xyz(s + ww, 0))
        if abs(ub - ua) < 1.5:  # too far to be seen: a window would only be texture noise
            break
        if win["shop"] or (s - s0) % (3 * sp) < sp / 2:  # ground floor: doors or shop windows
            kind = win["glass"] if win["shop"] else win["door"]
            pts = [to_xyz(s, 0.1), to_xyz(s + ww, 0.1), to_xyz(s + ww, 2.3), to_xyz(s, 2.3)]
            canvas.poly(cam.points(pts), BUILDING, kind, GLASS)
        y = fl + (fl - wh) / 2
        while y + wh < height - 0.5:
            pts = [to_xyz(s, y), to_xyz(s + ww, y), to_xyz(s + ww, y + wh), to_xyz(s, y + wh)]
            canvas.poly(cam.points(pts), BUILDING, win["glass"], GLASS)
            y += fl


def _facade_light(look: Look, side: int) -> float:
    """Side facades face the street centre (-side): lit when the sun is on the other side."""
    if look.sun == 0:
        return 0.9
    return 1.05 if look.sun == -side else 0.55 + 0.4 * look.shadow


def _building(cam, side, x, seg, look, rng) -> Draw:
    height = rng.uniform(7.0, 28.0)
    rgb = scale_rgb(pick(rng, look.facades), _facade_light(look, side))
    front = scale_rgb(rgb, 0.9)
    win = _windows(look, rng)

    def draw(canvas: Canvas) -> None:
        # The face towards the camera shows where this building is taller than the nearer one.
        if seg.z0 > Z_NEAR + 0.5:
            facade(canvas, cam, lambda s, y: (x + side * s, y, seg.z0), (0.0, 12.0), height, front, look, win)
        facade(canvas, cam, lambda s, y: (x, y, s), (seg.z0, seg.z1), height, rgb, look, win)

    return draw


def _wall(cam, side, x, seg, look, rng) -> Draw:
    height = rng.uniform(1.0, 2.8)
    light = _facade_light(look, side)
    rgb = scale_rgb(pick(rng, look.facades), light)
    behind = _building(cam, side, x + side * rng.uniform(4.0, 12.0), seg, look, rng)
    if rng.uniform() < 0.5:
        behind = _trees(cam, side, x + side * 1.5, x + side * 12.0, seg, look, rng)

    def draw(canvas: Canvas) -> None:
        behind(canvas)
        top = scale_rgb(rgb, 0.8)
        for y0, y1, colour in ((0.0, height, rgb), (height - 0.15, height, top)):
            pts = [(x, y0, seg.z0), (x, y0, seg.z1), (x, y1, seg.z1), (x, y1, seg.z0)]
            canvas.poly(cam.points(pts), WALL, colour, look.facade_tex)
        end = [
            (x, 0, seg.z0),
            (x + side * 0.3, 0, seg.z0),
            (x + side * 0.3, height, seg.z0),
            (x, height, seg.z0),
        ]
        canvas.poly(cam.points(end), WALL, scale_rgb(rgb, 0.9), look.facade_tex)

    return draw


def _trees(cam, side, x0, x1, seg, look, rng) -> Draw:
    """A stand of trees between lateral positions x0 and x1, drawn far to near."""
    n = int(rng.integers(2, 3 + int((seg.z1 - seg.z0) / 6)))
    lo, hi = sorted((x0, x1))
    spots = sorted(((rng.uniform(seg.z0, seg.z1), rng.uniform(lo, hi)) for _ in range(n)), reverse=True)
    trees = [props.tree(cam, x, z, look, rng) for z, x in spots]

    def draw(canvas: Canvas) -> None:
        for tree in trees:
            tree(canvas)

    return draw


def _park(cam, side, x, seg, look, rng) -> Draw:
    line_x = side * rng.uniform(25.0, 60.0)
    line_h = rng.uniform(5.0, 12.0)
    trees = _trees(cam, side, x + side * 2.0, x + side * 20.0, seg, look, rng)
    hedge = rng.uniform(0.7, 1.4) if rng.uniform() < 0.4 else 0.0
    fence = props.fence(cam, x, seg.z0, seg.z1, look, rng) if rng.uniform() < 0.6 else None
    green = pick(rng, look.greens)

    def draw(canvas: Canvas) -> None:
        band = [(line_x, 0, seg.z0), (line_x, 0, seg.z1), (line_x, line_h, seg.z1), (line_x, line_h, seg.z0)]
        canvas.poly(cam.points(band), VEGETATION, scale_rgb(green, 0.8), look.green_tex)
        trees(canvas)
        if hedge:
            top = [
                (x, hedge, seg.z0),
                (x, hedge, seg.z1),
                (x + side, hedge, seg.z1),
                (x + side, hedge, seg.z0),
            ]
            canvas.poly(cam.points(top), VEGETATION, scale_rgb(green, 1.1), look.green_tex)
            face = [(x, 0, seg.z0), (x, 0, seg.z1), (x, hedge, seg.z1), (x, hedge, seg.z0)]
            canvas.poly(cam.points(face), VEGETATION, green, look.green_tex)
        elif fence:
            fence(canvas)

    return draw


def _front_row(cam, z, x0, x1, look, rng) -> list[tuple[float, Draw]]:
    """Front-facing buildings from x0 outwards to x1 at depth z (cross street, street end)."""
    items, x = [], x0
    step = 1.0 if x1 > x0 else -1.0
    while (x1 - x) * step > 0:
        width = rng.uniform(8.0, 25.0)
        rgb, win, height = pick(rng, look.facades), _windows(look, rng), rng.uniform(8.0, 30.0)
        a, b = sorted((x, x + step * width))
        items.append(
            (
                z,
                lambda c, a=a, b=b, rgb=rgb, win=win, h=height: facade(
                    c, cam, lambda s, y: (s, y, z), (a, b), h, rgb, look, win
                ),
            )
        )
        x += step * width
    return items


def plan(cam: Camera, street: Street, look: Look, rng: np.random.Generator) -> list[tuple[float, Draw]]:
    makers = {"building": _building, "wall": _wall, "park": _park}
    items: list[tuple[float, Draw]] = []
    for side in (-1, 1):
        x = street.building_x(side)
        for seg in street.segments[side]:
            items.append((seg.z0, makers[seg.kind](cam, side, x, seg, look, rng)))
        if street.cross:
            zc, wc, walk = street.cross
            items += _front_row(cam, zc + wc + walk, x, side * 150.0, look, rng)
    if street.end is not None:
        items += _front_row(cam, street.end, -150.0, 150.0, look, rng)
    return items

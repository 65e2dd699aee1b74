"""Road vehicles as boxes in perspective: cars, trucks, buses and trams (Cityscapes "train").

Trucks, buses and trams are painted from one shared set of colours per image (Look.paints) with
the same texture and glazing: their silhouettes (cab + cargo box, window band, rails and
pantograph, length) and where they are tell them apart, not their paint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from . import textures
from .canvas import Camera, Canvas, Look, pick, scale_rgb

if TYPE_CHECKING:
    from .scene import Street

CAR, TRUCK, BUS, TRAIN = 13, 14, 15, 16
PAINT = textures.texture_id("paint")
GLASS = textures.texture_id("glass")
FLAT = textures.texture_id("flat")
TYRE = (24, 24, 26)
Draw = Callable[[Canvas], None]


def box(
    canvas: Canvas,
    cam: Camera,
    x: tuple[float, float],
    y: tuple[float, float],
    z: tuple[float, float],
    cls: int,
    rgb,
    tex: int = PAINT,
) -> None:
    """The faces of an axis-aligned box that the camera sees, side and top before the front."""
    (x0, x1), (y0, y1), (z0, z1) = x, y, z
    if x0 > 0 or x1 < 0:
        xs = x0 if x0 > 0 else x1
        pts = [(xs, y0, z0), (xs, y0, z1), (xs, y1, z1), (xs, y1, z0)]
        canvas.poly(cam.points(pts), cls, scale_rgb(rgb, 0.8), tex)
    if y1 < cam.height_m:
        pts = [(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)]
        canvas.poly(cam.points(pts), cls, scale_rgb(rgb, 1.1), tex)
    pts = [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)]
    canvas.poly(cam.points(pts), cls, rgb, tex)


def side_band(canvas, cam, x, y, z, cls, rgb, tex, pillars: float = 0.0, pillar_rgb=None) -> None:
    """A band (windows) on the visible side face of a box, with optional pillars every few metres."""
    (x0, x1), (y0, y1), (z0, z1) = x, y, z
    if not (x0 > 0 or x1 < 0):
        return
    xs = x0 if x0 > 0 else x1
    canvas.poly(cam.points([(xs, y0, z0), (xs, y0, z1), (xs, y1, z1), (xs, y1, z0)]), cls, rgb, tex)
    if pillars:
        for zp in np.arange(z0 + pillars, z1 - 0.2, pillars).tolist():
            pts = [(xs, y0, zp), (xs, y0, zp + 0.15), (xs, y1, zp + 0.15), (xs, y1, zp)]
            canvas.poly(cam.points(pts), cls, pillar_rgb, PAINT)


def front_rect(canvas, cam, x, y, z, cls, rgb, tex) -> None:
    (x0, x1), (y0, y1) = x, y
    canvas.poly(cam.points([(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)]), cls, rgb, tex)


def wheels(canvas, cam, x, z, cls, radius=0.34) -> None:
    (x0, x1), (z0, z1) = x, z
    for xw in ((x0 + 0.05, x0 + 0.3), (x1 - 0.3, x1 - 0.05)):
        front_rect(canvas, cam, xw, (0.0, radius * 1.4), z0 + 0.5, cls, TYRE, FLAT)
    if x0 > 0 or x1 < 0:
        xs = x0 if x0 > 0 else x1
        for zc in (z0 + 0.75, z1 - 0.75):
            pts = [
                cam.uv(xs, 2 * radius, zc - radius),
                cam.uv(xs, 2 * radius, zc + radius),
                cam.uv(xs, 0, zc + radius),
                cam.uv(xs, 0, zc - radius),
            ]
            canvas.poly(pts, cls, TYRE, FLAT)


def car(
    cam: Camera, xc: float, z0: float, facing: int, look: Look, rng: np.random.Generator
) -> tuple[float, Draw]:
    length, width, height = rng.uniform(3.8, 4.9), rng.uniform(1.65, 1.9), rng.uniform(1.35, 1.65)
    palette = [
        (20, 20, 22),
        (225, 225, 222),
        (150, 152, 156),
        (90, 92, 96),
        (30, 45, 90),
        (140, 20, 25),
        (25, 60, 40),
    ]
    rgb = scale_rgb(pick(rng, palette), pick(rng, [0.9, 1.0, 1.1]))
    glass = pick(rng, look.glass)
    x, z = (xc - width / 2, xc + width / 2), (z0, z0 + length)
    lamp = (200, 25, 25) if facing > 0 else (235, 235, 215)

    def draw(canvas: Canvas) -> None:
        wheels(canvas, cam, x, z, CAR)
        inset = (x[0] + 0.12, x[1] - 0.12), (z0 + 0.9, z[1] - 0.8)
        box(canvas, cam, inset[0], (0.9, height), inset[1], CAR, rgb)
        side_band(
            canvas,
            cam,
            inset[0],
            (1.0, height - 0.08),
            (inset[1][0] + 0.2, inset[1][1] - 0.2),
            CAR,
            glass,
            GLASS,
            1.3,
            rgb,
        )
        front_rect(
            canvas,
            cam,
            (inset[0][0] + 0.1, inset[0][1] - 0.1),
            (1.0, height - 0.08),
            z0 + 0.9,
            CAR,
            glass,
            GLASS,
        )
        box(canvas, cam, x, (0.25, 0.95), z, CAR, rgb)
        for lx in ((x[0] + 0.08, x[0] + 0.35), (x[1] - 0.35, x[1] - 0.08)):
            front_rect(canvas, cam, lx, (0.68, 0.82), z0, CAR, lamp, FLAT)
        front_rect(canvas, cam, (xc - 0.26, xc + 0.26), (0.4, 0.52), z0, CAR, (230, 230, 225), FLAT)

    return length, draw


def truck(
    cam: Camera, xc: float, z0: float, facing: int, look: Look, rng: np.random.Generator
) -> tuple[float, Draw]:
    cargo_l, width = rng.uniform(5.0, 9.0), 2.5
    cab_h, cargo_h = rng.uniform(2.7, 3.2), rng.uniform(3.3, 4.0)
    cab_rgb, cargo_rgb = pick(rng, look.paints), pick(rng, look.paints)
    glass = pick(rng, look.glass)
    x = (xc - width / 2, xc + width / 2)
    # Driving away the cargo box is nearest; oncoming, the cab is.
    cab_z = (z0 + cargo_l + 0.3, z0 + cargo_l + 2.5) if facing > 0 else (z0, z0 + 2.2)
    cargo_z = (z0, z0 + cargo_l) if facing > 0 else (z0 + 2.5, z0 + 2.5 + cargo_l)

    def draw(canvas: Canvas) -> None:
        parts = [(cab_z, cab_h, cab_rgb), (cargo_z, cargo_h, cargo_rgb)]
        for zz, h, rgb in sorted(parts, key=lambda p: -p[0][0]):
            wheels(canvas, cam, x, zz, TRUCK, 0.45)
            box(canvas, cam, x, (0.55, h), zz, TRUCK, rgb)
            if zz is cab_z:
                side_band(canvas, cam, x, (1.6, h - 0.3), (zz[0] + 0.3, zz[0] + 1.4), TRUCK, glass, GLASS)
        if facing < 0:
            front_rect(
                canvas, cam, (x[0] + 0.15, x[1] - 0.15), (1.6, cab_h - 0.25), cab_z[0], TRUCK, glass, GLASS
            )
        else:
            front_rect(
                canvas,
                cam,
                (xc - 0.03, xc + 0.03),
                (0.6, cargo_h - 0.1),
                z0,
                TRUCK,
                scale_rgb(cargo_rgb, 0.6),
                PAINT,
            )

    return cargo_l + 2.5, draw


def bus(
    cam: Camera, xc: float, z0: float, facing: int, look: Look, rng: np.random.Generator
) -> tuple[float, Draw]:
    length, width, height = rng.choice([rng.uniform(10.5, 13.0), 18.0]), 2.55, rng.uniform(2.95, 3.3)
    rgb, glass = pick(rng, look.paints), pick(rng, look.glass)
    x, z = (xc - width / 2, xc + width / 2), (z0, z0 + length)

    def draw(canvas: Canvas) -> None:
        wheels(canvas, cam, x, z, BUS, 0.5)
        box(canvas, cam, x, (0.3, height), z, BUS, rgb)
        side_band(canvas, cam, x, (1.15, height - 0.35), (z0 + 0.4, z[1] - 0.4), BUS, glass, GLASS, 1.6, rgb)
        low = 0.9 if facing < 0 else 1.6
        front_rect(canvas, cam, (x[0] + 0.12, x[1] - 0.12), (low, height - 0.3), z0, BUS, glass, GLASS)
        front_rect(
            canvas, cam, (x[0] + 0.4, x[1] - 0.4), (height - 0.28, height - 0.05), z0, BUS, (30, 30, 30), FLAT
        )

    return length, draw


def tram(cam: Camera, xc: float, z0: float, look: Look, rng: np.random.Generator) -> tuple[float, Draw]:
    length, width, height = rng.uniform(22.0, 36.0), rng.uniform(2.3, 2.65), rng.uniform(3.3, 3.6)
    rgb, glass = pick(rng, look.paints), pick(rng, look.glass)
    skirt = scale_rgb(rgb, 0.5)
    x, z = (xc - width / 2, xc + width / 2), (z0, z0 + length)
    joints = np.arange(z0 + length / 3, z0 + length - 1, length / 3).tolist()

    def draw(canvas: Canvas) -> None:
        box(canvas, cam, x, (0.1, height), z, TRAIN, rgb)
        side_band(canvas, cam, x, (0.1, 0.5), z, TRAIN, skirt, PAINT)
        side_band(canvas, cam, x, (1.0, height - 0.5), (z0 + 0.5, z[1] - 0.5), TRAIN, glass, GLASS, 1.8, rgb)
        for zj in joints:
            side_band(canvas, cam, x, (0.1, height - 0.1), (zj, zj + 0.45), TRAIN, (35, 35, 38), FLAT)
        front_rect(canvas, cam, (x[0] + 0.1, x[1] - 0.1), (1.05, height - 0.45), z0, TRAIN, glass, GLASS)
        front_rect(canvas, cam, (x[0], x[1]), (0.1, 0.5), z0, TRAIN, skirt, PAINT)
        for zp in (z0 + 3.0, z0 + length * 0.55):  # pantographs up to the (unlabelled) wire
            top = cam.uv(xc, height + 1.3, zp + 0.6)
            for dz in (0.0, 1.2):
                canvas.line(
                    [cam.uv(xc, height, zp + dz), top], cam.scale(zp) * 0.06, TRAIN, (40, 40, 40), FLAT
                )
            canvas.line(
                [cam.uv(xc - 0.8, height + 1.3, zp + 0.6), cam.uv(xc + 0.8, height + 1.3, zp + 0.6)],
                cam.scale(zp) * 0.06,
                TRAIN,
                (40, 40, 40),
                FLAT,
            )

    return length, draw


def plan(cam: Camera, street: Street, look: Look, rng: np.random.Generator) -> list[tuple[float, Draw]]:
    """Vehicles per lane without overlaps; the tram on its track, parked cars at the kerbs."""
    items: list[tuple[float, Draw]] = []
    shade = int(round(128 * 0.55))

    def place(z0: float, length: float, draw: Draw, xc: float, width: float) -> None:
        under = [
            (xc - width / 2 - 0.1, 0, z0 - 0.3),
            (xc + width / 2 + 0.1, 0, z0 - 0.3),
            (xc + width / 2, 0, z0 + length),
            (xc - width / 2, 0, z0 + length),
        ]
        pts = cam.points(under)

        def shaded(canvas: Canvas) -> None:
            canvas.shadow.polygon(pts, fill=shade)
            draw(canvas)

        items.append((z0, shaded))

    taken: dict[float, list[tuple[float, float]]] = {xc: [] for xc, _ in street.lanes}

    def free(xc: float, z0: float, length: float) -> bool:
        return all(z0 + length + 2.0 < a or z0 > b + 2.0 for a, b in taken[xc])

    if street.tram is not None:
        z0 = rng.uniform(7.0, 60.0)
        length, draw = tram(cam, street.tram, z0, look, rng)
        taken[street.tram].append((z0, z0 + length))
        place(z0, length, draw, street.tram, 2.5)
    for xc, facing in street.lanes:
        for _ in range(int(rng.integers(0, 4))):
            z0 = rng.uniform(9.0 if abs(xc) < 1.0 else 4.0, 90.0)
            kind = rng.choice(3, p=[0.74, 0.13, 0.13])
            xv = xc + rng.uniform(-0.3, 0.3)
            if kind == 0:
                length, draw = car(cam, xv, z0, facing, look, rng)
            elif kind == 1:
                length, draw = truck(cam, xv, z0, facing, look, rng)
            else:
                length, draw = bus(cam, xv, z0, facing, look, rng)
            if free(xc, z0, length):
                taken[xc].append((z0, z0 + length))
                place(z0, length, draw, xv, 2.4)
    for side in (-1, 1):
        lane = street.lanes[0 if side < 0 else -1][0]
        if rng.uniform() < 0.45 and abs(lane) > 1.0:
            xv = street.edge(side) - side * 1.1
            z0 = rng.uniform(3.0, 10.0)
            while z0 < 60.0:
                length, draw = car(cam, xv, z0, 1, look, rng)
                if free(lane, z0, length) and not _in_gap(street, z0, length):
                    taken[lane].append((z0, z0 + length))
                    place(z0, length, draw, xv, 1.8)
                z0 += length + rng.uniform(0.8, 6.0)
    return items


def _in_gap(street: Street, z0: float, length: float) -> bool:
    gap = street.gap()
    zebra = street.zebra
    hit_gap = gap is not None and z0 < gap[1] and z0 + length > gap[0] - 2.0
    hit_zebra = zebra is not None and z0 < zebra + 3.0 and z0 + length > zebra - 2.0
    return hit_gap or hit_zebra

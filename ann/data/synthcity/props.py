"""Street furniture and trees: lamp poles, traffic lights and signs on poles, fences, trees.

Tree crowns use the image's foliage colours and texture, the same as the terrain (Look.greens).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from . import textures
from .canvas import Camera, Canvas, Look, hsv, pick, scale_rgb
from .ground import walk_ranges

if TYPE_CHECKING:
    from .scene import Street

FENCE, POLE, LIGHT, SIGN, VEGETATION = 4, 5, 6, 7, 8
METAL = textures.texture_id("metal")
FLAT = textures.texture_id("flat")
BARK = textures.texture_id("bark")
Draw = Callable[[Canvas], None]


def tree(cam: Camera, x: float, z: float, look: Look, rng: np.random.Generator, base: float = 0.0) -> Draw:
    trunk_h, trunk_w = rng.uniform(2.2, 4.5), rng.uniform(0.2, 0.4)
    crown = rng.uniform(1.1, 2.8)
    bark = pick(rng, [(70, 55, 40), (50, 42, 35), (95, 80, 62)])
    blobs = [
        (rng.uniform(-0.6, 0.6), rng.uniform(-0.5, 0.5), rng.uniform(0.45, 0.8))
        for _ in range(int(rng.integers(4, 9)))
    ]
    greens = [scale_rgb(pick(rng, look.greens), pick(rng, [0.85, 1.0, 1.15])) for _ in blobs]

    def draw(canvas: Canvas) -> None:
        k = cam.scale(z)
        u, v = cam.uv(x, base, z)
        canvas.rect(
            (u - k * trunk_w / 2, v - k * (trunk_h + crown * 0.5), u + k * trunk_w / 2, v),
            VEGETATION,
            bark,
            BARK,
        )
        cv = v - k * (trunk_h + crown * 0.6)
        for (dx, dy, r), rgb in zip(blobs, greens, strict=True):
            cx, cy, rr = u + dx * crown * k, cv + dy * crown * k, r * crown * k
            canvas.ellipse((cx - rr, cy - rr * 0.9, cx + rr, cy + rr * 0.9), VEGETATION, rgb, look.green_tex)

    return draw


def fence(
    cam: Camera, x: float, z0: float, z1: float, look: Look, rng: np.random.Generator, base: float = 0.0
) -> Draw:
    """A fence along z at lateral position x: solid boards, or two rails with pickets."""
    height = rng.uniform(0.9, 2.0)
    rgb = pick(
        rng,
        [hsv(0.3, 0.4, 0.25), hsv(0.08, 0.5, rng.uniform(0.3, 0.6)), hsv(0.6, 0.05, rng.uniform(0.3, 0.75))],
    )
    solid = rng.uniform() < 0.35
    spacing = rng.uniform(0.12, 0.3) if rng.uniform() < 0.7 else 2.5

    def draw(canvas: Canvas) -> None:
        if solid:
            boards = [(x, base, z0), (x, base, z1), (x, base + height, z1), (x, base + height, z0)]
            canvas.poly(cam.points(boards), FENCE, rgb, METAL)
            return
        for y in (base + height * 0.15, base + height * 0.92):
            rail = [(x, y, z0), (x, y, z1), (x, y + 0.08, z1), (x, y + 0.08, z0)]
            canvas.poly(cam.points(rail), FENCE, rgb, METAL)
        z = z0 + spacing / 2
        while z < z1:
            (u0, v0), (_, v1) = cam.uv(x, base, z), cam.uv(x, base + height, z)
            if abs(cam.uv(x, 0, z + spacing)[0] - u0) < 2.0:
                break
            canvas.line([(u0, v0), (u0, v1)], cam.scale(z) * 0.05, FENCE, rgb, METAL)
            z += spacing

    return draw


def _pole(
    canvas: Canvas, cam: Camera, x: float, z: float, top: float, width: float, rgb, base: float
) -> None:
    k = cam.scale(z)
    u, v = cam.uv(x, base, z)
    canvas.rect((u - k * width / 2, v - k * top, u + k * width / 2, v), POLE, rgb, METAL)


def lamp(cam: Camera, x: float, z: float, side: int, rgb, rng: np.random.Generator, base: float) -> Draw:
    top, arm = rng.uniform(6.0, 9.5), rng.uniform(0.8, 2.2)

    def draw(canvas: Canvas) -> None:
        _pole(canvas, cam, x, z, top, 0.18, rgb, base)
        a, b = cam.uv(x, base + top, z), cam.uv(x - side * arm, base + top, z)
        canvas.line([a, b], cam.scale(z) * 0.12, POLE, rgb, METAL)
        k = cam.scale(z)
        canvas.rect(
            (b[0] - k * 0.3, b[1] - k * 0.05, b[0] + k * 0.3, b[1] + k * 0.18),
            POLE,
            scale_rgb(rgb, 0.7),
            METAL,
        )

    return draw


def traffic_light(cam: Camera, x: float, z: float, side: int, rng: np.random.Generator, base: float) -> Draw:
    top = rng.uniform(2.6, 4.2)
    arm = rng.uniform(2.0, 5.0) if rng.uniform() < 0.4 else 0.0
    box = hsv(0.0, 0.0, rng.uniform(0.08, 0.3)) if rng.uniform() < 0.7 else hsv(0.15, 0.8, 0.8)
    lit = int(rng.integers(3))
    pole_rgb = hsv(0.6, 0.05, rng.uniform(0.3, 0.7))

    def head(canvas: Canvas, hx: float, hy: float) -> None:
        k = cam.scale(z)
        u, v = cam.uv(hx, hy, z)
        w, h = 0.34 * k, 0.95 * k
        canvas.rect((u - w / 2, v - h, u + w / 2, v), LIGHT, box, FLAT)
        for i, colour in enumerate(((230, 40, 30), (240, 180, 20), (40, 220, 90))):
            rgb = colour if i == lit else scale_rgb(colour, 0.3)
            cy = v - h + h * (i + 0.5) / 3
            canvas.ellipse((u - w * 0.33, cy - w * 0.33, u + w * 0.33, cy + w * 0.33), LIGHT, rgb, FLAT)

    def draw(canvas: Canvas) -> None:
        _pole(canvas, cam, x, z, top + (0.6 if arm else 0.0), 0.14, pole_rgb, base)
        head(canvas, x + side * 0.25, base + top)
        if arm:
            y = base + top + 0.5
            canvas.line(
                [cam.uv(x, y, z), cam.uv(x - side * arm, y, z)], cam.scale(z) * 0.1, POLE, pole_rgb, METAL
            )
            head(canvas, x - side * arm, y)

    return draw


def sign(cam: Camera, x: float, z: float, rng: np.random.Generator, base: float) -> Draw:
    top, size = rng.uniform(2.2, 3.2), rng.uniform(0.55, 0.9)
    shape = pick(rng, ["circle", "triangle", "square", "plate"])
    face = pick(rng, [(200, 30, 35), (30, 80, 170), (235, 235, 230), (240, 200, 20)])
    pole_rgb = hsv(0.6, 0.05, rng.uniform(0.35, 0.7))

    def draw(canvas: Canvas) -> None:
        _pole(canvas, cam, x, z, top, 0.08, pole_rgb, base)
        k = cam.scale(z)
        u, v = cam.uv(x, base + top, z)
        r = size * k / 2
        if shape == "circle":
            canvas.ellipse((u - r, v - r, u + r, v + r), SIGN, (200, 30, 35), FLAT)
            canvas.ellipse((u - 0.75 * r, v - 0.75 * r, u + 0.75 * r, v + 0.75 * r), SIGN, face, FLAT)
        elif shape == "triangle":
            canvas.poly([(u - r, v - r), (u + r, v - r), (u, v + r)], SIGN, (200, 30, 35), FLAT)
            canvas.poly(
                [(u - 0.6 * r, v - 0.7 * r), (u + 0.6 * r, v - 0.7 * r), (u, v + 0.45 * r)],
                SIGN,
                (235, 235, 230),
                FLAT,
            )
        else:
            hr = r * (0.5 if shape == "plate" else 1.0)
            canvas.rect((u - r, v - hr, u + r, v + hr), SIGN, face, FLAT)
            canvas.rect(
                (u - 0.8 * r, v - 0.05 * r, u + 0.8 * r, v + 0.1 * r), SIGN, scale_rgb(face, 0.4), FLAT
            )

    return draw


def plan(cam: Camera, street: Street, look: Look, rng: np.random.Generator) -> list[tuple[float, Draw]]:
    items: list[tuple[float, Draw]] = []
    base = street.curb
    lamp_rgb = hsv(0.6, 0.05, rng.uniform(0.25, 0.6))
    crossings = [street.zebra - 1.0] if street.zebra is not None else []
    if street.cross:
        crossings.append(street.cross[0] + street.cross[1] + 1.0)
    if not crossings and rng.uniform() < 0.35:
        crossings.append(rng.uniform(8.0, 40.0))
    gap = street.gap()

    def clear(z: float) -> bool:  # not standing in the cross street
        return not (gap and gap[0] - 1.0 < z < gap[1])

    for side in (-1, 1):
        kerb = street.edge(side) + side * 0.5
        z = rng.uniform(3.0, 15.0)
        while z < 120.0:
            if rng.uniform() < 0.8 and clear(z):
                items.append((z, lamp(cam, kerb, z, side, lamp_rgb, rng, base)))
            z += rng.uniform(18.0, 35.0)
        for zc in crossings:
            items.append((zc, traffic_light(cam, kerb + side * 0.3, zc, side, rng, base)))
        for _ in range(int(rng.integers(0, 3))):
            zs = rng.uniform(4.0, 50.0)
            if clear(zs):
                items.append((zs, sign(cam, kerb + side * rng.uniform(0.0, 0.6), zs, rng, base)))
        if street.verge[side] and rng.uniform() < 0.5:  # a railing between verge and sidewalk
            x = street.edge(side) + side * street.verge[side]
            for z0, z1 in walk_ranges(street):
                items.append((z0, fence(cam, x, max(z0, 2.0), min(z1, 120.0), look, rng, base)))
        if rng.uniform() < 0.4:
            x = street.edge(side) + side * (street.verge[side] / 2 if street.verge[side] else 1.0)
            z = rng.uniform(3.0, 12.0)
            while z < 100.0:
                if clear(z):
                    items.append((z, tree(cam, x, z, look, rng, base)))
                z += rng.uniform(9.0, 18.0)
    return items

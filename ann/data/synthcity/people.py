"""Persons on foot, and riders on bicycles and motorcycles (two-wheelers seen from the side).

Persons and riders wear clothes and skin tones from the same per-image sets (Look.clothes,
Look.skins): a rider is a person who sits on a two-wheeler, which only the bike under them and
their pose reveal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from . import textures
from .canvas import Camera, Canvas, Look, hsv, pick

if TYPE_CHECKING:
    from .scene import Street

PERSON, RIDER, MOTORCYCLE, BICYCLE = 11, 12, 17, 18
CLOTH = textures.texture_id("fabric")
FLAT = textures.texture_id("flat")
METAL = textures.texture_id("metal")
PAINT = textures.texture_id("paint")
Draw = Callable[[Canvas], None]


def _outfit(look: Look, rng: np.random.Generator) -> dict:
    return {
        "top": pick(rng, look.clothes),
        "legs": pick(rng, look.clothes),
        "skin": pick(rng, look.skins),
        "hair": hsv(0.08, rng.uniform(0.2, 0.6), rng.uniform(0.05, 0.5)),
        "height": rng.uniform(1.5, 1.95),
    }


class Figure:
    """Maps body coordinates (metres: a along the facing direction, y up) to the image."""

    def __init__(self, cam: Camera, x: float, z: float, base: float, facing: float):
        self.k = cam.scale(z)
        self.u, self.v = cam.uv(x, base, z)
        self.facing = facing  # signed horizontal scale: +-1 side view, smaller for oblique views

    def p(self, a: float, y: float) -> tuple[float, float]:
        return self.u + self.facing * a * self.k, self.v - y * self.k

    def limb(self, canvas, a, b, width, cls, rgb, tex=CLOTH) -> None:
        canvas.line([self.p(*a), self.p(*b)], width * self.k, cls, rgb, tex)


def _head(canvas, fig: Figure, a: float, y: float, outfit: dict, cls: int) -> None:
    (u, v), r = fig.p(a, y), 0.11 * fig.k
    canvas.ellipse((u - r * 0.85, v - r, u + r * 0.85, v + r), cls, outfit["skin"], CLOTH)
    canvas.ellipse((u - r * 0.9, v - r * 1.1, u + r * 0.9, v - r * 0.1), cls, outfit["hair"], CLOTH)


def person(cam: Camera, x: float, z: float, base: float, look: Look, rng: np.random.Generator) -> Draw:
    o = _outfit(look, rng)
    facing = float(rng.choice([-1, 1])) * rng.uniform(0.0, 1.0)
    stride = rng.uniform(0.0, 0.35)

    def draw(canvas: Canvas) -> None:
        h = o["height"] / 1.75
        fig = Figure(cam, x, z, base, facing)
        front = Figure(cam, x, z, base, 1.0)  # width across the body does not foreshorten
        spread = 0.1 * (1 - abs(facing))
        for a, s in ((-stride, -spread), (stride, spread)):
            canvas.line([fig.p(a * h, 0.04), front.p(s + 0, 0.9 * h)], 0.14 * fig.k, PERSON, o["legs"], CLOTH)
        torso = [
            front.p(-0.19 * (1 - abs(facing) * 0.4), 1.45 * h),
            front.p(0.19 * (1 - abs(facing) * 0.4), 1.45 * h),
            front.p(0.16, 0.85 * h),
            front.p(-0.16, 0.85 * h),
        ]
        canvas.poly(torso, PERSON, o["top"], CLOTH)
        for s in (-0.2, 0.2):
            canvas.line(
                [front.p(s, 1.42 * h), fig.p(stride * -np.sign(s) * h + s * (1 - abs(facing)), 0.85 * h)],
                0.1 * fig.k,
                PERSON,
                o["top"],
                CLOTH,
            )
        _head(canvas, front, 0.0, 1.6 * h, o, PERSON)

    return draw


def _bicycle(canvas, fig: Figure, rgb) -> None:
    r = 0.34
    for a in (-0.52, 0.52):
        (u, v) = fig.p(a, r)
        rx, ry = r * fig.k * abs(fig.facing), r * fig.k
        canvas.ring((u - rx, v - ry, u + rx, v + ry), 0.06 * fig.k, BICYCLE, (25, 25, 25), FLAT)
    joints = {
        "rear": (-0.52, r),
        "crank": (0.0, 0.3),
        "seat": (-0.2, 0.9),
        "head": (0.38, 0.85),
        "front": (0.52, r),
        "bar": (0.42, 1.02),
    }
    for a, b in (
        ("rear", "crank"),
        ("crank", "seat"),
        ("seat", "rear"),
        ("seat", "head"),
        ("head", "crank"),
        ("head", "front"),
        ("head", "bar"),
    ):
        fig.limb(canvas, joints[a], joints[b], 0.05, BICYCLE, rgb, METAL)


def _motorcycle(canvas, fig: Figure, rgb) -> None:
    r = 0.32
    for a in (-0.7, 0.7):
        (u, v) = fig.p(a, r)
        rx, ry = r * fig.k * abs(fig.facing), r * fig.k
        canvas.ellipse((u - rx, v - ry, u + rx, v + ry), MOTORCYCLE, (22, 22, 22), FLAT)
        canvas.ellipse(
            (u - rx * 0.45, v - ry * 0.45, u + rx * 0.45, v + ry * 0.45), MOTORCYCLE, (120, 120, 125), METAL
        )
    body = [
        (-0.85, 0.62),
        (-0.45, 0.88),
        (0.1, 0.86),
        (0.35, 1.02),
        (0.55, 0.95),
        (0.4, 0.4),
        (-0.25, 0.3),
        (-0.6, 0.55),
    ]
    canvas.poly([fig.p(a, y) for a, y in body], MOTORCYCLE, rgb, PAINT)
    fig.limb(canvas, (0.45, 1.15), (0.7, r), 0.06, MOTORCYCLE, (90, 90, 95), METAL)
    fig.limb(canvas, (0.35, 1.18), (0.55, 1.18), 0.05, MOTORCYCLE, (30, 30, 30), METAL)


def two_wheeler(
    cam: Camera,
    x: float,
    z: float,
    base: float,
    motor: bool,
    ridden: bool,
    look: Look,
    rng: np.random.Generator,
) -> Draw:
    o = _outfit(look, rng)
    facing = float(rng.choice([-1, 1])) * rng.uniform(0.35, 1.0)
    frame = hsv(rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.2, 0.9))
    seat = (-0.3, 0.9) if motor else (-0.2, 0.9)
    bar = (0.4, 1.15) if motor else (0.42, 1.02)

    def draw(canvas: Canvas) -> None:
        fig = Figure(cam, x, z, base, facing)
        (_motorcycle if motor else _bicycle)(canvas, fig, frame)
        if not ridden:
            return
        h = o["height"] / 1.75
        hip, knee, foot = seat, (seat[0] + 0.42, 0.75 * h + 0.1), (0.02, 0.3)
        shoulder = (seat[0] + 0.25 + (0.1 if motor else 0.2), seat[1] + 0.58 * h)
        fig.limb(canvas, hip, knee, 0.15, RIDER, o["legs"])
        fig.limb(canvas, knee, foot, 0.12, RIDER, o["legs"])
        fig.limb(canvas, hip, shoulder, 0.3, RIDER, o["top"])
        fig.limb(canvas, shoulder, bar, 0.1, RIDER, o["top"])
        _head(canvas, fig, shoulder[0] + 0.06, shoulder[1] + 0.22, o, RIDER)

    return draw


def plan(cam: Camera, street: Street, look: Look, rng: np.random.Generator) -> list[tuple[float, Draw]]:
    items: list[tuple[float, Draw]] = []
    gap = street.gap()

    def on_walk(side: int) -> tuple[float, float]:
        inner = street.edge(side) + side * (street.verge[side] + 0.4)
        return rng.uniform(*sorted((inner, street.building_x(side) - side * 0.4))), street.curb

    for _ in range(int(rng.integers(0, 12))):
        z = rng.uniform(3.0, 60.0)
        if street.zebra is not None and rng.uniform() < 0.25:
            z, x, base = street.zebra + rng.uniform(0.3, 2.7), rng.uniform(street.left, street.right), 0.0
        elif gap and gap[0] < z < gap[1]:
            continue
        else:
            x, base = on_walk(int(rng.choice([-1, 1])))
        items.append((z, person(cam, x, z, base, look, rng)))
    for _ in range(int(rng.integers(1, 5)) if rng.uniform() < 0.75 else 0):
        motor = rng.uniform() < 0.4
        ridden = rng.uniform() < 0.65
        z = rng.uniform(4.0, 50.0)
        if ridden:  # on the road, near the right kerb or in a lane
            x = (
                rng.uniform(street.right - 1.5, street.right - 0.6)
                if rng.uniform() < 0.5
                else pick(rng, street.lanes)[0]
            )
            base = 0.0
        elif gap and gap[0] < z < gap[1]:
            continue
        else:
            x, base = on_walk(int(rng.choice([-1, 1])))
        items.append((z, two_wheeler(cam, x, z, base, motor, ridden, look, rng)))
    return items

"""Scene model of SynthCity: plan a street (docs/synthcity.md, "Scene model"), then draw it.

Drawing order gives occlusion: sky, then the ground plane, then everything standing on it
from far to near (painter's algorithm on depth z), building-line structures before the props
and road users that stand in front of them.
"""

from dataclasses import dataclass, field

import numpy as np

from . import ground, people, props, structures, vehicles
from .canvas import Z_FAR, Z_NEAR, Camera, Canvas, Look, sample_look


@dataclass
class Segment:
    kind: str  # "building" | "wall" | "park"
    z0: float
    z1: float


@dataclass
class Street:
    left: float  # x of the left road edge (negative)
    right: float
    lane_w: float
    lanes: list[tuple[float, int]]  # (centre x, +1 driving away from the camera / -1 oncoming)
    verge: dict[int, float]  # side (-1 left, +1 right) -> width of a grass strip at the kerb
    walk: dict[int, float]  # side -> sidewalk width
    curb: float  # kerb height
    cross: tuple[float, float, float] | None  # (z of the cross street, its width, its walk)
    zebra: float | None  # z where a zebra crossing starts
    end: float | None  # z of the facades that close the street
    tram: float | None  # x of the tram track centre
    segments: dict[int, list[Segment]] = field(default_factory=dict)

    def edge(self, side: int) -> float:
        return self.right if side > 0 else self.left

    def building_x(self, side: int) -> float:
        return self.edge(side) + side * (self.verge[side] + self.walk[side])

    def far(self) -> float:
        return self.end if self.end is not None else Z_FAR

    def gap(self) -> tuple[float, float] | None:
        """z range where the cross street interrupts sidewalks and buildings."""
        if self.cross is None:
            return None
        zc, wc, walk = self.cross
        return zc - walk, zc + wc + walk


def sample_camera(rng: np.random.Generator, size: tuple[int, int]) -> Camera:
    width, height = size
    return Camera(
        width=width,
        height=height,
        focal=width * rng.uniform(0.7, 1.0),
        horizon=height * rng.uniform(0.36, 0.48),
        height_m=rng.uniform(1.25, 1.7),
    )


def plan_street(rng: np.random.Generator) -> Street:
    u = rng.uniform
    lane_w = u(2.9, 3.6)
    n_lanes = int(rng.integers(2, 5))
    ego = int(rng.integers(n_lanes // 2, n_lanes))  # drive on the right-hand half
    left = -lane_w * (ego + 0.5)
    lanes = [(left + lane_w * (i + 0.5), 1 if i >= n_lanes // 2 else -1) for i in range(n_lanes)]
    cross = (u(14, 45), u(9, 16), u(2.5, 4.5)) if u() < 0.5 else None
    zebra = cross[0] - u(4, 6) if cross else (u(10, 40) if u() < 0.3 else None)
    street = Street(
        left=left,
        right=left + lane_w * n_lanes,
        lane_w=lane_w,
        lanes=lanes,
        verge={s: (u(1.0, 3.0) if u() < 0.3 else 0.0) for s in (-1, 1)},
        walk={s: u(2.0, 5.0) for s in (-1, 1)},
        curb=u(0.1, 0.18),
        cross=cross,
        zebra=zebra,
        end=u(70, 220) if u() < 0.5 else None,
        tram=lanes[int(rng.integers(n_lanes))][0] if u() < 0.22 else None,
    )
    for side in (-1, 1):
        street.segments[side] = plan_segments(rng, street)
    return street


def plan_segments(rng: np.random.Generator, street: Street) -> list[Segment]:
    """Split the building line of one side into buildings, walls and parks along z."""
    kinds = ("building", "wall", "park")
    weights = np.array([0.62, 0.2, 0.18]) if rng.uniform() < 0.8 else np.array([0.3, 0.3, 0.4])
    segments, z = [], Z_NEAR
    gap = street.gap()
    while z < min(street.far(), 250.0):
        length = rng.uniform(8.0, 35.0)
        z1 = z + length
        if gap and z < gap[1] and z1 > gap[0]:
            if gap[0] - z > 3.0:
                segments.append(Segment(kinds[rng.choice(3, p=weights)], z, gap[0]))
            z = gap[1]
            continue
        segments.append(Segment(kinds[rng.choice(3, p=weights)], z, z1))
        z = z1
    return segments


def build(rng: np.random.Generator, size: tuple[int, int]) -> Canvas:
    """Draw one scene; returns the canvas (slot image, slot table, shade image)."""
    cam = sample_camera(rng, size)
    look: Look = sample_look(rng)
    street = plan_street(rng)
    canvas = Canvas(size)
    ground.draw_sky(canvas, cam, look, rng)
    ground.draw_ground(canvas, cam, street, look, rng)
    items: list[tuple[float, int, object]] = []  # (depth, layer, draw function)
    items += [(z, 0, f) for z, f in structures.plan(cam, street, look, rng)]
    items += [(z, 1, f) for z, f in props.plan(cam, street, look, rng)]
    items += [(z, 1, f) for z, f in vehicles.plan(cam, street, look, rng)]
    items += [(z, 1, f) for z, f in people.plan(cam, street, look, rng)]
    # Building-line structures first (everything else stands in front of them), then far to near.
    items.sort(key=lambda item: (item[1], -item[0]))
    for _, _, draw in items:
        draw(canvas)
    if rng.uniform() < 0.25:
        ground.draw_hood(canvas, cam, rng)
    return canvas

"""Effective receptive fields (ann.analysis.receptive_field, python -m ann.receptive_field): exact on
networks whose field is known by construction, and the command line on tiny checkpoints."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from torch import nn

from ann.analysis.receptive_field import ReceptiveField, effective_receptive_field
from ann.cli import receptive_field as cli

pytest_plugins = ("tests.conftest_app",)  # tiny_checkpoints

IDENTITY = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "scale": 1.0, "channel_order": "RGB"}


class Box(nn.Module):
    """Two classes, each the sum of a 5x5 window (radius 2) of the three channels; `glob` adds the
    image mean, which reaches every pixel."""

    def __init__(self, glob: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 5, padding=2, bias=False)
        nn.init.ones_(self.conv.weight)
        self.glob = glob
        self.meta = SimpleNamespace(normalization=IDENTITY)

    def forward(self, x):
        return self.conv(x) + (x.mean((1, 2, 3), keepdim=True) * 400 if self.glob else 0)


def images(n=3, size=(24, 32)):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def test_a_5x5_window_has_its_mass_in_the_window_and_evenly():
    field = effective_receptive_field(Box(), images())
    assert field.point == (12, 16) and field.images == 3
    assert field.mass.sum() == pytest.approx(1.0)
    window = field.mass[10:15, 14:19]
    assert window.sum() == pytest.approx(1.0) and np.allclose(window, 1 / 25)
    # rings: the centre holds 1/25, the 3x3 square 9/25, the 5x5 square all
    assert [field.radius(share) for share in (0.04, 0.3, 0.36, 0.5, 0.95)] == [0, 1, 1, 2, 2]
    assert field.reach() == 2 and field.summary()["reach"] == 2  # the 5x5 window exactly


def test_a_global_term_spreads_the_mass_over_the_whole_image_from_any_point():
    local, wide = (effective_receptive_field(Box(glob), images(), point=(3, 5)) for glob in (False, True))
    assert local.radius(0.95) == 2
    corner = wide.mass[20:, 25:]  # far from the point, in a 24x32 image: the global term alone, evenly
    assert wide.radius(0.95) > 20 and corner.min() > 0 and np.allclose(corner, corner[0, 0])
    assert local.reach() == 2 and wide.reach() == 31 - 5  # the farthest column from x=5


def test_ring_mass_counts_squares_around_the_point():
    mass = np.zeros((5, 5))
    mass[0, 0], mass[2, 2], mass[2, 3] = 0.5, 0.25, 0.25
    field = ReceptiveField(mass, (2, 2), 1)
    assert (
        field.ring_mass().tolist() == [0.25, 0.25, 0.5] and field.radius(0.5) == 1 and field.radius(0.75) == 2
    )


def test_cli_prints_a_row_per_checkpoint_and_writes_json_and_plot(tiny_checkpoints, tmp_path, capsys):
    out_json, out_png = tmp_path / "erf.json", tmp_path / "erf.png"
    paths = [str(tiny_checkpoints / "tiny.safetensors"), str(tiny_checkpoints / "fcn.safetensors")]
    status = cli.main(
        [*paths, "--limit", "2", "--size", "64,128", "--json", str(out_json), "--plot", str(out_png)]
    )
    assert status == 0
    rows = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.endswith(".safetensors") or "x64" in line
    ]
    assert [row.split()[0] for row in rows] == ["tiny.safetensors", "fcn.safetensors"]
    saved = json.loads(out_json.read_text())
    assert saved["fcn.safetensors"]["images"] == 2 and saved["fcn.safetensors"]["size_hw"] == [64, 128]
    assert saved["tiny.safetensors"]["point_yx"] == [32, 64]
    fcn = saved["fcn.safetensors"]
    assert 0 <= fcn["radius_50"] <= fcn["radius_95"] <= fcn["reach"] <= 64
    assert out_png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--point", "70,10"], "--point 70,10 is outside the 128x64 image"),
        (["--size", "64"], "--size takes two numbers"),
        (["--point", "1,2,3"], "--point takes two numbers"),
    ],
)
def test_cli_refuses_bad_points_and_sizes_in_one_line(tiny_checkpoints, capsys, flags, says):
    status = cli.main([str(tiny_checkpoints / "fcn.safetensors"), "--limit", "1", "--size", "64,128", *flags])
    err = capsys.readouterr().err
    assert status == 2 and says in err and err.count("\n") == 1

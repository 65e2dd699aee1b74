"""Compare CPU training recipes at equal CPU time (the CPU-checkpoints issue, docs/cpu-training.md).

Each candidate is the full ANN config with a few overrides. Its training step is timed first
(three steps after a warm-up, synthetic batch), so that its iteration count fills the same
wall-clock budget on this machine; then `python -m ann.train` runs it with a whole poly schedule
and the trainer's own validation scores it. One table row per candidate: minutes, images seen,
images/s, the step's GFLOP/s against the matmul peak, val mIoU.

    python scripts/cpu_recipe_sweep.py --minutes 7 --out runs/sweep [--only NAME ...]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ann.analysis.efficiency import count_gmacs  # noqa: E402
from ann.checkpoint import read_meta  # noqa: E402
from ann.cli.args import set_flags  # noqa: E402
from ann.losses import SegmentationLoss  # noqa: E402
from ann.models.network import build_network  # noqa: E402
from ann.training.config import RunConfig, load_config  # noqa: E402
from ann.training.data import resize_stages  # noqa: E402
from ann.training.logging import read_metrics  # noqa: E402

NARROW = [
    "model.head_channels=64", "model.key_channels=32", "model.value_channels=32", "model.aux_channels=64",
]  # fmt: skip
# what every candidate shares: whole rendered images as crops, streamed, one loader worker (the
# other core trains), fp32, validation only at the end on 100 val images
COMMON = [
    "data.workers=1", "data.synthcity_train_images=0", "data.val_limit=100", "data.test_split=",
    "train.device=cpu", "train.amp=none", "train.channels_last=false", "train.val_every=0",
    "train.log_every=10", "train.progress=false", "train.checkpoint_every=50", "train.batch_size=8",
]  # fmt: skip


def scale(h: int, w: int) -> list[str]:
    return [f"data.synthcity_size={h},{w}", f"data.crop_size={h},{w}", f"loss.ohem_min_kept={h * w // 5}"]


# name -> (config, overrides): one lever changed at a time around 384x192 / OS16 / head 64 / lr 0.01
CANDIDATES = {
    "256x128-os8": ("ann-r18-synthcity", NARROW + scale(128, 256) + ["model.output_stride=8"]),
    "256x128-os16": ("ann-r18-synthcity", NARROW + scale(128, 256) + ["model.output_stride=16"]),
    "384x192-os16": ("ann-r18-synthcity", NARROW + scale(192, 384) + ["model.output_stride=16"]),
    "512x256-os16": ("ann-r18-synthcity", NARROW + scale(256, 512) + ["model.output_stride=16"]),
    "384x192-os16-lr0.02": (
        "ann-r18-synthcity", NARROW + scale(192, 384) + ["model.output_stride=16", "optim.lr=0.02"]),
    "384x192-os16-head256": ("ann-r18-synthcity", scale(192, 384) + ["model.output_stride=16"]),
    # progressive resizing: the first 70 % of the iterations at 256x128, the rest at 512x256
    "512x256-os16-prog": ("ann-r18-synthcity", NARROW + scale(256, 512) + [
        "model.output_stride=16", "data.progressive=[[0.7, 0.5]]"]),
}  # fmt: skip


def step_rate(config_name: str, overrides: list[str]) -> float:
    """Images/s of the run's steps, each resize stage weighted by its share of the iterations."""
    config = load_config(config_name, overrides + COMMON + ["train.iterations=1000"])
    seconds, begin = 0.0, 0
    for end, stage in resize_stages(config):
        seconds += (end - begin) / 1000 / stage_rate(stage)
        begin = end
    return 1 / seconds


def stage_rate(config: RunConfig) -> float:
    """Images/s of forward + backward + SGD step on a synthetic batch of 8 (best of three)."""
    net = build_network(config.model).train()
    h, w = config.data.crop_size
    images, labels = torch.randn(8, 3, h, w), torch.randint(0, 19, (8, h, w))
    loss = SegmentationLoss(0.4, True, 0.7, config.loss.ohem_min_kept, None)
    optimizer = torch.optim.SGD(net.parameters(), 0.01, momentum=0.9)
    times = []
    for _ in range(4):
        begin = time.perf_counter()
        logits, aux = net(images, with_aux=True)
        optimizer.zero_grad()
        loss(logits, aux, labels)["total"].backward()
        optimizer.step()
        times.append(time.perf_counter() - begin)
    return 8 / min(times[1:])


def run(name: str, minutes: float, out: Path) -> dict:
    config_name, overrides = CANDIDATES[name]
    rate = step_rate(config_name, overrides)
    # the trainer's loop runs at about 85 % of the bare step (loader, logging, checkpoints)
    iterations = max(10, round(minutes * 60 * rate * 0.85 / 8))
    folder = out / name
    sets = set_flags(overrides + COMMON + [f"train.iterations={iterations}"])
    command = [sys.executable, "-m", "ann.train", config_name, "--out", str(folder), *sets]
    if (folder / "model.safetensors").exists():
        pass  # done before: read its results
    else:
        command += ["--resume"] if folder.exists() else []
        subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    records = read_metrics(folder)
    train = [r for r in records if "images_per_s" in r]
    val = [r for r in records if "val_miou" in r][-1]
    wall_time = read_meta(folder / "model.safetensors").provenance["wall_time_s"]
    config = load_config(str(folder / "config.toml"))
    h, w = config.data.crop_size
    gmacs = count_gmacs(build_network(config.model).eval(), torch.zeros(1, 3, h, w))
    measured = [r["images_per_s"] for r in train[len(train) // 4 :]]  # after warm-up
    images_per_s = sum(measured) / len(measured)
    return {
        "name": name, "iterations": iterations, "images": iterations * 8,
        "minutes": wall_time / 60, "step_images_per_s": rate,
        "images_per_s": images_per_s, "gflops": 3 * 2 * gmacs * images_per_s,  # backward ~ 2x forward
        "val_miou": val["val_miou"], "command": " ".join(command[1:]),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=7.0, help="CPU wall-clock budget per candidate")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "sweep")
    parser.add_argument("--only", nargs="*", choices=sorted(CANDIDATES), help="a subset of the candidates")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for name in args.only or CANDIDATES:
        rows.append(run(name, args.minutes, args.out))
        (args.out / "sweep.json").write_text(json.dumps(rows, indent=1))
        row = rows[-1]
        print(f"| {name} | {row['minutes']:.1f} | {row['images']} | {row['images_per_s']:.2f} | "
              f"{row['gflops']:.0f} | {row['val_miou']:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

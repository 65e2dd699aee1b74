"""Check a dataset split before spending GPU time on it: `python -m ann.check_data DATASET --root DIR`.

Every image and label of the split is read and checked as the trainer would (pairing, size,
label values; docs/datasets.md), with per-class pixel shares and image presence, image sizes,
and every bad file named with what is wrong. Exit status 0 when all samples load, 1 when some do
not, 2 when the split itself cannot be opened (missing folder, bad classes.txt, images without
labels).
"""

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch.utils.data

from ann.cli.args import size
from ann.data.datasets import DatasetError
from ann.data.labels import IGNORE_INDEX
from ann.progress import progress as shown
from ann.training.config import DATASETS, DataConfig
from ann.training.data import Split, open_split


class Counts(torch.utils.data.Dataset):
    """Item i = (i, pixel count per raw label value (256,), (height, width), error or None)."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return self.split.length

    def __getitem__(self, index: int):
        try:
            image, label = self.split.load(index)
        except DatasetError as error:
            return index, None, None, str(error)
        return index, np.bincount(label.ravel(), minlength=256), image.shape[:2], None


@dataclass
class Report:
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))  # per raw value
    images_with: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    sizes: dict[tuple[int, int], int] = field(default_factory=dict)  # (height, width) -> images
    bad: list[tuple[str, str]] = field(default_factory=list)  # (name, what is wrong)

    @property
    def images(self) -> int:
        return sum(self.sizes.values())

    def add(self, counts: np.ndarray, size: tuple[int, int]) -> None:
        self.pixels += counts
        self.images_with += counts > 0
        self.sizes[size] = self.sizes.get(size, 0) + 1

    def to_dict(self) -> dict:
        total = max(int(self.pixels.sum()), 1)
        return {
            "images": self.images,
            "bad": [{"name": name, "error": error} for name, error in self.bad],
            "sizes": {f"{w}x{h}": n for (h, w), n in sorted(self.sizes.items())},
            "ignore_share": float(self.pixels[IGNORE_INDEX] / total),
            "ignore_images": int(self.images_with[IGNORE_INDEX]),
            "classes": {
                name: {"pixel_share": float(self.pixels[k] / total), "images": int(self.images_with[k])}
                for k, name in enumerate(self.class_names)
            },
        }


def as_is(item):
    return item  # keep the counts numpy, not tensors


def scan(split: Split, limit: int = 0, workers: int = 0, progress: bool = True) -> Report:
    """Read the first `limit` samples (0 = all) of `split` and count their classes."""
    count = min(c for c in (limit, split.length) if c) if limit or split.length else None
    if count is None:
        raise ValueError("the split is unbounded (SynthCity train): give --limit N")
    dataset = torch.utils.data.Subset(Counts(split), range(count))
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=as_is)
    report = Report(split.class_names, split.palette)
    for index, counts, shape, error in shown(loader, count, "check") if progress else loader:
        if error is None:
            report.add(counts, tuple(shape))
        else:
            report.bad.append((split.name(index), error))
    return report


def text(report: Report, title: str) -> str:
    stats = report.to_dict()
    sizes = ", ".join(f"{size} ({n})" for size, n in stats["sizes"].items()) or "none"
    lines = [f"{title}: {report.images} images read, {len(report.bad)} bad", f"sizes (WxH): {sizes}", ""]
    lines.append(f"{'id':>3}  {'class':<24} {'pixel share':>11} {'images with it':>16}")
    for k, (name, row) in enumerate(stats["classes"].items()):
        presence = f"{row['images']} ({100 * row['images'] / max(report.images, 1):.1f} %)"
        lines.append(f"{k:>3}  {name:<24} {100 * row['pixel_share']:>9.3f} % {presence:>16}")
    ignored = f"{stats['ignore_images']} ({100 * stats['ignore_images'] / max(report.images, 1):.1f} %)"
    lines.append(f"255  {'ignore':<24} {100 * stats['ignore_share']:>9.3f} % {ignored:>16}")
    absent = [name for name, row in stats["classes"].items() if row["images"] == 0]
    if absent:
        lines.append(f"\nclasses with no pixel in this split: {', '.join(absent)}")
    lines += [f"\nbad: {name}: {error}" for name, error in report.bad]
    return "\n".join(lines)


def plot(report: Report, path: Path, title: str) -> None:
    """Pixel share per class (log scale) with the share of images holding it beside each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = report.to_dict()["classes"]
    names = list(stats)
    shares = [100 * stats[name]["pixel_share"] for name in names]
    height = 1.2 + 0.22 * len(names)
    fig, ax = plt.subplots(figsize=(7, height))
    colours = [np.asarray(c) / 255 for c in report.palette]
    ax.barh(range(len(names)), [max(s, 1e-4) for s in shares], color=colours, edgecolor="#333", linewidth=0.5)
    for y, name in enumerate(names):
        presence = 100 * stats[name]["images"] / max(report.images, 1)
        ax.annotate(f"{presence:.0f} % of images", (max(shares[y], 1e-4), y), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=7)  # fmt: skip
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(right=max(shares + [1e-3]) * 12)  # room for the labels of the longest bars
    ax.set_xlabel("pixel share (%, log scale)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ann.check_data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--root", default="", help="dataset folder (not for synthcity)")
    p.add_argument("--split", default="val")
    p.add_argument("--limit", type=int, default=0, help="first N samples only (0 = all)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers reading files")
    p.add_argument("--synthcity-size", type=size, default=(1024, 512), help="WIDTHxHEIGHT")
    p.add_argument("--json", type=Path, help="write the statistics and bad files as JSON")
    p.add_argument("--plot", type=Path, help="write a PNG chart of the class shares")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.dataset != "synthcity" and not args.root:
        p.error(f"--root DIR is required for {args.dataset}")
    width, height = args.synthcity_size
    try:
        # synthcity_train_images=0: the train split is streamed, never rendered to a pool first
        data = DataConfig(args.dataset, args.root, synthcity_size=(height, width), synthcity_train_images=0)
        split = open_split(data, args.split)
        report = scan(split, args.limit, args.workers, not args.no_progress)
    except ValueError as error:  # ConfigError, DatasetError, ClassesError, an unknown split
        print(f"error: {error}", file=sys.stderr)
        return 2
    title = f"{args.dataset} {args.split}" + (f" ({args.root})" if args.root else "")
    print(text(report, title))
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=1))
    if args.plot:
        plot(report, args.plot, title)
    return 1 if report.bad else 0


if __name__ == "__main__":
    sys.exit(main())

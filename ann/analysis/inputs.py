"""The images an analysis of many images runs over, and how its progress is reported.

A labelled split is SynthCity rendered at the asked size (default: the checkpoint's training scale)
or a dataset folder read in the checkpoint's layout, its images shrunk to the longer side of that
size. Shared by the command-line analyses (ann.class_context, ann.nb_compare), which stay leaves.
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from ann.progress import progress as shown
from ann.training.data import check_classes, data_config, trained_scale

PROGRESS_EVERY = 10  # images between progress lines when stderr is not a terminal (logs, CI)


class NoLabelledSplit(ValueError):
    """A dataset folder without a labelled split of the asked name (no folder, no label maps)."""


def labelled_split(
    data: str,
    meta,
    checkpoint: Path,
    split: str = "test",
    limit: int = 0,
    size: tuple[int, int] | None = None,
    dataset: str | None = None,
) -> tuple[Iterator[tuple[np.ndarray, np.ndarray]], int]:
    """(image, label) pairs of the first `limit` images (0: all) of `data`, and how many there are.

    `data` is "synthcity" or a dataset folder (in `dataset`'s layout, default the checkpoint's);
    `checkpoint` only names the model in the error about a different class count.
    """
    from ann.training.data import open_split

    size = trained_scale(meta, size)
    config = data_config(data, meta, dataset, synthcity_size=size)
    try:
        opened = open_split(config, split)
    except ValueError as error:  # DatasetError, ClassesError: no such folder, no labels
        if data == "synthcity":
            raise
        where = f"{data} has no labelled {split} split in the {config.dataset} layout"
        raise NoLabelledSplit(f"{error}\n{where}") from error
    check_classes(checkpoint, list(meta.classes), list(opened.class_names), config.dataset, config.root)
    total = min(limit or opened.length, opened.length)
    if data == "synthcity":  # rendered at the size already
        return (opened.load(i) for i in range(total)), total
    return (shrunk(*opened.load(i), max(size)) for i in range(total)), total


def shrunk(image: np.ndarray, label: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """A dataset image with its longer side at most max_side, its label map resized to match (nearest)."""
    from ann.analysis.explore import resize_labels
    from ann.images import resize_max_side

    small = np.array(resize_max_side(Image.fromarray(image), max_side))
    return small, resize_labels(label, small.shape[:2])


def progress(pairs: Iterator, total: int, desc: str) -> Iterator:
    """A bar on a terminal; otherwise a line every PROGRESS_EVERY images (a log has no bar)."""
    return shown(pairs, total, desc, every=PROGRESS_EVERY)

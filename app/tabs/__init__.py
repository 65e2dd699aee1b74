"""The app's tabs, one module each (app/tab.py), and what the analysis tabs (class context, APNB
vs NB; docs/app_analysis.md) share: the SynthCity split the split analyses read, and a small
cache of their results. Their pictures are drawn by app/plots.py."""

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator

from app.errors import UserError
from app.session import processing_size

SPLITS = ("test", "val")  # SynthCity's labelled splits (train is an unbounded stream)


def split_size(meta, max_side: int | None = None) -> tuple[int, int]:
    """(H, W) SynthCity scenes are rendered at for a model: its training aspect (2:1 when unknown,
    ann.training.data.trained_scale) with the longer side at the app's processing size, so a split is
    read at the scale every uploaded image is."""
    from ann.training.data import trained_scale

    side = processing_size(meta, max_side)[0]
    H, W = trained_scale(meta)
    return round(H * side / max(H, W)), round(W * side / max(H, W))


def synthcity_split(meta, max_side: int | None, split: str, count: int) -> tuple[Iterator, int]:
    """(image, label) pairs of the first `count` scenes of a SynthCity split (the model's SynthCity
    city, ann.training.data.data_config) at `split_size`, and how many there are."""
    from ann.training.data import data_config, open_split

    if split not in SPLITS:
        raise UserError(f"unknown SynthCity split {split!r}; valid: {', '.join(SPLITS)}")
    opened = open_split(data_config("synthcity", meta, synthcity_size=split_size(meta, max_side)), split)
    if not 1 <= int(count) <= opened.length:
        raise UserError(f"count must be 1..{opened.length} (SynthCity {split} images), got {count}")
    return (opened.load(i) for i in range(int(count))), int(count)


def counted(pairs: Iterator, total: int, progress: Callable | None, desc: str) -> Iterator:
    """The pairs, reporting (done, total) images to a gr.Progress (None: the API, no bar)."""
    for done, pair in enumerate(pairs):
        if progress is not None:
            progress((done, total), desc=desc, unit="images")
        yield pair


class Recent:
    """The most recent results by key: a second view of the same data is instant."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, key: Hashable):
        with self._guard:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, value) -> None:
        with self._guard:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)

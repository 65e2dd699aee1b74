"""The first N SynthCity train images, rendered once into a memory-mapped file and reused.

Rendering a 1024x512 scene costs about 30 ms of one core, so a fast GPU training a small network
can outrun 16 cores rendering on the fly. A pool trades the unbounded stream for N fixed scenes
(each still cropped, scaled and flipped differently every time it is drawn). The file holds, for
image i, its RGB bytes then its label bytes; the bytes equal `render(seed, "train", i, size)`.
It is written under a temporary name and renamed when complete, under a file lock, so processes
of one run (or several runs on one machine) render it once and never read a partial file.
"""

import fcntl
import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import render

CHUNK = 16  # images per task: few enough tasks for a smooth progress bar, big enough to amortise


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ann" / "synthcity"


def code_version() -> str:
    """Digest of the renderer's source: a cache rendered by other SynthCity code is never read."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:10]


class TrainPool:
    """Picklable reader of a pool file: `pool(i)` -> (image uint8 (H, W, 3), label uint8 (H, W))."""

    def __init__(self, cache_dir: Path, seed: int, count: int, size_hw: tuple[int, int]) -> None:
        if count < 1:
            raise ValueError(f"a SynthCity pool needs at least 1 image, got {count}")
        self.seed, self.count, self.size_hw = seed, count, tuple(size_hw)
        height, width = self.size_hw
        name = f"synthcity_{code_version()}_s{seed}_train_{count}_{width}x{height}.u8"
        self.path = Path(cache_dir) / name
        self.image_bytes = height * width * 3
        self.record = self.image_bytes + height * width
        self._data: np.memmap | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_data": None}  # each worker maps the file itself

    def __call__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < self.count:
            raise IndexError(f"SynthCity pool index {index} out of range (0..{self.count - 1})")
        if self._data is None:
            self._data = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(self.count, self.record))
        height, width = self.size_hw
        row = self._data[index]
        image = np.array(row[: self.image_bytes]).reshape(height, width, 3)
        return image, np.array(row[self.image_bytes :]).reshape(height, width)

    def ensure(self, workers: int | None = None, progress: bool = True) -> Path:
        """Render the pool unless a complete file is there; safe to call from many processes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the first caller renders, the others wait here
            if self.path.exists() and self.path.stat().st_size == self.count * self.record:
                return self.path
            self._render_all(workers or os.cpu_count() or 1, progress)
        return self.path

    def _render_all(self, workers: int, progress: bool) -> None:
        partial = self.path.with_name(f"{self.path.name}.partial-{os.getpid()}")
        for stale in self.path.parent.glob(self.path.name + ".partial-*"):
            stale.unlink()  # left by a process killed while rendering (we hold the lock)
        try:
            np.memmap(partial, dtype=np.uint8, mode="w+", shape=(self.count, self.record)).flush()
            starts = range(0, self.count, CHUNK)
            bar = tqdm(total=self.count, desc="synthcity pool", unit="img", disable=not progress)
            with ProcessPoolExecutor(min(workers, len(starts))) as executor:
                jobs = [executor.submit(self._render_chunk, partial, start) for start in starts]
                for job in jobs:
                    bar.update(job.result())
            bar.close()
            partial.replace(self.path)
        finally:
            partial.unlink(missing_ok=True)

    def _render_chunk(self, partial: Path, start: int) -> int:
        data = np.memmap(partial, dtype=np.uint8, mode="r+", shape=(self.count, self.record))
        height, width = self.size_hw
        stop = min(start + CHUNK, self.count)
        for index in range(start, stop):
            image, label = render(self.seed, "train", index, (width, height))
            data[index, : self.image_bytes] = image.reshape(-1)
            data[index, self.image_bytes :] = label.reshape(-1)
        data.flush()
        return stop - start

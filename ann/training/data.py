"""Data of a run: a deterministic training stream and evaluation splits.

Training sample k of a run (k = iteration * global batch + rank * local batch + j) is fully
determined by (seed, k): which image (SynthCity renders image k of its unbounded train split; a
dataset folder is read in a fresh seeded permutation per epoch) and its augmentation (a numpy
Generator seeded with (seed, k)). So the batch of an iteration does not depend on workers, on
the number of processes that came before, or on whether the run was resumed.

A trained checkpoint is evaluated on the data it was trained on unless told otherwise (`data_config`).
"""

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.utils.data

from ann.data.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from ann.data.transforms import Normalize, ToTensor, train_transform
from ann.models.backbones import NORMALIZATIONS, input_normalization
from ann.training.config import ConfigError, DataConfig, RunConfig


def normalization(config: RunConfig) -> dict:
    """data.normalization; auto: the input the backbone's ImageNet weights expect."""
    name = config.data.normalization
    return input_normalization(config.model.backbone) if name == "auto" else dict(NORMALIZATIONS[name])


@dataclass
class Split:
    """Raw (image uint8 HxWx3 RGB, label uint8 HxW trainIds) by index; length None = unbounded."""

    load: Callable[[int], tuple[np.ndarray, np.ndarray]]
    length: int | None
    name: Callable[[int], str]
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]


class SynthCityImages:
    """Picklable loader of one SynthCity split (DataLoader workers receive a copy)."""

    def __init__(self, seed: int, split: str, size_hw: tuple[int, int]) -> None:
        self.seed, self.split, self.size_hw = seed, split, size_hw

    def __call__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        from ann.data.synthcity import render

        height, width = self.size_hw
        return render(self.seed, self.split, index, size=(width, height))

    def name(self, index: int) -> str:
        return f"synthcity_{self.seed}_{self.split}_{index:05d}"


def synthcity_pool(data: DataConfig):
    """The rendered pool of the first N train images (rendered here if not yet on disk)."""
    from ann.data.synthcity.pool import TrainPool, default_cache_dir

    cache = Path(data.cache_dir) if data.cache_dir else default_cache_dir()
    pool = TrainPool(cache, data.synthcity_seed, data.synthcity_train_images, data.synthcity_size)
    pool.ensure(workers=max(data.workers, 1))
    return pool


def open_split(data: DataConfig, split: str) -> Split:
    """The `split` of the configured data; a missing folder raises DatasetError naming it."""
    if data.dataset == "synthcity":
        from ann.data.synthcity import SPLITS

        if split not in SPLITS:
            raise ConfigError(f"unknown SynthCity split {split!r}; valid: {', '.join(SPLITS)}")
        images = SynthCityImages(data.synthcity_seed, split, data.synthcity_size)
        length = SPLITS[split]  # None: train is an unbounded stream
        load = images
        if split == "train" and data.synthcity_train_images:
            load, length = synthcity_pool(data), data.synthcity_train_images
        return Split(load, length, images.name, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE)
    from ann.data.datasets import build_dataset

    dataset = build_dataset(data.dataset, Path(data.root), split, None, skip_bad=data.skip_bad)
    return Split(
        dataset.__getitem__,
        len(dataset),
        dataset.names.__getitem__,
        tuple(dataset.class_names),
        tuple(dataset.layout.palette),
    )


def data_config(data: str, meta, dataset=None, synthcity_seed=None, synthcity_size=None):
    """The DataConfig of `--data`: SynthCity as the checkpoint was trained unless told (else city 0
    at trained_scale), or a dataset folder in the checkpoint's layout unless `dataset` is given."""
    trained = meta.provenance.get("data", {})
    if data == "synthcity":
        seed = synthcity_seed if synthcity_seed is not None else trained.get("synthcity_seed", 0)
        return DataConfig(synthcity_seed=seed, synthcity_size=trained_scale(meta, synthcity_size))
    dataset = dataset or trained.get("dataset", "cityscapes")
    return DataConfig(dataset="cityscapes" if dataset == "synthcity" else dataset, root=data)


def trained_scale(meta, size=None) -> tuple[int, int]:
    """(H, W): `size` if given, else the SynthCity size the checkpoint was trained at, else 512x1024."""
    return tuple(size or meta.provenance.get("data", {}).get("synthcity_size") or (512, 1024))


def check_classes(
    checkpoint: Path, trained: list[str], data_classes: list[str], dataset: str, root: str
) -> None:
    """A different class count is an error; the same count with other names only a warning (a
    converted checkpoint may spell them differently), since the ids may then mean other classes."""
    where = f"{root}/classes.txt names" if dataset == "folder" else f"{dataset} has"
    fix = "the checkpoint's classes.txt" if dataset == "folder" else "the right --dataset"
    if len(trained) != len(data_classes):
        raise ValueError(
            f"{checkpoint} predicts {len(trained)} classes but {where} {len(data_classes)}; use {fix}"
        )
    differ = [(k, a, b) for k, (a, b) in enumerate(zip(trained, data_classes, strict=True)) if a != b]
    if differ:
        k, a, b = differ[0]
        print(
            f"warning: {len(differ)} class names differ between {checkpoint} and the data, first id "
            f"{k}: {a!r} vs {b!r}; the IoU table uses the checkpoint's names",
            file=sys.stderr,
        )


class TrainStream(torch.utils.data.Dataset):
    """Item k = training sample k of the run, augmented with a generator seeded by (seed, k):
    (image uint8 (3, H, W) RGB, label uint8 (H, W))."""

    def __init__(self, split: Split, config: RunConfig) -> None:
        self.split = split
        self.seed = config.train.seed
        data = config.data
        # uint8 out: the loop normalises on the device (ann.inference.Normalization)
        self.transforms = train_transform(
            data.crop_size, normalization(config), data.scale_range, data.aspect_range, data.brightness,
            normalize=False,
        ).transforms  # fmt: skip
        self._epoch, self._order = -1, None

    def image_index(self, k: int) -> int:
        if self.split.length is None:
            return k
        epoch, position = divmod(k, self.split.length)
        if epoch != self._epoch:
            rng = np.random.default_rng([self.seed, epoch, 0x5EED])
            self._epoch, self._order = epoch, rng.permutation(self.split.length)
        return int(self._order[position])

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.split.load(self.image_index(k))
        rng = np.random.default_rng([self.seed, k])
        for transform in self.transforms:
            image, label = transform(image, label, rng)
        return image, label

    def __len__(self) -> int:
        return 2**62  # indices come from StepBatches, never from a length


def own_process_group(worker_id: int) -> None:
    """Loader workers leave a stop to their trainer. torchrun passes a SIGTERM on to each rank's
    process group (so does `kill -- -PGID`): a worker killed by it would fail the run before the
    step at which the rank checkpoints (StopRequest). In a group of its own it is not reached,
    while the loader's shutdown and multiprocessing's exit handler can still stop it (a worker
    ignoring SIGTERM instead hung its process at exit), and it exits when its trainer dies."""
    os.setpgid(0, 0)


class StepBatches(torch.utils.data.Sampler):
    """Batches of sample indices of iterations start..iterations-1 for one process (rank)."""

    def __init__(self, start: int, iterations: int, batch_size: int, rank: int, world: int) -> None:
        if batch_size % world:
            raise ConfigError(f"train.batch_size {batch_size} is not divisible by {world} processes")
        self.start, self.iterations = start, iterations
        self.global_batch, self.local = batch_size, batch_size // world
        self.rank = rank

    def __iter__(self):
        for iteration in range(self.start, self.iterations):
            first = iteration * self.global_batch + self.rank * self.local
            yield list(range(first, first + self.local))

    def __len__(self) -> int:
        return self.iterations - self.start


def resize_stages(config: RunConfig) -> list[tuple[int, RunConfig]]:
    """(end iteration, the run's config during that stage) for each stage of data.progressive, then
    the target scale: a low-resolution stage renders and crops `factor` times smaller."""
    data, loss, iterations = config.data, config.loss, config.train.iterations
    stages = []
    for until, factor in data.progressive:
        smaller = replace(data, crop_size=scaled(data.crop_size, factor), progressive=(),
                          synthcity_size=scaled(data.synthcity_size, factor))  # fmt: skip
        fewer = replace(loss, ohem_min_kept=round(loss.ohem_min_kept * factor**2))
        stages.append((round(until * iterations), replace(config, data=smaller, loss=fewer)))
    return stages + [(iterations, config)]


def scaled(size_hw: tuple[int, int], factor: float) -> tuple[int, int]:
    """A size `factor` times smaller, in multiples of 8 (whole 1/8 feature maps)."""
    return tuple(max(8, round(side * factor / 8) * 8) for side in size_hw)


def train_loader(
    split: Split, config: RunConfig, start: int, rank: int, world: int, pin: bool, end: int | None = None
):
    """Batches of iterations start..end-1 (end: train.iterations by default)."""
    end = config.train.iterations if end is None else end
    batches = StepBatches(start, end, config.train.batch_size, rank, world)
    workers = config.data.workers
    return torch.utils.data.DataLoader(
        TrainStream(split, config),
        batch_sampler=batches,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        worker_init_fn=own_process_group,
        # own generator: creating the iterator must not draw from the global torch RNG (resume)
        generator=torch.Generator().manual_seed(config.train.seed),
    )


class EvalItems(torch.utils.data.Dataset):
    """(normalised image (3,H,W), label int64 (H,W), image uint8 (H,W,3), index) of a split."""

    def __init__(self, split: Split, norm: dict, indices: list[int]) -> None:
        self.split, self.indices = split, indices
        self.normalize, self.to_tensor = Normalize(norm), ToTensor()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = self.indices[i]
        image, label = self.split.load(index)
        x, target = self.to_tensor(*self.normalize(image, label))
        return x, target, torch.from_numpy(np.array(image)), index


def eval_loader(split: Split, norm: dict, limit: int, rank: int, world: int, workers: int, pin: bool):
    """Batch-1 loader (images may differ in size) over this process's share of the split."""
    if split.length is None and not limit:  # SynthCity's train split: rendered without end
        raise ConfigError(
            "an unbounded split (SynthCity train) is evaluated on its first N images: --limit N"
        )
    total = limit if split.length is None else min(limit or split.length, split.length)
    dataset = EvalItems(split, norm, list(range(total))[rank::world])
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=1,
        num_workers=workers,
        pin_memory=pin,
        worker_init_fn=own_process_group,  # validation too may be under way at a stop
        generator=torch.Generator().manual_seed(0),
    )

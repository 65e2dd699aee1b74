"""A frozen backbone's features of a fixed set of SynthCity scenes, cached once (fp16 safetensors).

The head-only ablations (ann.training.heads, docs/cpu-training.md) train every Table 6 head on the
same cached Stage4/Stage5 features: the backbone, the heaviest part of a CPU step, runs once per
scene instead of once per step, and the variants differ only in their head.

A cache folder holds `<split>-<first>.safetensors` shards of SHARD scenes, each with the stages
CACHED_STAGES (fp16) and the label maps (uint8), and `cache.json` (the checkpoint's name and hash,
the scale). A stopped cache build keeps its finished shards and resumes after them.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ann.checkpoint import load, write_safetensors
from ann.inference import preprocess
from ann.progress import progress
from ann.training.data import data_config, open_split, trained_scale

# stages[3] (Stage4: AFNB's low-level input and the auxiliary head's) and stages[4] (Stage5)
CACHED_STAGES = (3, 4)
SHARD = 100  # scenes a file: a stopped build loses at most one shard's work
INFO = "cache.json"


class CacheError(ValueError):
    """A cache folder that is missing, incomplete, or built from another checkpoint."""


def build_cache(checkpoint: Path, out: Path, counts: dict[str, int], batch: int = 4) -> dict:
    """Run `checkpoint`'s backbone (eval mode) over the first counts[split] SynthCity scenes of each
    split at the checkpoint's training scale; write the shards not yet in `out`. Returns the info."""
    model = load(checkpoint)
    size = trained_scale(model.meta)
    info = {
        "checkpoint": checkpoint.name, "path": str(checkpoint.resolve()), "sha256": model.meta.sha256,
        "size_hw": list(size), "backbone": model.config.backbone, "output_stride": model.config.output_stride,
        "classes": list(model.meta.classes), "palette": model.meta.palette,
        "normalization": model.meta.normalization, "counts": counts, "shard": SHARD,
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    check_same_source(out, info)
    (out / INFO).write_text(json.dumps(info, indent=1))
    config = data_config("synthcity", model.meta, synthcity_size=size)
    for split, count in counts.items():
        opened = open_split(config, split)
        if opened.length is not None and count > opened.length:
            raise CacheError(f"SynthCity {split} has {opened.length} scenes, not {count}")
        todo = [first for first in range(0, count, SHARD) if not shard_path(out, split, first).exists()]
        for first in progress(todo, len(todo), f"{split}", unit="shards", every=1):
            scenes = range(first, min(first + SHARD, count))
            write_shard(model, [opened.load(i) for i in scenes], shard_path(out, split, first), batch)
    return info


def check_same_source(out: Path, info: dict) -> None:
    """Shards of another checkpoint or scale must not be mixed into this cache."""
    if not (out / INFO).exists():
        return
    old = json.loads((out / INFO).read_text())
    for key in ("sha256", "size_hw", "shard"):
        if old.get(key) != info[key]:
            raise CacheError(
                f"{out} caches {old.get('checkpoint')} at {old.get('size_hw')} in shards of "
                f"{old.get('shard')}; it cannot take {info['checkpoint']} at {info['size_hw']} in shards of "
                f"{info['shard']}: give another --out"
            )


def shard_path(out: Path, split: str, first: int) -> Path:
    return out / f"{split}-{first:05d}.safetensors"


@torch.no_grad()
def write_shard(model, pairs: list[tuple[np.ndarray, np.ndarray]], path: Path, batch: int) -> None:
    stages: dict[int, list[torch.Tensor]] = {s: [] for s in CACHED_STAGES}
    for start in range(0, len(pairs), batch):
        images = torch.cat(
            [preprocess(image, model.meta.normalization) for image, _ in pairs[start : start + batch]]
        )
        features = model.backbone(images)
        for s in CACHED_STAGES:
            stages[s].append(features[s].half())
    tensors = {f"stage{s}": torch.cat(stages[s]) for s in CACHED_STAGES}
    tensors["label"] = torch.from_numpy(np.stack([label for _, label in pairs]))
    partial = path.with_name(path.name + ".tmp")  # a shard exists whole or not at all
    write_safetensors(tensors, partial, {"scenes": str(len(pairs))})
    os.replace(partial, path)


@dataclass
class CachedSplit:
    """One split of a cache in memory: stages[s] (N, C, h, w) fp16, labels (N, H, W) uint8."""

    stages: dict[int, torch.Tensor]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: torch.Tensor) -> tuple[list[torch.Tensor | None], torch.Tensor]:
        """The head's input (a stage list with the cached entries in fp32) and int64 labels."""
        stages: list[torch.Tensor | None] = [None] * (max(CACHED_STAGES) + 1)
        for s, tensor in self.stages.items():
            stages[s] = tensor[indices].float()
        return stages, self.labels[indices].long()


def read_info(cache: Path) -> dict:
    if not (cache / INFO).is_file():
        raise CacheError(
            f"{cache}: no feature cache here (no {INFO}); build one with `python -m ann.heads cache`"
        )
    return json.loads((cache / INFO).read_text())


def open_cached(cache: Path, split: str) -> CachedSplit:
    """The whole cached `split`; refuses a cache whose build stopped before this split was done."""
    info = read_info(cache)
    count = info["counts"].get(split, 0)
    paths = [shard_path(cache, split, first) for first in range(0, count, info["shard"])]
    missing = [p.name for p in paths if not p.exists()]
    if not count or missing:
        raise CacheError(
            f"{cache}: the {split} split is not cached ({', '.join(missing[:3]) or 'no scenes'} missing); "
            "run the same `python -m ann.heads cache` command again to finish it"
        )
    shards = [load_file(str(p)) for p in paths]
    stages = {s: torch.cat([shard[f"stage{s}"] for shard in shards]) for s in CACHED_STAGES}
    return CachedSplit(stages, torch.cat([shard["label"] for shard in shards]))

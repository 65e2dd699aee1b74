"""APNB against NB on the same weights: the paper's efficiency claim (Sec. 3.2, Eq. 13) on an image.

A trained APNB attends over S sampled anchors (Eq. 8-10); the same weights with the identity
sampler, every position an anchor, are the non-local block of Eq. 1-4 (NB), and AFNB's are FNB
(Eq. 14-16). Both run on one image's cached backbone stages (`ann.analysis.explore.Explorer`), so only the
sampling differs.

The context vector compared is the attention output O (Eq. 4), O_P (Eq. 10), O_F (Eq. 16): the
attention-weighted sum of the values, C_v channels per query position, taken as the input of W_o,
before W_o projects it and the block concatenates it with its input (Eq. 11, 17). It is the part
of the block that sampling changes; everything after it is the same function of it. AFNB with
several fused stages (Table 9) has one O per stage; they are concatenated along channels.

Two sides: "sampled" runs each compared block with its sampling (by default the one it was
trained with), "nb" with every position as an anchor. The blocks switch together, so under "nb"
the context block's input already carries FNB's output; `blocks=("context",)` isolates APNB.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ann.analysis.context import attention_blocks, checked_label, plain
from ann.analysis.explore import Explorer, Result, per_class_iou
from ann.metrics import ConfusionMatrix
from ann.models.blocks import AsymmetricAttention
from ann.models.network import ANN
from ann.models.sampling import TABLE7, SamplingConfig, describe, misfit
from ann.timing import cpu_name, cpu_times

SIDES = ("sampled", "nb")
IDENTITY = SamplingConfig("identity")  # every position an anchor: NB (Eq. 1-4), FNB for AFNB
NB_OF = {"apnb": "nb", "afnb": "fnb"}


@dataclass
class Side:
    """One run of the head on cached stages with one sampling of the compared blocks."""

    result: Result
    contexts: dict[str, Tensor]  # block name -> O as a map, (1, C_v, h, w)
    gmacs: dict[str, float] = field(default_factory=dict)  # block name -> GMACs of its attention
    time: dict[str, float] = field(default_factory=dict)  # median head time: wall_ms, cpu_ms


@dataclass
class BlockComparison:
    """One block's context vectors under the two sides."""

    name: str  # "fusion" or "context"
    kind: str  # "afnb" or "apnb", as trained
    sampling: SamplingConfig  # of the "sampled" side
    cosine: np.ndarray  # (h, w) cosine similarity of O under the two sides, per query cell
    cosine_image: np.ndarray  # (H, W) upsampled as the logits are, for display
    gmacs: dict[str, float]  # side -> GMACs of the block's attention (Table 1 convention)

    def to_json(self) -> dict:
        return {
            "block": self.name,
            "kind": self.kind,
            "nb_kind": NB_OF[self.kind],
            "sampling": describe(self.sampling),
            "anchors": self.sampling.num_anchors,
            "positions": int(self.cosine.size),  # NB's S = N
            "cosine": summarise(self.cosine),
            "gmacs": dict(self.gmacs),
        }


@dataclass
class ImageComparison:
    """APNB/AFNB against NB/FNB on one image; maps at image size unless said otherwise."""

    blocks: dict[str, BlockComparison]  # by kind: "afnb", "apnb"
    labels: dict[str, np.ndarray]  # side -> (H, W) prediction
    iou: dict[str, np.ndarray] | None  # side -> (K,) per-class IoU (NaN: class absent); None without label
    time: dict[str, dict[str, float]]  # side -> median head time, wall_ms and cpu_ms
    classes: list[str]
    timed_on: str  # the CPU and thread count the times were taken with

    @property
    def changed(self) -> np.ndarray:
        """(H, W) bool: pixels whose class differs between the two sides."""
        return self.labels["sampled"] != self.labels["nb"]

    @property
    def changed_share(self) -> float:
        return float(self.changed.mean())

    @property
    def miou(self) -> dict[str, float] | None:
        """side -> mean IoU over the classes present in the label or either prediction."""
        if self.iou is None:
            return None
        return {side: float(np.nanmean(iou)) for side, iou in self.iou.items()}

    @property
    def miou_change(self) -> float | None:
        """mIoU of NB minus mIoU of the sampled blocks, on this image."""
        return None if self.miou is None else self.miou["nb"] - self.miou["sampled"]

    def to_json(self) -> dict:
        """Plain types only; the maps are summarised, NaN becomes None."""
        miou = self.miou
        return {
            "image_size": list(self.labels["sampled"].shape),
            "blocks": {kind: block.to_json() for kind, block in self.blocks.items()},
            "changed_pixels": int(self.changed.sum()),
            "changed_share": self.changed_share,
            "miou": miou,
            "miou_change": self.miou_change,
            "per_class_iou": None
            if self.iou is None
            else {side: dict(zip(self.classes, plain(iou), strict=True)) for side, iou in self.iou.items()},
            "head_time_ms": self.time,
            "timed_on": self.timed_on,
        }


def summarise(values: np.ndarray) -> dict[str, float]:
    flat = np.asarray(values, dtype=np.float64).ravel()
    return {
        "mean": float(flat.mean()),
        "min": float(flat.min()),
        "p05": float(np.percentile(flat, 5)),
        "median": float(np.median(flat)),
    }


# ---- one image ------------------------------------------------------------------------------------


def compared_blocks(model: ANN, blocks: Sequence[str] | None = None) -> dict[str, str]:
    """{"fusion": "afnb", "context": "apnb"} of the compared blocks; default: those that sample anchors."""
    switchable = model.switchable()
    if not switchable:
        config = model.config
        raise ValueError(
            f"this model has no APNB or AFNB (fusion {config.fusion}, context {config.context}); "
            "comparing with NB needs a block that samples anchors"
        )
    asked = attention_blocks(model, blocks)  # checks the names
    if blocks is None:
        return {name: kind for name, kind in asked.items() if name in switchable}
    trained_nb = [f"{name} is {kind.upper()}" for name, kind in asked.items() if name not in switchable]
    if trained_nb:
        raise ValueError(f"{', '.join(trained_nb)}: trained with every position as an anchor already")
    return asked


def compare_image(
    explorer_or_model: Explorer | ANN,
    image: np.ndarray | None = None,
    label: np.ndarray | None = None,
    sampling: SamplingConfig | None = None,
    blocks: Sequence[str] | None = None,
    repeats: int = 3,
) -> ImageComparison:
    """The compared blocks with `sampling` (None: each block's trained one) against every position.

    image: uint8 (H, W, 3) RGB, or None for the image an Explorer has run already; label: (H, W)
    class ids, 255 = ignore. An Explorer keeps its sampling and result; its backbone stages are
    those of `image` afterwards. Times are the median of `repeats` head runs on the CPU.
    """
    explorer = explorer_or_model if isinstance(explorer_or_model, Explorer) else Explorer(explorer_or_model)
    names = compared_blocks(explorer.model, blocks)
    if image is not None:
        explorer.run(image)
    if explorer.result is None:
        raise ValueError("no image given and none has been segmented yet")
    size = explorer.result.size
    truth = None if label is None else checked_label(label, size)
    reason = None if sampling is None else misfit(sampling, tuple(explorer.stages[4].shape[-2:]))
    if reason:  # the trained sampling is what the model runs with anyway, whatever the image's size
        raise ValueError(reason)
    sides = {"sampled": sampling, "nb": IDENTITY}
    ran = {side: run_side(explorer, names, config, repeats) for side, config in sides.items()}
    compared = {}
    for name, kind in names.items():
        cosine = cosine_map(ran["sampled"].contexts[name], ran["nb"].contexts[name])  # (1, 1, h, w)
        compared[kind] = BlockComparison(
            name=name,
            kind=kind,
            sampling=ran["sampled"].result.sampling[name],
            cosine=cosine[0, 0].numpy(),
            cosine_image=explorer.model.upsample(cosine, size)[0, 0].numpy(),
            gmacs={side: ran[side].gmacs[name] for side in SIDES},
        )
    classes = list(explorer.meta.classes)
    labels = {side: ran[side].result.labels for side in SIDES}
    iou = None
    if truth is not None:
        iou = {side: per_class_iou(labels[side], truth, len(classes)) for side in SIDES}
    threads = torch.get_num_threads()
    timed_on = f"CPU time on {cpu_name()}, {threads} thread{'s' * (threads > 1)}"
    return ImageComparison(compared, labels, iou, {s: ran[s].time for s in SIDES}, classes, timed_on)


def run_side(
    explorer: Explorer, names: dict[str, str], sampling: SamplingConfig | None, repeats: int = 0
) -> Side:
    """The head with `sampling` (None: trained) in the named blocks; the Explorer's own sampling and
    result are left as they were. GMACs and times only when `repeats` > 0."""
    saved, saved_result = dict(explorer.sampling), explorer.result
    on_model = explorer.model.samplings()  # code that calls the model directly sees no change
    try:
        with explorer.lock:
            with recorded_contexts(explorer.model, names) as contexts:
                result = explorer.set_sampling(sampling, tuple(names))
            side = Side(result, {name: torch.cat(found, dim=1) for name, found in contexts.items()})
            if repeats > 0:
                side.gmacs = {name: explorer.block_gmacs(name) for name in names}
                side.time = head_time(explorer, repeats)
        return side
    finally:
        explorer.sampling, explorer.result = saved, saved_result
        with explorer.lock:
            for name, config in on_model.items():
                explorer.model.set_sampling(config, blocks=(name,))


@contextmanager
def recorded_contexts(model: ANN, names: Iterable[str]) -> Iterator[dict[str, list[Tensor]]]:
    """O of each attention of the named blocks as the head computes it: the input of W_o, one
    (B, C_v, h, w) map per attention (AFNB: per fused stage). Hold the model's lock meanwhile."""
    found: dict[str, list[Tensor]] = {}
    handles = []
    for name in names:
        found[name] = []
        for attention in getattr(model, name).modules():
            if isinstance(attention, AsymmetricAttention):
                store = found[name].append
                handles.append(attention.W.register_forward_pre_hook(lambda _, args, s=store: s(args[0])))
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()


def cosine_map(a: Tensor, b: Tensor) -> Tensor:
    """(1, 1, h, w) cosine similarity over channels of two (1, C, h, w) maps. Computed in float64 so
    that identical vectors give exactly 1 (float32 gives 1 +- 1e-7 and a mean above 1 can show)."""
    return F.cosine_similarity(a.double(), b.double(), dim=1)[:, None].float()


@torch.no_grad()
def head_time(explorer: Explorer, repeats: int) -> dict[str, float]:
    """Median wall and process-CPU ms of the head (no attention recorded, no auxiliary head)."""
    with explorer.lock:
        explorer.apply_sampling()
        wall, cpu = cpu_times(lambda: explorer.model.head(explorer.stages, with_aux=False), repeats)
    return {"wall_ms": wall, "cpu_ms": cpu}


# ---- a split ----------------------------------------------------------------------------------------


@dataclass
class MethodRow:
    """One sampling of the compared blocks over a split; NB is the row with identity sampling."""

    sampling: SamplingConfig
    trained: bool  # the sampling the model was trained with
    miou: float  # over the split's one confusion matrix
    per_class_iou: np.ndarray  # (K,), NaN where a class is in neither truth nor prediction
    cosine: dict[str, float]  # kind -> mean cosine of its O to NB's O, over every query cell of every image
    changed_share: float  # share of the split's pixels whose class differs from NB's

    def to_json(self, classes: Sequence[str]) -> dict:
        return {
            "sampling": describe(self.sampling),
            "method": self.sampling.method,
            "sizes": list(self.sampling.sizes) if self.sampling.method != "identity" else None,
            "anchors": self.sampling.num_anchors,
            "trained": self.trained,
            "miou": None if math.isnan(self.miou) else self.miou,
            "per_class_iou": dict(zip(classes, plain(self.per_class_iou), strict=True)),
            "cosine_to_nb": dict(self.cosine),
            "changed_share_vs_nb": self.changed_share,
        }


@dataclass
class SplitComparison:
    """Table 7's samplings and NB at inference, on the same weights, over a split."""

    rows: list[MethodRow]  # the asked methods in order, the trained one, then NB (identity) last
    skipped: dict[str, str]  # description of a method -> why it could not run on these images
    classes: list[str]
    blocks: dict[str, str]  # compared blocks: name -> kind
    images: int

    @property
    def nb(self) -> MethodRow:
        return self.rows[-1]

    def row(self, sampling: SamplingConfig) -> MethodRow:
        for row in self.rows:
            if row.sampling == sampling:
                return row
        raise ValueError(
            f"no row {describe(sampling)}; rows: {', '.join(describe(r.sampling) for r in self.rows)}"
        )

    def to_json(self) -> dict:
        return {
            "images": self.images,
            "blocks": dict(self.blocks),
            "rows": [row.to_json(self.classes) for row in self.rows],
            "skipped": dict(self.skipped),
        }


class Tally:
    """One method's sums over a split, image by image."""

    def __init__(self, num_classes: int, names: Iterable[str]) -> None:
        self.matrix = ConfusionMatrix(num_classes)
        self.cosine = {name: 0.0 for name in names}  # float64 sums: NB's own row sums to exactly N
        self.cells = {name: 0 for name in names}
        self.changed = self.pixels = 0

    def add(self, side: Side, nb: Side, truth: np.ndarray) -> None:
        labels = side.result.labels
        self.matrix.update(
            torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(truth.astype(np.int64))
        )
        for name in self.cosine:
            cosine = cosine_map(side.contexts[name], nb.contexts[name])
            self.cosine[name] += float(cosine.double().sum())
            self.cells[name] += cosine.numel()
        self.changed += int((labels != nb.result.labels).sum())
        self.pixels += labels.size

    def row(self, sampling: SamplingConfig, trained: bool, kinds: dict[str, str]) -> MethodRow:
        return MethodRow(
            sampling=sampling,
            trained=trained,
            miou=self.matrix.miou(),
            per_class_iou=self.matrix.iou().numpy(),
            cosine={kinds[name]: total / self.cells[name] for name, total in self.cosine.items()},
            changed_share=self.changed / self.pixels,
        )


def compare_split(
    model: ANN,
    items: Iterable[tuple[np.ndarray, np.ndarray]],
    methods: Sequence[SamplingConfig] = TABLE7,
    limit: int | None = None,
    blocks: Sequence[str] | None = None,
) -> SplitComparison:
    """mIoU of each sampling of the compared blocks and of NB at inference, and how close each
    sampling's context vectors come to NB's, over the first `limit` (image, label) pairs.

    The trained sampling always has a row. Another method that does not fit an image's feature map
    (`misfit`: too few positions for random sampling, a grid finer than the map) is dropped from
    the whole comparison and listed in `skipped`, so every row covers the same images.
    """
    names = compared_blocks(model, blocks)
    explorer = Explorer(model)
    trained = model.config.sampling
    configs = [*(c for c in methods if c != IDENTITY), trained, IDENTITY]  # NB last; dict keeps the first
    tallies = {config: Tally(model.config.num_classes, names) for config in configs}
    skipped, images = {}, 0
    for image, label in items:
        if limit and images >= limit:
            break
        if label is None:
            raise ValueError("comparing mIoU needs a label map for every image; an image has none")
        explorer.run(image)
        truth = checked_label(label, explorer.result.size)
        feature_hw = tuple(explorer.stages[4].shape[-2:])
        for config in [c for c in tallies if c not in (trained, IDENTITY)]:
            reason = misfit(config, feature_hw)
            if reason:
                skipped[describe(config)] = reason
                del tallies[config]
        nb = run_side(explorer, names, IDENTITY)
        for config, tally in tallies.items():
            tally.add(nb if config == IDENTITY else run_side(explorer, names, config), nb, truth)
        images += 1
    if images == 0:
        raise ValueError("no image to compare")
    rows = [tally.row(config, config == trained, names) for config, tally in tallies.items()]
    return SplitComparison(rows, skipped, list(explorer.meta.classes), names, images)

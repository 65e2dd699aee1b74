"""Efficiency of paper Sec. 4.3.1: the GMACs a block or the network runs, counted from its ops,
and the benchmark rows of one block (Table 1) and the whole network (Table 2) that
`python -m ann.bench` prints and the app's Efficiency tab plots; the Explorer quotes `block_gmacs`.

Sizes are width x height, as the paper writes them (256x128 is the 1/8 feature map of a 2048x1024
image). What is counted, and how memory and time are measured (docs/benchmarks.md):
- GMACs: torch.utils.flop_counter.FlopCounterMode over the ops actually run, divided by 2 (it
  counts a multiply-accumulate of matmul/conv/attention as 2 FLOPs). It counts matmuls, convs and
  fused attention only; softmax, pooling, BN, ReLU, bias and additions are not counted, for every
  block alike. The paper's Table 1 figures are multiply-accumulates of this kind: NB at 96x96 is
  2 N^2 C^ (Eq. 2 and 4) + 3 N C C^ (the shared query/key conv, the value conv and W_o) = 58.0.
- Scope "attention" (default, the paper's Table 1): Eq. 1-10 plus W_o, i.e. the block up to the
  concatenation of Eq. 11 / 17, which costs nothing. Scope "block" adds the concatenation and the
  fusing conv-BN(-ReLU)-Dropout of our APNB/AFNB modules (2C -> C, 1x1).
- Peak memory: CUDA, max_memory_allocated during the timed runs minus what was allocated before
  (weights and inputs). CPU, the peak of bytes held by torch's CPU allocator during one profiled
  run (torch.profiler with profile_memory=True), minus what was held before; oneDNN scratch
  memory and allocator caching are not seen.
- Time: median of warm runs (random weights and inputs, never zeros); CUDA events around each
  run with synchronisation; CPU perf_counter.
"""

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ann.models.blocks import AFNB, APNB
from ann.models.network import build_network, variant
from ann.models.sampling import Sampler, SamplingConfig
from ann.timing import environment, measure_all

BLOCKS = ("nb", "nb_sdpa", "apnb", "fnb", "afnb")
SCOPES = ("attention", "block")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PYRAMID = SamplingConfig()  # the paper's pyramid average sampling, sizes (1, 3, 6, 8)
# Table 1 (Titan Xp, CUDA 9): (GFLOPs as printed, GPU memory MB, GPU time ms) per (block, W, H)
PAPER_TABLE1 = {
    ("nb", 96, 96): (58.0, 609, 19.5),
    ("apnb", 96, 96): (15.5, 150, 12.4),
    ("nb", 256, 128): (601.4, 7797, 179.4),
    ("apnb", 256, 128): (43.5, 277, 30.8),
}
# Table 2, "Ours": inference time s, memory MB, parameters M, for one 2048x1024 image
PAPER_TABLE2 = {"time_s": 0.611, "mem_mb": 3375, "params_m": 63.17}


# ---- counting --------------------------------------------------------------------------------


def cpu_flash_attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


# torch counts its CUDA fused-attention kernels but not the CPU flash kernel (NB with use_sdpa)
CPU_ATTENTION_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_flash_attention_flops}


def count_gmacs(module: nn.Module | Callable, *inputs) -> float:
    """Multiply-accumulates (1e9) of the matmuls/convs/attention one call actually runs."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    with counter, torch.no_grad():
        module(*inputs)
    return counter.get_total_flops() / 2e9  # FlopCounterMode: 1 MAC = 2 FLOPs


class BlockUnderTest(nn.Module):
    """One block of Table 1 called as the benchmark calls it: (high[, low]) -> Tensor."""

    def __init__(self, kind: str, block: APNB | AFNB, scope: str) -> None:
        super().__init__()
        self.kind, self.block, self.scope = kind, block, scope

    def forward(self, high: Tensor, low: Tensor | None = None) -> Tensor:
        if isinstance(self.block, APNB):
            if self.scope == "attention":
                return self.block.attention(high, high)[0]
            return self.block(high)[0]
        if self.scope == "attention":
            return self.block.attentions[0](high, low)[0]
        return self.block(high, [low])[0]


def make_block(
    kind: str,
    channels: int = 2048,
    key: int = 256,
    sampling: SamplingConfig = PYRAMID,
    low_channels: int | None = None,
    scope: str = "attention",
    value: int | None = None,
) -> BlockUnderTest:
    """NB/APNB on `channels`; FNB/AFNB with high = `channels`, low = `low_channels` (C/2: Stage4)."""
    if kind not in BLOCKS:
        raise ValueError(f"unknown block {kind!r}; valid: {', '.join(BLOCKS)}")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; valid: {', '.join(SCOPES)}")
    # NB and FNB are APNB and AFNB with every position as an anchor (blocks.py)
    sampler = Sampler(SamplingConfig("identity") if kind in ("nb", "nb_sdpa", "fnb") else sampling)
    if kind in ("nb", "nb_sdpa", "apnb"):
        block = APNB(channels, key, value or key, sampler)
        block.attention.use_sdpa = kind == "nb_sdpa"
    else:
        block = AFNB((low_channels or channels // 2,), channels, key, value or key, sampler)
    return BlockUnderTest(kind, block, scope).eval()


def block_inputs(
    module: BlockUnderTest, height: int, width: int, device="cpu", dtype=torch.float32, seed: int = 0
) -> tuple[Tensor, ...]:
    """Random (never zero) inputs of the right shapes for a block made by make_block."""
    generator = torch.Generator().manual_seed(seed)
    if isinstance(module.block, APNB):
        shapes = [module.block.attention.value.in_channels]
    else:
        attention = module.block.attentions[0]
        shapes = [attention.query[0].in_channels, attention.value.in_channels]
    return tuple(
        torch.randn(1, c, height, width, generator=generator).to(device, dtype)
        if device != "meta"
        # meta tensors have shapes only; used for counting without computing
        else torch.empty(1, c, height, width, device="meta", dtype=dtype)
        for c in shapes
    )


def block_gmacs(kind: str, height: int, width: int, *block_args, **block_kwargs) -> float:
    """GMACs of one block at a feature size, counted on meta tensors (instant, no memory); the
    block is `make_block(kind, *block_args, **block_kwargs)`."""
    with torch.device("meta"):
        module = make_block(kind, *block_args, **block_kwargs)
    return count_gmacs(module, *block_inputs(module, height, width, "meta"))


def nonzero_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Replace all-zero parameters (W_o starts at zero) by small noise: never time on zeros."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point() and not p.any():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.01)
    return module


# ---- Table 1: one block ----------------------------------------------------------------------


def bench_block(
    kind: str,
    width: int,
    height: int,
    device: str = "cpu",
    dtype: str = "fp32",
    repeats: int = 3,
    scope: str = "attention",
    channels: int = 2048,
    key: int = 256,
) -> dict:
    """One JSON row of Table 1 for `kind` at a width x height feature map (batch 1)."""
    gmacs = block_gmacs(kind, height, width, channels, key, scope=scope)
    module = nonzero_(make_block(kind, channels, key, scope=scope)).to(device, DTYPES[dtype])
    inputs = block_inputs(module, height, width, device, DTYPES[dtype])
    with torch.no_grad():
        stats = measure_all(lambda: module(*inputs), device, repeats)
    row = {
        "block": kind,
        "height": height,
        "width": width,
        "device": device,
        "dtype": dtype,
        "gmacs": round(gmacs, 3),
        **{k: round(v, 1) for k, v in stats.items()},
        "scope": scope,
        "channels": channels,
        "key_channels": key,
        "repeats": repeats,
    }
    paper = PAPER_TABLE1.get((kind, width, height))
    if paper and (channels, key) == (2048, 256):  # the paper's widths only: else not comparable
        row.update(paper_gflops=paper[0], paper_mem_mb=paper[1], paper_time_ms=paper[2])
    return row | environment(device)


def format_rows(rows: list[dict], columns: list[str]) -> str:
    """A plain text table; missing values print as '-'."""
    cells = [[str(row.get(c, "-")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


BLOCK_COLUMNS = [
    "block", "width", "height", "dtype", "gmacs", "peak_mem_mb", "time_ms",
    "cpu_time_ms", "paper_gflops", "paper_mem_mb", "paper_time_ms",
]  # fmt: skip


# ---- Table 2: the whole network --------------------------------------------------------------


def bench_network(
    name: str = "full",
    backbone: str = "resnet101",
    width: int = 2048,
    height: int = 1024,
    device: str = "cpu",
    dtype: str = "fp32",
    repeats: int = 3,
    aux: bool = True,
    num_classes: int = 19,
) -> dict:
    """Table 2's protocol: one width x height image, batch 1, eval mode, no grad."""
    config = variant(name, backbone=backbone, aux=aux, num_classes=num_classes, pretrained=False)
    model = nonzero_(build_network(config)).eval()
    params = sum(p.numel() for p in model.parameters())
    aux_params = sum(p.numel() for p in model.aux_head.parameters()) if model.aux_head is not None else 0
    with torch.device("meta"):
        meta_model = build_network(config).eval()
    gmacs = count_gmacs(meta_model, torch.empty(1, 3, height, width, device="meta"))
    model = model.to(device, DTYPES[dtype])
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    x = x.to(device, DTYPES[dtype])
    with torch.no_grad():
        stats = measure_all(lambda: model(x), device, repeats)
    row = {
        "variant": name,
        "backbone": backbone,
        "height": height,
        "width": width,
        "device": device,
        "dtype": dtype,
        "aux": aux,
        "gmacs": round(gmacs, 1),
        **{k: round(v, 1) for k, v in stats.items()},
        "params_m": round(params / 1e6, 3),
        "params_without_aux_m": round((params - aux_params) / 1e6, 3),
        "repeats": repeats,
    }
    return row | environment(device)


NETWORK_COLUMNS = [
    "variant", "backbone", "width", "height", "dtype", "gmacs", "peak_mem_mb", "time_ms",
    "cpu_time_ms", "params_m", "params_without_aux_m",
]  # fmt: skip

"""The model card written next to an exported checkpoint (markdown)."""

from pathlib import Path

from ann.training.config import RunConfig, to_toml
from ann.training.data import scaled
from ann.training.state import atomic_write


def model_card(
    config: RunConfig, provenance: dict, summary: dict | None, curve: str | None, test: dict | None = None
) -> str:
    model = config.model
    lines = [
        f"# {config.name}",
        "",
        config.description or "ANN segmentation network trained with `python -m ann.train`.",
        "",
        "| | |",
        "|---|---|",
        f"| network | backbone {model.backbone}, fusion {model.fusion}, context {model.context}, "
        f"sampling {model.sampling.method} {list(model.sampling.sizes)} |",
        f"| data | {config.data.dataset} {provenance['data'].get('root') or ''} |",
        f"| trained on | {trained_on(provenance)} |",
        f"| iterations | {provenance['iterations']} (batch {config.train.batch_size}) |",
        f"| seed | {config.train.seed} |",
        f"| wall time | {duration(provenance['wall_time_s'])} |",
        f"| device | {provenance['device']} x {provenance['world_size']}, torch {provenance['torch']} |",
        f"| git commit | {provenance['git_commit']} |",
        f"| reproduce | `{provenance.get('reproduce') or provenance['command']}` |",
        f"| command run | `{provenance['command']}` |",
        "",
    ]
    lines += metrics_section(summary, test, config)
    if curve:
        lines += ["## Training curve", "", f"![training curve]({curve})", ""]
    lines += ["## Config", "", "```toml", to_toml(config).rstrip(), "```", ""]
    return "\n".join(lines)


def data_text(data: dict) -> str:
    """The trainer's provenance["data"] in words (`ann info`, the app's model card)."""
    if data.get("dataset") != "synthcity":
        return f"{data.get('dataset')} ({data.get('root') or 'folder not recorded'})"
    H, W = data.get("synthcity_size") or (None, None)
    size = f", {W}x{H} images" if H else ""
    scenes = data.get("synthcity_train_images") or 0
    source = f"the first {scenes} train scenes, rendered once" if scenes else "an unbounded stream"
    return f"SynthCity city {data.get('synthcity_seed', 0)}{size}, {source}"


def trained_on(provenance: dict) -> str:
    """Where and at what scale the trainer ran, from a checkpoint's provenance alone (the card and
    the app say it alike): 'cpu (...), 2 threads at 1024x512 SynthCity images, 512x512 crops;
    iterations before 70% at 256x256; 14,000 images seen'."""
    data, world = provenance["data"], provenance.get("world_size", 1)
    device = provenance.get("device", "an unrecorded device")
    where = device if world == 1 else f"{world} processes on {device}"
    h, w = data.get("crop_size") or (0, 0)
    scale = f"{w}x{h} crops"
    if data.get("dataset") == "synthcity" and data.get("synthcity_size"):
        sh, sw = data["synthcity_size"]
        scale = f"{sw}x{sh} SynthCity images" + ("" if (sh, sw) == (h, w) else f", {scale}")
    for until, factor in data.get("progressive") or []:
        sh, sw = scaled((h, w), factor)
        scale += f"; iterations before {until:.0%} at {sw}x{sh}"
    seen = provenance.get("images_seen")
    return f"{where} at {scale}" + (f"; {seen:,} images seen" if seen is not None else "")


def metrics_section(summary: dict | None, test: dict | None, config: RunConfig) -> list[str]:
    """mIoU and per-class IoU on val (and test, side by side, when the run evaluated it)."""
    if not summary:
        return ["No validation was run.", ""]
    data, mode = config.data, config.train.val_mode
    results = [(data.val_split, summary)] + ([(data.test_split, test)] if test else [])
    limits = [data.val_limit, data.resolved_test_limit]
    same = not test or limits[0] == limits[1]
    subset = (
        f", first {data.val_limit} images of each split (data.val_limit)" if same and data.val_limit else ""
    )
    lines = [f"## Evaluation ({mode}, {data.dataset}{subset})", ""]
    lines += [f"- {name}: mIoU **{100 * r['miou']:.2f}**, pixel accuracy {100 * r['pixel_acc']:.2f}"
              + ("" if same else f" ({f'first {limit} images' if limit else 'whole split'})")
              for (name, r), limit in zip(results, limits, strict=False)]  # fmt: skip
    lines += ["", "| class | " + " | ".join(f"{name} IoU" for name, _ in results) + " |"]
    lines.append("|---" * (len(results) + 1) + "|")
    for cls in summary["per_class_iou"]:
        cells = [percent(r["per_class_iou"].get(cls)) for _, r in results]
        lines.append(f"| {cls} | " + " | ".join(cells) + " |")
    return lines + [""]


def percent(iou: float | None) -> str:
    return "n/a (absent)" if iou is None else f"{100 * iou:.2f}"


def duration(seconds: float) -> str:
    """A smoke run's 8 s read as "0.1 min" before; a GPU run's 7 minutes stay in minutes."""
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def write_card(path: Path, text: str) -> None:
    atomic_write(path, text.encode())  # whole or not at all; a full disk is named

"""The model card written next to an exported checkpoint (markdown)."""

from pathlib import Path

from ann.training.config import RunConfig, to_toml


def model_card(config: RunConfig, provenance: dict, summary: dict | None, curve: str | None) -> str:
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
        f"| iterations | {provenance['iterations']} (batch {config.train.batch_size}) |",
        f"| seed | {config.train.seed} |",
        f"| wall time | {provenance['wall_time_s'] / 60:.1f} min |",
        f"| device | {provenance['device']} x {provenance['world_size']}, torch {provenance['torch']} |",
        f"| git commit | {provenance['git_commit']} |",
        f"| command | `{provenance['command']}` |",
        "",
    ]
    lines += metrics_section(summary, config.train.val_mode)
    if curve:
        lines += ["## Training curve", "", f"![training curve]({curve})", ""]
    lines += ["## Config", "", "```toml", to_toml(config).rstrip(), "```", ""]
    return "\n".join(lines)


def metrics_section(summary: dict | None, mode: str) -> list[str]:
    if not summary:
        return ["No validation was run.", ""]
    lines = [
        f"## Validation ({mode})",
        "",
        f"mIoU **{100 * summary['miou']:.2f}**, pixel accuracy {100 * summary['pixel_acc']:.2f}",
        "",
        "| class | IoU |",
        "|---|---|",
    ]
    for name, iou in summary["per_class_iou"].items():
        lines.append(f"| {name} | {'n/a (absent)' if iou is None else f'{100 * iou:.2f}'} |")
    return lines + [""]


def write_card(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)

"""What a checkpoint is, read from its metadata and tensor header without loading the weights.

    python -m ann.info model.safetensors [more.safetensors ...] [--json]

Prints the network (Table 6 variant, backbone, AFNB/APNB sampling with its S anchors), parameter
counts per part, dtype, classes, input normalisation, and the provenance the trainer or the
converter wrote: iterations, device, val/test mIoU and the command that reproduces it.
"""

import argparse
import json
import sys
from pathlib import Path

from ann.checkpoint import CheckpointError, summary
from ann.models.sampling import SamplingConfig, describe
from ann.training.card import data_text


def subset(provenance: dict) -> str:
    limit = provenance.get("data", {}).get("val_limit", 0)
    return f" (first {limit} images of each split)" if limit else ""


def network_order(part: str) -> int:
    order = ("backbone", "fusion", "bottleneck", "context", "classifier", "aux_head")  # ANN.forward
    return order.index(part) if part in order else len(order)


def amount(count: int) -> str:
    return f"{count / 1e6:.2f} M" if count >= 100_000 else f"{count / 1e3:.1f} k"


def metric(table: dict) -> str:
    return f"{100 * table['miou']:.1f}" if table.get("miou") is not None else "-"


def format_summary(info: dict) -> str:
    config, provenance, params = info["config"], info["provenance"], info["parameters"]
    parts = ", ".join(f"{part} {amount(params[part])}" for part in sorted(params, key=network_order))
    fused = ", ".join(f"Stage{s}" for s in config["fuse_stages"])
    attention = (config["fusion"], config["context"]) != ("none", "none")
    classes = info["classes"]
    rows = [
        ("file", f"{info['file']} ({info['mib']} MiB, {'/'.join(info['dtypes'])})"),
        ("sha256", info["sha256"]),
        ("backbone", f"{config['backbone']}, output stride {config['output_stride']}"),
        ("fusion", "none" if config["fusion"] == "none" else f"{config['fusion']} ({fused} into Stage5)"),
        ("context", config["context"]),
        ("sampling", describe(SamplingConfig(**config["sampling"])) if attention else "-"),
        ("widths", "head {head_channels}, key {key_channels}, value {value_channels}".format(**config)),
        ("parameters", f"{amount(sum(params.values()))}: {parts}"),
        ("classes", f"{len(classes)}: {', '.join(classes[:6])}" + (", ..." if len(classes) > 6 else "")),
        ("input", json.dumps(info["normalization"])),
    ]
    return "\n".join(f"{key:<11} {value}" for key, value in rows + provenance_rows(provenance))


def provenance_rows(provenance: dict) -> list[tuple[str, str]]:
    if "iterations" not in provenance:  # not from the trainer (ann/training/export.py): converted
        return [("provenance", json.dumps(provenance)[:300])] if provenance else []
    p, data = provenance, provenance.get("data", {})
    trained = (
        f"{p['iterations']} iterations of batch {p.get('batch_size')} on {data_text(data)}, "
        f"seed {p.get('seed')}, {p.get('wall_time_s', 0) / 60:.1f} min on {p.get('device')}"
    )
    rows = [("protocol", f"{p['protocol']}, backbone of {p.get('backbone_from')}")] if "protocol" in p else []
    return rows + [
        ("trained", trained),
        ("software", f"torch {p.get('torch')}, commit {p.get('git_commit')}"),
        ("mIoU", f"val {metric(p.get('metrics', {}))}, test {metric(p.get('test_metrics', {}))}" + subset(p)),
        ("reproduce", p.get("reproduce", "")),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ann.info", description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--json", action="store_true", help="print one JSON object per checkpoint")
    args = p.parse_args(argv)
    status = 0
    for path in args.checkpoints:
        try:
            info = summary(path)
        except CheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            status = 2
            continue
        print(json.dumps(info) if args.json else format_summary(info) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Efficiency benchmarks of paper Sec. 4.3.1: one block (Table 1) and the whole network (Table 2).

    python -m ann.bench block --size 96x96 --size 256x128 --device cpu --dtype fp32 --json OUT
    python -m ann.bench network --variant full --backbone resnet101 --size 2048x1024 --device cpu

Sizes are width x height, as the paper writes them. What is counted and how time and memory are
measured: ann/analysis/efficiency.py and docs/benchmarks.md.
"""

import argparse
import json
from pathlib import Path

import torch

from ann.analysis.efficiency import (
    BLOCK_COLUMNS,
    BLOCKS,
    DTYPES,
    NETWORK_COLUMNS,
    SCOPES,
    bench_block,
    bench_network,
    format_rows,
)
from ann.cli.args import size, whole_number
from ann.models.backbones import BACKBONES
from ann.models.network import VARIANTS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ann.bench", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    block = sub.add_parser("block", help="Table 1: NB, APNB, FNB, AFNB on one feature map")
    block.add_argument("--size", type=size, action="append", help="WxH, repeatable (96x96, 256x128)")
    block.add_argument("--blocks", nargs="+", choices=BLOCKS, default=list(BLOCKS))
    block.add_argument("--scope", choices=SCOPES, default="attention")
    block.add_argument("--channels", type=whole_number(1), default=2048)
    block.add_argument("--key", type=whole_number(1), default=256)
    network = sub.add_parser("network", help="Table 2: the whole network on one image")
    network.add_argument("--variant", choices=tuple(VARIANTS), default="full")
    network.add_argument("--backbone", choices=tuple(BACKBONES), default="resnet101")
    network.add_argument("--size", type=size, default=(2048, 1024), help="WxH of the image")
    network.add_argument("--no-aux", action="store_true", help="build without the Stage4 aux head")
    for p in (block, network):
        p.add_argument("--device", default="cpu")
        p.add_argument("--dtype", choices=tuple(DTYPES), default="fp32")
        p.add_argument("--repeats", type=whole_number(1), help="timed runs (default 3 on CPU, 20 on CUDA)")
        p.add_argument("--threads", type=whole_number(1), help="CPU threads (torch.set_num_threads)")
        p.add_argument("--json", type=Path, help="write the rows here as a JSON list")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.json is not None and args.json.is_dir():
        raise SystemExit(f"--json {args.json}: is a folder; give a file name")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise SystemExit(f"--device {args.device}: not a device name (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here")
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (20 if device.type == "cuda" else 3)
    if args.command == "block":
        rows = []
        for width, height in args.size or [(96, 96), (256, 128)]:
            for kind in args.blocks:
                rows.append(
                    bench_block(
                        kind,
                        width,
                        height,
                        args.device,
                        args.dtype,
                        repeats,
                        args.scope,
                        args.channels,
                        args.key,
                    )  # fmt: skip
                )
                print(format_rows(rows[-1:], BLOCK_COLUMNS).splitlines()[-1], flush=True)
        columns = BLOCK_COLUMNS
    else:
        width, height = args.size
        rows = [
            bench_network(
                args.variant,
                args.backbone,
                width,
                height,
                args.device,
                args.dtype,
                repeats,
                aux=not args.no_aux,
            )  # fmt: skip
        ]
        columns = NETWORK_COLUMNS
    print(
        f"\n{args.command} benchmark on {args.device} ({rows[0]['device_name']}), torch {torch.__version__}"
    )
    print(format_rows(rows, columns))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

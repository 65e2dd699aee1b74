"""How far training moved a checkpoint's backbone, stage by stage (ann.analysis.similarity).

    python -m ann.stage_similarity model.safetensors [--other imagenet|initial|untrained|B.safetensors]
        [--split test] [--limit 20] [--size H,W] [--json out.json]

Linear CKA between the checkpoint's Stage1..Stage5 features and those of another network at the
same positions of the first --limit SynthCity scenes (at --size, default the checkpoint's
training scale). --other: `imagenet` (default), EfficientNet-Lite0 with its ImageNet weights at
the checkpoint's output stride (the paper's Fig. 7: the backbone before segmentation training);
`initial`, the checkpoint's backbone as its training began (rebuilt with the seed its provenance
records, as the trainer builds it; ImageNet weights where it started from them: how far training
moved it); `untrained`, the checkpoint's backbone freshly initialised (seed 1234, not a trainer's seed, so
not the run's own starting point: what CKA says of unrelated features); or another checkpoint
(e.g. the baseline beside the full ANN).
"""

import argparse
import json
import sys
from pathlib import Path

from ann.analysis.inputs import labelled_split, progress
from ann.analysis.similarity import OTHERS
from ann.cli.args import check_output, check_size, numbers, refused, unwritable, whole_number


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ann.stage_similarity", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument(
        "--other", default="imagenet", help=f"{', '.join(OTHERS)} (default imagenet), or a checkpoint file"
    )
    p.add_argument("--split", default="test", help="SynthCity split (default: test)")
    p.add_argument("--limit", type=whole_number(1), default=20, help="the first N scenes (default 20)")
    p.add_argument("--size", type=numbers, help="H,W (default: the checkpoint's training scale)")
    p.add_argument("--json", type=Path, help="write the numbers here")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    check_size(args.size)
    for path in (args.checkpoint, None if args.other in OTHERS else Path(args.other)):
        if path is not None and not path.is_file():
            raise ValueError(
                f"no such checkpoint: {path} (--other is {', '.join(OTHERS)} or a checkpoint file)"
            )
    check_output(args.json, "--json")


def alignment(args: argparse.Namespace) -> dict:
    from ann.analysis.similarity import comparison_backbone, stage_alignment, stage_pairs
    from ann.checkpoint import load

    model = load(args.checkpoint).eval()
    other = comparison_backbone(model, args.other)  # every network read before any scene
    pairs, total = labelled_split("synthcity", model.meta, args.checkpoint, args.split, args.limit, args.size)
    images = (image for image, _ in progress(pairs, total, "scenes"))
    return stage_alignment(stage_pairs(model, other, images))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_args(args)
        result = alignment(args)
    except (ValueError, OSError) as error:  # CheckpointError, bad sizes, no weights package
        return refused(error)
    print(f"{args.checkpoint.name} against {args.other}: linear CKA of the features at the same positions")
    print(f"{'map':<8} {'size':>9} {'channels':>9} {'positions':>10} {'CKA':>6}")
    for name, row in result.items():
        size = f"{row['size_hw'][1]}x{row['size_hw'][0]}"
        channels = f"{row['channels'][0]}/{row['channels'][1]}"
        print(f"{name:<8} {size:>9} {channels:>9} {row['positions']:>10} {row['cka']:>6.3f}")
    try:
        if args.json:
            record = {"checkpoint": str(args.checkpoint), "other": args.other, "split": args.split}
            args.json.write_text(json.dumps({**record, "limit": args.limit, "stages": result}, indent=1))
    except OSError as error:
        return unwritable(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())

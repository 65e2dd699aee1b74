"""Copy a finished training run into checkpoints/ under the name of what it is.

    python scripts/install_checkpoint.py runs/ann-r18-synthcity-cpu ann-r18-os16-synthcity-512x256

writes checkpoints/NAME.safetensors (the run's fp16 export), NAME.md (its card), NAME.json (the
card's facts: provenance and metrics) and NAME_curve.png. Refused, before anything is copied, if
the folder's weights would then exceed --budget-mb (100: what the project keeps in git).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run by path from anywhere
from ann.checkpoint import CheckpointError  # noqa: E402
from ann.training.export import MODEL_FILE, install  # noqa: E402


def weights_after(into: Path, run: Path, name: str) -> int:
    """Bytes of checkpoint weights in `into` once NAME.safetensors is the run's (it may replace one)."""
    others = [p for p in into.glob("*.safetensors") if p.name != f"{name}.safetensors"]
    return sum(p.stat().st_size for p in others) + (run / MODEL_FILE).stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a run folder the trainer finished")
    parser.add_argument("name", help="file name without .safetensors: backbone, output stride, data, scale")
    parser.add_argument("--into", type=Path, default=Path("checkpoints"))
    parser.add_argument("--budget-mb", type=float, default=100.0, help="the most weights --into may hold")
    args = parser.parse_args(argv)
    missing = [f for f in (MODEL_FILE, "model_card.md") if not (args.run / f).is_file()]
    if missing:
        print(f"error: {args.run} has no {', '.join(missing)}: not a finished run", file=sys.stderr)
        return 2
    name = args.name.removesuffix(".safetensors")
    total = weights_after(args.into, args.run, name) / 1e6
    if total > args.budget_mb:
        print(
            f"error: {args.into} would hold {total:.1f} MB of weights, over its {args.budget_mb:g} MB "
            "budget: nothing installed (remove a checkpoint, or ship this one's metrics only)",
            file=sys.stderr,
        )
        return 2
    try:
        print(
            "installed",
            install(args.run, args.into / f"{name}.safetensors"),
            f"({total:.1f} MB of weights there)",
        )
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

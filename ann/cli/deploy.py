"""Export a checkpoint to ONNX, checked against PyTorch with onnxruntime.

    python -m ann.deploy model.safetensors --onnx model.onnx --size 1024x512 [--batch 1] [--no-check]

The input size is fixed at export (ann/deployment.py says why): export once per resolution.
"""

import argparse
import json
import sys
from pathlib import Path

from ann.checkpoint import load
from ann.cli.args import check_output, size, whole_number
from ann.deployment import MIN_AGREEMENT, check, export


def export_size(text: str) -> tuple[int, int]:
    width, height = size(text)
    if width < 32 or height < 32:
        raise argparse.ArgumentTypeError(f"{text}: at least 32x32 (the backbone's stride is 8 or more)")
    return width, height


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ann.deploy", description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--onnx", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--size", type=export_size, default=(1024, 512), help="WIDTHxHEIGHT of the input (fixed)")
    p.add_argument("--batch", type=whole_number(1), default=1)
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    args = p.parse_args(argv)
    try:
        check_output(args.onnx, "--onnx")  # before the export's minutes of work
        model = load(args.checkpoint)
        args.onnx.parent.mkdir(parents=True, exist_ok=True)
        export(model, args.onnx, args.size, args.batch)
        print(f"wrote {args.onnx} ({args.onnx.stat().st_size / 2**20:.1f} MiB)")
        if not args.no_check:
            result = check(model, args.onnx)
            print(f"onnxruntime vs PyTorch: {json.dumps(result)}")
            if result["argmax_agreement"] < MIN_AGREEMENT:
                args.onnx.unlink()
                raise RuntimeError(f"the exported graph disagrees with PyTorch ({result}); file removed")
    except (ValueError, OSError, RuntimeError) as error:  # CheckpointError, a missing package
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Convert the authors' released checkpoints (openseg.pytorch's ANN) into our checkpoint format.

    python -m ann.convert --from original IN.pth --out OUT.safetensors [--dtype fp32|fp16]

How their names map onto ours and what is refused: ann/conversion.py and docs/convert.md.
"""

import argparse
from pathlib import Path

import torch

from ann.checkpoint import CheckpointError
from ann.conversion import ORIGINAL_NORMALIZATION, convert


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ann.convert", description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="layout", choices=("original",), required=True,
                        help="layout of the source checkpoint (original: the authors' release)")  # fmt: skip
    parser.add_argument("source", type=Path, help="their .pth file")
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    parser.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32")
    args = parser.parse_args(argv)
    dtype = {"fp32": torch.float32, "fp16": torch.float16}[args.dtype]
    try:
        out = convert(args.source, args.out, dtype)
    except CheckpointError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"wrote {out} ({args.dtype}); input convention: {ORIGINAL_NORMALIZATION}, align_corners=True")


if __name__ == "__main__":
    main()

"""Training samples per second of one core: rendering + augmentation, and from the pool.

    OMP_NUM_THREADS=1 python scripts/bench_loader.py [--config ann-r18-synthcity] [--count 60]

One process, no DataLoader workers: the per-core rate that DataLoader workers multiply. The
pooled rate reads scenes from a pool file of --count images rendered first (not timed).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install
from ann.training.config import load_config
from ann.training.data import TrainStream, open_split


def rate(config, count: int) -> float:
    stream = TrainStream(open_split(config.data, "train"), config)
    stream[0]  # texture banks, imports
    start = time.perf_counter()
    for k in range(1, count + 1):
        stream[k]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="ann-r18-synthcity")
    parser.add_argument("--count", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    streaming = load_config(args.config, ["data.synthcity_train_images=0"])
    print(f"streaming (render + augment): {rate(streaming, args.count):.1f} samples/s per core")
    with tempfile.TemporaryDirectory() as cache:
        pooled = load_config(
            args.config, [f"data.synthcity_train_images={args.count + 1}", f"data.cache_dir={cache}"]
        )
        print(f"pooled (augment only):        {rate(pooled, args.count):.1f} samples/s per core")


if __name__ == "__main__":
    main()

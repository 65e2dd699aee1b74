"""Start the ANN explorer: python app.py [--checkpoint FILE] [--host 127.0.0.1] [--port 7860]."""

import argparse
import ctypes
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--checkpoint",
        help="checkpoint to open (default: checkpoints/ann-r18-synthcity.safetensors, else the first "
        "in checkpoints/, else an untrained model)",
    )
    parser.add_argument("--checkpoints", default="checkpoints", help="folder listed in the checkpoint menu")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--max-side",
        type=int,
        default=1024,
        help="longer image side processed, pixels (768: faster on a busy CPU)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    return parser.parse_args(argv)


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each of gradio's worker threads its own malloc arena, so the server's memory
    grows with concurrent users (+42% over a 16-client load test, docs/reliability.md); two
    arenas keep it near its warm level."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # -8 = M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    limit_malloc_arenas()
    import torch

    from app.layout import build_demo, launch_options, warm_up
    from app.session import ModelStore

    if args.threads:
        torch.set_num_threads(args.threads)
    store = ModelStore(args.checkpoints)
    default = store.add_file(args.checkpoint, uploaded=False) if args.checkpoint else store.default()
    demo = build_demo(store, default, max_side=args.max_side)
    warm_up(store, default)
    demo.queue(default_concurrency_limit=1).launch(**launch_options(args.host, args.port))


if __name__ == "__main__":
    main()

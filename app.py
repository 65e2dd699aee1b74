"""Start the ANN explorer: python app.py [--checkpoint FILE] [--host 127.0.0.1] [--port 7860] [--mcp]."""

import argparse
import ctypes
import logging
import os
import warnings

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--checkpoint",
        help="checkpoint to open (default: the full ANN (AFNB + APNB) in --checkpoints, by its metadata; "
        "else the first file there; else an untrained network)",
    )
    parser.add_argument("--checkpoints", default="checkpoints", help="folder listed in the checkpoint menu")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--max-side",
        type=int,
        default=None,
        help="longer image side processed, pixels, for every model (default: each model's training "
        "scale, from its card; 1024 for a model that records none)",
    )
    parser.add_argument(
        "--mcp", action="store_true", help="also serve the API as MCP tools at /gradio_api/mcp/"
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


def log_to_stderr() -> None:
    """The app's own log (one line per refused input, app/errors.py) on stderr, beside gradio's."""
    logger = logging.getLogger("app")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.max_side is not None and args.max_side <= 0:
        raise SystemExit(f"error: --max-side {args.max_side}: give a positive number of pixels")
    limit_malloc_arenas()
    log_to_stderr()
    import torch

    from app.layout import build_demo, launch_options, warm_up
    from app.session import ModelStore

    if args.threads:
        torch.set_num_threads(args.threads)
    store = ModelStore(args.checkpoints)
    default = store.add_file(args.checkpoint, uploaded=False) if args.checkpoint else store.default()
    demo = build_demo(store, default, max_side=args.max_side)
    warm_up(store, default)
    # gradio warns that the tabs' endpoints take a gr.State, which MCP calls leave empty: known
    # and documented (docs/app.md, MCP); the API's own tools are stateless and take a handle
    warnings.filterwarnings("ignore", message="This MCP server includes a tool that has a gr.State input")
    demo.queue(default_concurrency_limit=1).launch(**launch_options(args.host, args.port, args.mcp))


if __name__ == "__main__":
    main()

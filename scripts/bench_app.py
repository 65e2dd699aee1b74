"""Speed of the app's three interactive paths on this machine (numbers for docs/benchmarks.md).

    python scripts/bench_app.py [--checkpoints DIR] [--size 1024x512] [--max-side 1024] [--repeats 7]
    python scripts/bench_app.py --client   # also end to end through gradio_client on a launched app

Server time = the handler functions the endpoints call (model work, drawing, charts), median of
warm runs; the default model is the bundled checkpoint, else the untrained full ResNet-18 ANN
(same architecture, same cost). Budgets: segment 1.5 s, click -> attention 0.1 s, sampling 0.5 s.
"""

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install

from ann.data.synthcity import render  # noqa: E402
from app import attention, sampling, segment  # noqa: E402
from app.session import ModelStore  # noqa: E402

BUDGETS = {"segment": 1.5, "attention": 0.1, "set_sampling": 0.5}


def median_time(fn, repeats: int) -> tuple[float, float]:
    """(median, min) seconds of warm calls; the min shows the machine when others leave it alone."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def jpeg_bytes(array: np.ndarray) -> int:
    """What gradio adds per image output: one JPEG encode, as the app sends (counted in the click path)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return len(buffer.getvalue())


def server_times(store: ModelStore, name: str, image_path: str, repeats: int, max_side: int) -> dict:
    session = store.session(name)
    view = (0.55, False, [])

    def run_segment():
        segment.segment(session, image_path, None, name, *view, store=store, max_side=max_side)

    def click():
        H, W = session.image.shape[:2]
        _, panels, chart, *_ = attention.attention(session, W * 0.3, H * 0.6, "apnb")
        jpeg_bytes(panels)
        chart.to_json()

    sizes = iter(["1,2,3,6", "1,3,6,8"] * (repeats + 1))

    def switch():
        sampling.set_sampling(session, "pyramid_average", next(sizes), 0, *view)

    out = {"segment": median_time(run_segment, repeats)}
    out["attention"] = median_time(click, repeats)
    out["set_sampling"] = median_time(switch, repeats)
    out["image_hw"] = session.image.shape[:2]
    return out


def client_times(store_dir: str, image_path: str, repeats: int, max_side: int, port: int = 7869) -> dict:
    """End to end over loopback: the app in a subprocess, gradio_client calls (includes encoding)."""
    import subprocess
    import sys

    from gradio_client import Client, handle_file

    command = [
        sys.executable,
        "app.py",
        "--checkpoints",
        store_dir,
        "--port",
        str(port),
        "--max-side",
        str(max_side),
    ]
    server = subprocess.Popen(command)
    try:
        client = None
        for _ in range(120):
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # not up yet
                time.sleep(1)
        out = {}
        seg = lambda: client.predict(handle_file(image_path), api_name="/segment")  # noqa: E731
        out["segment"] = median_time(seg, repeats)
        out["attention"] = median_time(lambda: client.predict(300, 300, api_name="/attention"), repeats)
        sizes = iter(["1,2,3,6", "1,3,6,8"] * (repeats + 1))
        switch = lambda: client.predict("pyramid_average", next(sizes), api_name="/set_sampling")  # noqa: E731
        out["set_sampling"] = median_time(switch, repeats)
        return out
    finally:
        server.terminate()
        server.wait(timeout=30)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--size", default="1024x512", help="W x H of the test image (SynthCity test scene)")
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--client", action="store_true", help="also time the endpoints through gradio_client")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    W, H = (int(v) for v in args.size.lower().split("x"))
    image, _ = render(0, "test", 0, size=(W, H))
    path = "/tmp/bench_app_image.png"
    Image.fromarray(image).save(path)
    store = ModelStore(args.checkpoints)
    name = store.default()
    print(f"model: {name}; torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, CPU")
    times = server_times(store, name, path, args.repeats, args.max_side)
    print(f"processed image {times.pop('image_hw')} (H, W); {args.repeats} warm runs; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print("  server time    median      min    budget")
    for key, (median, best) in times.items():
        print(f"  {key:<13} {median * 1000:7.0f} {best * 1000:8.0f} {BUDGETS[key] * 1000:8.0f} ms")
    if args.client:
        print("  end to end over loopback (gradio_client: upload, queue, encoding)")
        for key, (median, best) in client_times(args.checkpoints, path, args.repeats, args.max_side).items():
            print(f"  {key:<13} {median * 1000:7.0f} {best * 1000:8.0f} {BUDGETS[key] * 1000:8.0f} ms")
    return times


if __name__ == "__main__":
    main()

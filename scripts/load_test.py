"""Load test of the app on loopback (issue 7): N gradio_client clients, each segmenting its own image
and querying attention for a fixed time, against `python app.py` started as a separate process.

    python scripts/load_test.py [--clients 16] [--duration 60] [--size 256x128] [--max-side 256]
                                [--checkpoints checkpoints] [--threads N] [--url http://127.0.0.1:PORT/]

Prints throughput, p50/p95/max latency per endpoint (client side: queue wait included), errors,
the cross-talk check and the server's memory (VmRSS of its process) after warm-up and at the end.
Client i's image is `client<i>.png` of width base + 16 i: every segment summary must name that
file and size, and every attention summary the feature grid of that width, or it is cross-talk.
Loops are bounded by --duration and --max-requests; only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
RESEGMENT_EVERY = 5  # one segment per 5 requests: the rest are attention clicks
WARM_UP_REQUESTS = 2 * RESEGMENT_EVERY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, args: list[str], log: Path) -> subprocess.Popen:
    """`python app.py` on 127.0.0.1:port, its output in `log`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "GRADIO_ANALYTICS_ENABLED": "False"}
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, str(REPO / "app.py"), "--port", str(port), *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_ready(url: str, process: subprocess.Popen | None, timeout: float = 180) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the app exited with code {process.returncode} before serving")
        try:
            with urllib.request.urlopen(url + "config", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the app did not answer at {url} within {timeout:.0f} s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def client_image(folder: Path, index: int, size: tuple[int, int]) -> Path:
    """Client `index`'s own image: width grows by 16 px per client, content seeded by the index."""
    width, height = size[0] + 16 * index, size[1]
    rng = np.random.default_rng(index)
    image = (rng.random((height, width, 3)) * 90).astype(np.uint8)
    image[height // 2 :] += 150  # a bright lower half: the features vary
    path = folder / f"client{index:02d}.png"
    Image.fromarray(image).save(path)
    return path


@dataclass
class ClientResult:
    index: int
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"segment": [], "attention": []})
    errors: list[str] = field(default_factory=list)
    crosstalk: list[str] = field(default_factory=list)
    grid: str = ""  # "hxw" feature grid of its image, from its first attention answer


def run_client(
    index: int, url: str, image: Path, barriers: tuple, deadline: list[float], max_requests: int
) -> ClientResult:
    """Segment, one click, wait for every client to be warm, then load until deadline[0]."""
    from gradio_client import Client, handle_file

    result = ClientResult(index)
    client = Client(url, verbose=False)
    width, height = Image.open(image).size
    rng = np.random.default_rng(1000 + index)

    def call(endpoint: str, *args):
        begin = time.perf_counter()
        try:
            out = client.predict(*args, api_name=f"/{endpoint}")
        except Exception as error:  # every failure is counted and reported, none stops the test
            result.errors.append(f"client {index} {endpoint}: {type(error).__name__}: {error}"[:300])
            return None
        result.latencies[endpoint].append(time.perf_counter() - begin)
        return out

    def segment() -> None:
        out = call("segment", handle_file(str(image)))
        if out is not None:
            summary = out[1]["text"]  # (overlay, summary): the Segment tab's summary text
            if f"{image.name}: {width}x{height} px" not in summary:
                result.crosstalk.append(f"client {index} segment: {summary[:120]!r}")

    def attention() -> None:
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        out = call("attention", x, y, "apnb")
        if out is None:
            return
        summary = out[1]["text"]
        found = re.search(
            rf"pixel \(x={x}, y={y}\) = feature cell \(row \d+, col \d+\) of (\d+x\d+)", summary
        )
        if found is None or (result.grid and found.group(1) != result.grid):
            result.crosstalk.append(f"client {index} attention at ({x}, {y}): {summary[:160]!r}")
        elif not result.grid:
            result.grid = found.group(1)

    def step(n: int) -> None:
        segment() if n % RESEGMENT_EVERY == 0 else attention()

    for n in range(WARM_UP_REQUESTS):  # counted like the rest; the memory baseline comes after
        step(n)
    warm, start = barriers
    warm.wait()  # every client has done its warm-up: sessions, caches and worker threads exist
    result.latencies = {endpoint: [] for endpoint in result.latencies}  # measure the load phase only
    start.wait()  # the main thread has read the memory and set the deadline
    n = WARM_UP_REQUESTS
    while time.monotonic() < deadline[0] and n < max_requests:
        step(n)
        n += 1
    return result


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarise(results: list[ClientResult], elapsed: float, rss: dict) -> dict:
    report = {"clients": len(results), "duration_s": round(elapsed, 1), "endpoints": {}}
    total = 0
    for endpoint in ("segment", "attention"):
        times = [t for r in results for t in r.latencies[endpoint]]
        total += len(times)
        report["endpoints"][endpoint] = {
            "requests": len(times),
            "p50_s": round(percentile(times, 50), 3),
            "p95_s": round(percentile(times, 95), 3),
            "max_s": round(max(times, default=float("nan")), 3),
        }
    grids = [r.grid for r in results]
    report.update(
        requests=total,
        throughput_rps=round(total / elapsed, 2),
        errors=[e for r in results for e in r.errors],
        crosstalk=[c for r in results for c in r.crosstalk],
        distinct_grids=len(set(grids)) == len(grids),
        rss_warm_mb=round(rss["warm"], 1),
        rss_end_mb=round(rss["end"], 1),
        rss_growth=round(rss["end"] / rss["warm"] - 1, 3),
    )
    return report


def run(
    clients: int,
    duration: float,
    url: str,
    pid: int | None,
    size: tuple[int, int],
    folder: Path,
    max_requests: int,
) -> dict:
    images = [client_image(folder, i, size) for i in range(clients)]
    barriers = (threading.Barrier(clients + 1), threading.Barrier(clients + 1))
    deadline = [float("inf")]
    results: list[ClientResult | None] = [None] * clients

    def work(i: int) -> None:
        results[i] = run_client(i, url, images[i], barriers, deadline, max_requests)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    barriers[0].wait(timeout=600)
    rss = {"warm": rss_mb(pid) if pid else float("nan")}
    began = time.monotonic()
    deadline[0] = began + duration
    barriers[1].wait(timeout=60)
    for thread in threads:
        thread.join(timeout=duration + 600)
    elapsed = time.monotonic() - began
    rss["end"] = rss_mb(pid) if pid else float("nan")
    return summarise([r for r in results if r is not None], elapsed, rss)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load after warm-up")
    p.add_argument("--max-requests", type=int, default=10_000, help="per client, a bound on the loop")
    p.add_argument("--size", default="256x128", help="WxH of client 0's image (others are wider)")
    p.add_argument("--max-side", type=int, default=512, help="passed to app.py")
    p.add_argument("--checkpoints", default=str(REPO / "checkpoints"), help="passed to app.py")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the server")
    p.add_argument("--url", help="test a running app (its max side must fit the images; no memory figures)")
    p.add_argument("--json", type=Path, help="also write the report here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    widest = size[0] + 16 * (args.clients - 1)
    if max(widest, size[1]) > args.max_side:
        raise SystemExit(f"error: client images up to {widest}x{size[1]} px would be resized by "
                         f"--max-side {args.max_side}; raise it or choose a smaller --size")  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="ann-load-"))
    process = None
    url = args.url
    if url is None:
        port = free_port()
        server_args = ["--checkpoints", args.checkpoints, "--max-side", str(args.max_side)]
        if args.threads:
            server_args += ["--threads", str(args.threads)]
        process = start_server(port, server_args, folder / "server.log")
        url = f"http://127.0.0.1:{port}/"
    try:
        wait_ready(url, process)
        report = run(
            args.clients, args.duration, url, process and process.pid, size, folder, args.max_requests
        )
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


def print_report(report: dict) -> None:
    print(f"{report['clients']} clients, {report['duration_s']} s: {report['requests']} requests, "
          f"{report['throughput_rps']} requests/s")  # fmt: skip
    for endpoint, stats in report["endpoints"].items():
        print(f"  {endpoint:<10} {stats['requests']:>6} requests  p50 {stats['p50_s']:.3f} s  "
              f"p95 {stats['p95_s']:.3f} s  max {stats['max_s']:.3f} s")  # fmt: skip
    print(f"errors: {len(report['errors'])}  cross-talk: {len(report['crosstalk'])}  "
          f"distinct feature grids per client: {report['distinct_grids']}")  # fmt: skip
    for line in (report["errors"] + report["crosstalk"])[:10]:
        print("  " + line)
    print(f"server VmRSS: {report['rss_warm_mb']} MB after warm-up, {report['rss_end_mb']} MB at the end "
          f"({100 * report['rss_growth']:+.1f} %)")  # fmt: skip


if __name__ == "__main__":
    main()

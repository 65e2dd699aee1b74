"""How the benchmarks measure (paper Sec. 4.3.1 protocol, docs/benchmarks.md): median time of
warm runs (CUDA events with synchronisation; CPU perf_counter and process time) and peak memory
above what was held before (CUDA max_memory_allocated; CPU, torch's allocator events from the
profiler), and the device a figure was taken on.
"""

import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch


def measure(fn: Callable[[], object], device: str | torch.device, repeats: int, warmup: int = 1):
    """(median time ms of `repeats` warm calls, peak memory MB above what was held before)."""
    stats = measure_all(fn, device, repeats, warmup)
    return stats["time_ms"], stats["peak_mem_mb"]


def measure_all(fn: Callable[[], object], device: str | torch.device, repeats: int, warmup: int = 1) -> dict:
    """measure() plus, on CPU, the median process CPU time: steadier than wall time when other
    jobs share the cores (with one thread, CPU time is the time the run would take alone)."""
    device = torch.device(device)
    if device.type == "cuda":
        time_ms, peak_mb = _measure_cuda(fn, device, repeats, warmup)
        return {"time_ms": time_ms, "peak_mem_mb": peak_mb}
    # the profiled call is the warm-up too: the CPU bench stays a few minutes long
    peak_mb = cpu_peak_mb(fn)
    wall, cpu = cpu_times(fn, repeats, warmup - 1)
    return {"time_ms": wall, "peak_mem_mb": peak_mb, "cpu_time_ms": cpu}


def cpu_times(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, float]:
    """(median wall ms, median process CPU ms) of `repeats` calls after `warmup` unmeasured ones."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def _measure_cuda(fn, device: torch.device, repeats: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        times.append(start.elapsed_time(end))
    peak = torch.cuda.max_memory_allocated(device) - before
    return statistics.median(times), peak / 2**20


def cpu_peak_mb(fn: Callable[[], object]) -> float:
    """Peak bytes held by torch's CPU allocator during one call, from the profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    with without_kineto_chatter(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # the exported trace lists every allocation and free; prof.events() folds most into their ops
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    memory = sorted(
        (e["ts"], e["args"]["Bytes"])
        for e in events
        if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0  # 0: CPU
    )
    held = peak = 0
    for _, size in memory:
        held += size  # + on allocation, - on free
        peak = max(peak, held)
    return peak / 2**20


# kineto's progress lines, e.g.
# "USDT:2026-01-01 12:00:00 123:123 SyncActivityProfilerHandler.cpp:52] profiler_start"
KINETO_CHATTER = re.compile(rb"(USDT|STAGE|INFO):\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \d+:\d+ \S+\.cpp:\d+\] ")


@contextlib.contextmanager
def without_kineto_chatter() -> Iterator[None]:
    """torch.profiler's C++ side (kineto) writes "USDT ... profiler_start/stop" to file descriptor 2
    on every profiled run. It logs them at its highest level, above its errors, so KINETO_LOG_LEVEL
    cannot hide them alone: fd 2 goes to a file during the run, and every other line (a kineto
    error or warning, a Python warning) is written back to it afterwards."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a daemon): nothing to keep clean
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(True) if not KINETO_CHATTER.match(line)]
            if kept:
                os.write(2, b"".join(kept))


def environment(device: str) -> dict:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if torch.device(device).type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    else:
        info["device_name"] = cpu_name()
    return info


def cpu_name() -> str:
    import os
    import platform

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"

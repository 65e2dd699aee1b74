"""One call of the device tool on the lent GPU machine: check, benchmark, train a queue, ship.

    python scripts/gpu_session.py [--check] [--bench] [--deadline 540] CONFIG[+KEY=VALUE...] ...

The device tool runs one command for at most 10 minutes, keeps a machine warm only between
calls, and brings back at most 8 files of 16 MiB (64 MiB in all) written under $OUT. So:
- --check runs the CUDA paths once (smoke config with bf16 + channels_last, torch.compile, and
  a one-process torchrun: NCCL, DistributedDataParallel and SyncBatchNorm) and a throughput
  probe of each queued config (images/s, share of time waiting for data, GPU memory), before
  any long training;
- --bench runs `ann.bench` (APNB vs NB, the full network) on this GPU, JSON into the bundle;
- the queue trains each config in runs/NAME (resuming a run an earlier call left), stopping
  (SIGKILL; checkpoints are atomic) when the deadline comes, so the next call goes on;
- every finished, not yet shipped run and all logs go into one tar under $OUT, split into parts of
  at most 15 MiB with a manifest of sha256 sums; `scripts/gpu_unpack.py` joins and checks them.
A run that does not fit this call's 60 MiB is shipped by the next call.
A queue entry is [RUN=]CONFIG[+KEY=VALUE...]: the run folder runs/RUN (default: the config name)
and overrides, e.g. `ann-r18-synthcity-seed1=ann-r18-synthcity+train.seed=1`.
"""

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

RUNS = Path("runs")
SHIPPED = RUNS / "shipped.txt"
PART_BYTES = int(os.environ.get("ANN_PART_BYTES", 15 * 2**20))  # smaller in the tests
MAX_PARTS = 7  # + the manifest = the tool's 8 files
# under the tool's 64 MiB, and 1 MiB left for the tar's headers
MAX_BUNDLE = min(60 * 2**20, MAX_PARTS * PART_BYTES) - 2**20
RESERVE_S = 40  # kept for packing after the last training is stopped
RUN_FILES = ("model.safetensors", "model_card.md", "training_curve.png", "metrics.jsonl", "config.toml")


def sh(command: list[str], log: Path | None = None, timeout: float | None = None) -> int:
    """Run, echo the command, tee output to `log`; SIGKILL at `timeout`. Returns the exit status."""
    print("$", shlex.join(command), flush=True)
    out = open(log, "a") if log else None
    try:
        proc = subprocess.Popen(command, stdout=out or None, stderr=subprocess.STDOUT if out else None)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -9
    finally:
        if out:
            out.close()


def parse_entry(entry: str) -> tuple[str, str, list[str]]:
    """'[RUN=]CONFIG[+KEY=VALUE...]' -> (run folder name, config, overrides); RUN defaults to CONFIG."""
    head, *overrides = entry.split("+")
    run, _, config = head.rpartition("=")
    return run or config, config, overrides


def train_command(entry: str, out: Path, *extra: str) -> list[str]:
    _, name, overrides = parse_entry(entry)
    command = [sys.executable, "-m", "ann.train", name, "--out", str(out), "--set", "train.progress=false"]
    for override in [*overrides, *extra]:
        command += ["--set", override]
    return command + (["--resume"] if (out / "checkpoints" / "last.pt").exists() else [])


def summarise(folder: Path, skip: int = 1) -> dict:
    """Median images/s, data wait and peak GPU memory over the log windows after the first `skip`."""
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in records if "images_per_s" in r][skip:]
    if not windows:
        return {}

    def median(key):
        values = sorted(r[key] for r in windows if key in r)
        return values[len(values) // 2] if values else None

    last = [r for r in records if "loss" in r][-1]
    keys = ("images_per_s", "data_wait", "gpu_max_memory_gb")
    return {"iteration": last["iteration"], "loss": round(last["loss"], 4)} | {k: median(k) for k in keys}


def time_left(deadline: float) -> float:
    """Seconds a step may still take, packing time kept aside."""
    return deadline - time.monotonic() - RESERVE_S


def check(queue: list[str], logs: Path, deadline: float) -> None:
    """The CUDA code paths once, then a throughput probe of each queued config."""
    sh(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"], logs / "env.log")
    sh([sys.executable, "-c", "import torch, sys; print(sys.version); print('torch', torch.__version__, "
        "torch.cuda.get_device_name(), 'cpus', __import__('os').cpu_count())"], logs / "env.log")  # fmt: skip
    cuda = ["train.device=cuda", "train.iterations=30", "train.log_every=10", "train.amp=bf16",
            "train.channels_last=true", "data.workers=4"]  # fmt: skip
    check_dir = RUNS / "check"
    compile_ = [*cuda, "train.compile=true"]
    nccl = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1"]
    probes = {
        "smoke-cuda": train_command("smoke", check_dir / "smoke-cuda", *cuda),
        "smoke-compile": train_command("smoke", check_dir / "smoke-compile", *compile_),
        "smoke-torchrun-nccl": nccl + train_command("smoke", check_dir / "smoke-torchrun-nccl", *cuda)[1:],
    }
    probe = ["train.iterations=60", "train.log_every=10", "data.val_limit=20", "data.test_split="]
    for entry in queue:
        name = f"probe-{parse_entry(entry)[0]}"
        probes[name] = train_command(entry, check_dir / name, *probe)
    if queue:  # the first config again, rendering on the fly: does streaming keep up on 16 cores?
        stream = check_dir / f"probe-stream-{parse_entry(queue[0])[0]}"
        probes[stream.name] = train_command(queue[0], stream, *probe, "data.synthcity_train_images=0")
    results = {}
    for name, command in probes.items():
        folder = RUNS / "check" / name
        started = time.perf_counter()
        if time_left(deadline) < 30:
            results[name] = {"exit": "skipped: deadline"}
            continue
        status = sh(command, logs / f"{name}.log", timeout=min(240, time_left(deadline)))
        results[name] = {"exit": status, "seconds": round(time.perf_counter() - started, 1)}
        if (folder / "metrics.jsonl").exists():
            results[name].update(summarise(folder))
        print(name, json.dumps(results[name]), flush=True)
    (logs / "check.json").write_text(json.dumps(results, indent=1))


def bench(logs: Path, deadline: float) -> None:
    """Table 1-2 at the paper's widths, and the blocks at the shipped models' widths and feature
    sizes (head 256, key/value 128; 64x64 = a 512 crop, 128x64 = a 1024x512 scene at OS 8)."""
    module = [sys.executable, "-m", "ann.bench"]
    ours = ["--channels", "256", "--key", "128", "--size", "64x64", "--size", "128x64"]
    for dtype in ("fp32", "bf16"):
        runs = {
            "block": ["block", "--size", "96x96", "--size", "256x128"],
            "block_r18": ["block", *ours],
            "network": ["network"],
        }
        for name, args in runs.items():
            json_path = logs / f"bench_{name}_{dtype}.json"
            command = [*module, *args, "--device", "cuda", "--dtype", dtype, "--json", str(json_path)]
            sh(command, logs / "bench.log", timeout=max(time_left(deadline), 1))


def train_queue(queue: list[str], deadline: float, parallel: int = 1) -> None:
    """Train the unfinished entries in order, `parallel` at a time; SIGKILL all at the deadline."""
    pending = [e for e in queue if not (RUNS / parse_entry(e)[0] / "model.safetensors").exists()]
    running: dict[subprocess.Popen, tuple[str, Path]] = {}
    while pending or running:
        while pending and len(running) < parallel and time_left(deadline) >= 30:
            entry = pending.pop(0)
            out = RUNS / parse_entry(entry)[0]
            command = train_command(entry, out)
            print("$", shlex.join(command), flush=True)
            with open(RUNS / f"{out.name}.log", "a") as log:  # the child keeps its own handle
                running[subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)] = (entry, out)
        if not running:
            return  # no time to start the rest: the next call does
        time.sleep(1)
        for proc, (entry, out) in list(running.items()):
            if time_left(deadline) <= 0:
                proc.kill()  # checkpoints are atomic: the next call resumes
            if proc.poll() is not None:
                del running[proc]
                progress = summarise(out, 0) if (out / "metrics.jsonl").exists() else {}
                print(f"{entry}: exit {proc.returncode}", json.dumps(progress), flush=True)


def table7_settings() -> list[tuple[str, tuple[int, ...]]]:
    """(method, sizes) of the full model and of every Table 7 row config (ann/configs)."""
    from ann.training.config import list_configs, load_config

    names = [n for n in list_configs() if n == "ann-r18-synthcity" or n.startswith("ann-r18-synthcity-")]
    settings = {
        (load_config(n).model.sampling.method, tuple(load_config(n).model.sampling.sizes)) for n in names
    }
    return [(method, list(sizes)) for method, sizes in sorted(settings)]


def study(names: list[str], deadline: float, logs: Path) -> None:
    """Table 7 at inference time: each trained model's sampling switched, scored on SynthCity test."""
    for name in names:
        model = RUNS / name / "model.safetensors"
        for method, sizes in table7_settings() if model.exists() else []:
            sizes_text = ",".join(map(str, sizes))
            result = logs / f"switch_{name}_{method}_{sizes_text.replace(',', '-')}.json"
            if result.exists() or deadline - time.monotonic() < RESERVE_S + 30:
                continue
            sh([sys.executable, "-m", "ann.evaluate", str(model), "--data", "synthcity", "--split", "test",
                "--sampling", method, "--sizes", sizes_text, "--amp", "--workers", "12", "--no-progress",
                "--json", str(result)], logs / "study.log")  # fmt: skip


def ship(logs: Path, out: Path) -> None:
    """Finished runs not yet shipped + logs -> one tar in parts + manifest under $OUT."""
    shipped = set(SHIPPED.read_text().split()) if SHIPPED.exists() else set()
    members: list[tuple[Path, str]] = [(p, f"logs/{p.name}") for p in sorted(logs.iterdir()) if p.is_file()]
    members += [(p, f"logs/{p.name}") for p in sorted(RUNS.glob("*.log"))]
    size = sum(p.stat().st_size for p, _ in members)
    packed = []
    for run in sorted(p.parent for p in RUNS.glob("*/model.safetensors")):
        files = [(run / f, f"{run.name}/{f}") for f in RUN_FILES if (run / f).exists()]
        run_size = sum(p.stat().st_size for p, _ in files)
        if run.name in shipped or size + run_size > MAX_BUNDLE:
            continue
        members += files
        size += run_size
        packed.append(run.name)
    tar = out / "bundle.tar"
    with tarfile.open(tar, "w") as bundle:
        for path, name in members:
            bundle.add(path, arcname=name)
    digest = hashlib.sha256(tar.read_bytes()).hexdigest()
    parts = []
    with open(tar, "rb") as source:
        while chunk := source.read(PART_BYTES):
            part = out / f"bundle.part{len(parts):02d}"
            part.write_bytes(chunk)
            parts.append({"name": part.name, "sha256": hashlib.sha256(chunk).hexdigest()})
    tar.unlink()
    if len(parts) > MAX_PARTS:
        raise SystemExit(f"bundle of {size} bytes needs {len(parts)} parts; the tool brings back {MAX_PARTS}")
    manifest = {"sha256": digest, "parts": parts, "runs": packed, "files": [n for _, n in members]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    SHIPPED.write_text("".join(f"{name}\n" for name in sorted(shipped | set(packed))))
    print(f"shipped {packed or 'no runs'} in {len(parts)} parts ({size / 2**20:.1f} MiB)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("queue", nargs="*", help="config names, in order of priority")
    parser.add_argument("--check", action="store_true", help="CUDA paths + throughput probes first")
    parser.add_argument("--bench", action="store_true", help="ann.bench on this GPU")
    parser.add_argument("--no-train", action="store_true", help="probe the queue, do not train it")
    parser.add_argument("--parallel", type=int, default=1, help="runs trained at once on the GPU")
    parser.add_argument("--deadline", type=float, default=540, help="seconds this call may take")
    parser.add_argument(
        "--study",
        action="append",
        default=[],
        metavar="NAME",
        help="after training: Table 7 switched at inference on run NAME (repeatable)",
    )
    parser.add_argument("--reship", action="store_true", help="ship finished runs again (a lost transfer)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.deadline
    out = Path(os.environ.get("OUT") or RUNS / "out")
    logs = RUNS / "session-logs"
    logs.mkdir(parents=True, exist_ok=True)
    if args.reship:
        SHIPPED.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    if args.check:
        check(args.queue, logs, deadline)
    if args.bench:
        bench(logs, deadline)
    if not args.no_train:
        train_queue(args.queue, deadline, args.parallel)
    study(args.study, deadline, logs)
    ship(logs, out)


if __name__ == "__main__":
    main()

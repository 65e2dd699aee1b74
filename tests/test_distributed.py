"""Multi-process training: per-rank data shards, and a real two-process gloo run via torchrun."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ann
from ann.training.data import StepBatches

REPO = Path(__file__).resolve().parents[1]


def test_ranks_share_out_the_global_batch():
    single = list(StepBatches(3, 6, 4, rank=0, world=1))
    ranks = [list(StepBatches(3, 6, 4, rank=r, world=2)) for r in (0, 1)]
    for it in range(3):
        assert sorted(ranks[0][it] + ranks[1][it]) == single[it]
        assert not set(ranks[0][it]) & set(ranks[1][it])
    assert single[0] == [12, 13, 14, 15]  # iteration 3 of a batch-4 run: independent of the start


def torchrun(out: Path, world: int, *overrides: str, resume: bool = False) -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world),
               "-m", "ann.train", "smoke", "--out", str(out)]  # fmt: skip
    for override in ("train.checkpoint_every=2", "train.val_every=0", "train.progress=false",
                     "data.val_limit=2", *overrides):  # fmt: skip
        command += ["--set", override]
    return command + (["--resume"] if resume else [])


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def losses(out: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["iteration"], r["loss"]) for r in records if "loss" in r]


@pytest.mark.parametrize("world", [2, 1])  # one process under torchrun still runs DDP
def test_torchrun_gloo_run(tmp_path, world):
    out = tmp_path / "run"
    command = torchrun(out, world, "train.iterations=4")
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3, 4]  # rank 0 logs alone
    model = ann.load(out / "model.safetensors")
    assert model.meta.provenance["world_size"] == world and model.meta.provenance["iterations"] == 4
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["iteration"] == 4
    assert not (out / "train.lock").exists()


def test_sigterm_to_torchrun_with_loader_workers_stops_at_a_log_step_and_resumes_exactly(tmp_path):
    """torchrun passes a SIGTERM on to each rank's process group, DataLoader workers included: the
    workers must outlive it so that the ranks reach the log step where they checkpoint together."""
    run = ("train.iterations=8", "train.log_every=2", "data.workers=1")
    reference = tmp_path / "reference"
    subprocess.run(
        torchrun(reference, 2, *run), cwd=REPO, env=ENV, capture_output=True, timeout=120, check=True
    )
    out = tmp_path / "run"
    quiet = subprocess.DEVNULL
    launcher = subprocess.Popen(
        torchrun(out, 2, *run), cwd=REPO, env=ENV, stdout=quiet, stderr=subprocess.PIPE, text=True
    )
    metrics = out / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (metrics.exists() and "\n" in metrics.read_text()):
            time.sleep(0.01)
        launcher.send_signal(signal.SIGTERM)
        _, stderr = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert "killed by signal" not in stderr
    assert stderr.count("stopped by SIGTERM after iteration") == 1  # rank 0 reports the stop of both
    stopped = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["iteration"]
    assert stopped == losses(out)[-1][0] < 8 and stopped % 2 == 0
    resumed = subprocess.run(
        torchrun(out, 2, *run, resume=True), cwd=REPO, env=ENV, capture_output=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert losses(out) == losses(reference)


def test_one_process_under_torchrun_takes_the_distributed_path(monkeypatch):
    import torch.distributed as dist

    from ann.training import distributed

    assert not distributed.setup("cpu").distributed  # plain `python -m ann.train`
    env = {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29517",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        processes = distributed.setup("cpu")
        assert processes.distributed and dist.is_initialized() and dist.get_backend() == "gloo"
        assert distributed.gather_to_main("x", processes) == ["x"]  # through gather_object
    finally:
        distributed.teardown()
    assert not dist.is_initialized()


LOADER_LEFT_OPEN = """
from ann.models.backbones import IMAGENET_NORMALIZATION
from ann.training.config import DataConfig
from ann.training.data import eval_loader, open_split

split = open_split(DataConfig(synthcity_size=(32, 64)), "val")
batches = iter(eval_loader(split, IMAGENET_NORMALIZATION, 4, 0, 1, 1, False))
next(batches)  # a worker is alive as the interpreter exits (e.g. a run that failed mid-split)
print("exiting", flush=True)
"""


def test_a_loader_worker_alive_at_exit_does_not_hang_the_process():
    # multiprocessing stops live workers at exit with SIGTERM and joins them without a timeout
    command = [sys.executable, "-c", LOADER_LEFT_OPEN]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "exiting" in result.stdout, result.stderr[-2000:]


def test_eval_shards_cover_the_split_once():
    """Validation is sharded rank::world and the matrices summed: every image counted once."""
    from ann.models.backbones import IMAGENET_NORMALIZATION
    from ann.training.data import Split, eval_loader

    split = Split(lambda i: None, 7, str, ("a",), ((0, 0, 0),))
    shards = [eval_loader(split, IMAGENET_NORMALIZATION, 0, r, 3, 0, False).dataset.indices for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(7)) and len(sum(shards, [])) == 7
    limited = [
        eval_loader(split, IMAGENET_NORMALIZATION, 5, r, 2, 0, False).dataset.indices for r in range(2)
    ]
    assert sorted(sum(limited, [])) == list(range(5))


def test_a_dataset_folder_is_drawn_once_per_epoch_in_a_fresh_order():
    from ann.training.config import load_config
    from ann.training.data import Split, TrainStream

    split = Split(lambda i: None, 6, str, ("a",), ((0, 0, 0),))
    stream = TrainStream(split, load_config("smoke"))
    epochs = [[stream.image_index(6 * e + p) for p in range(6)] for e in range(3)]
    assert all(sorted(order) == list(range(6)) for order in epochs)
    assert len({tuple(order) for order in epochs}) > 1  # not the same order every epoch
    assert [TrainStream(split, load_config("smoke")).image_index(k) for k in range(6)] == epochs[0]


COLLECTIVES = """
import torch, torch.distributed as dist
from ann.metrics import ConfusionMatrix
from ann.training import distributed

processes = distributed.setup("cpu")
rank = processes.rank
assert distributed.mean_over_processes([rank + 1.0, 2.0 * rank], processes.device) == [1.5, 1.0]
assert distributed.any_process(rank == 1, processes.device)  # one rank asked to stop: all stop
assert not distributed.any_process(False, processes.device)
assert distributed.gather_to_main(rank, processes) == ([0, 1] if rank == 0 else None)
matrix = ConfusionMatrix(2)
matrix.update(torch.tensor([rank]), torch.tensor([0]))  # rank 0: a hit, rank 1: a miss
matrix.all_reduce()
assert matrix.matrix.tolist() == [[1, 1], [0, 0]], matrix.matrix
distributed.teardown()
print(f"ok {rank}")  # one write: print("ok", rank) writes "ok", " ", "0" apart and the ranks interleave
"""


def test_collectives_of_two_gloo_processes(tmp_path):
    """Losses are averaged over the ranks, a stop on one rank is a stop on all, and the validation
    confusion matrices are summed (two real processes under torchrun)."""
    script = tmp_path / "collectives.py"
    script.write_text(COLLECTIVES)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
    ]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok 0" in result.stdout and "ok 1" in result.stdout  # each rank reached the end

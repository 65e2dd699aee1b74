"""Multi-process training: per-rank data shards, and a real two-process gloo run via torchrun."""

import json
import os
import subprocess
import sys
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


@pytest.mark.parametrize("world", [2, 1])  # one process under torchrun still runs DDP
def test_torchrun_gloo_run(tmp_path, world):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world),
               "-m", "ann.train", "smoke", "--out", str(out)]  # fmt: skip
    for override in ("train.iterations=4", "train.checkpoint_every=2", "train.val_every=0",
                     "train.progress=false", "data.val_limit=2"):  # fmt: skip
        command += ["--set", override]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3, 4]  # rank 0 logs alone
    model = ann.load(out / "model.safetensors")
    assert model.meta.provenance["world_size"] == world and model.meta.provenance["iterations"] == 4
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["iteration"] == 4
    assert not (out / "train.lock").exists()


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

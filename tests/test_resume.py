"""Never losing progress: a trainer killed with a real SIGKILL, even halfway through a checkpoint
write, resumes from the last complete checkpoint and ends with the same weights as a run that was
never interrupted (CPU, bit for bit)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ann.training.config import load_config
from ann.training.loop import CHECKPOINT, train
from ann.training.state import load_checkpoint

ITERATIONS = 8
OVERRIDES = [
    f"train.iterations={ITERATIONS}",
    "train.checkpoint_every=2",
    "train.val_every=0",
    "train.progress=false",
    "data.val_limit=2",
]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """Final weights of the uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    train(load_config("smoke", OVERRIDES), out)
    return load_checkpoint(out / CHECKPOINT)["model"]


def start_trainer(out: Path, env: dict) -> subprocess.Popen:
    command = [sys.executable, "-m", "ann.train", "smoke", "--out", str(out)]
    command += [arg for o in OVERRIDES for arg in ("--set", o)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env}
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def resume_and_compare(out: Path, reference: dict) -> None:
    train(load_config("smoke", OVERRIDES), out, resume=True)  # also takes over the dead pid's lock
    final = load_checkpoint(out / CHECKPOINT)
    assert final["iteration"] == ITERATIONS
    assert final["model"].keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(final["model"][name], tensor), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # the iterations logged before the kill but after the checkpoint are logged once, not twice
    assert [r["iteration"] for r in records if "loss" in r] == list(range(1, ITERATIONS + 1))


def test_sigkill_during_checkpoint_write_resumes_exactly(tmp_path, reference):
    # the second checkpoint write (iteration 4) pauses halfway; kill it there
    process = start_trainer(
        tmp_path, {"ANN_TEST_CHECKPOINT_PAUSE": "60", "ANN_TEST_CHECKPOINT_PAUSE_AFTER": "1"}
    )
    try:
        for line in process.stdout:
            if line.startswith("ANN_TEST: paused writing"):
                break
        kill(process)
    finally:
        process.kill()
    torn = tmp_path / "checkpoints" / "last.pt.tmp"
    assert torn.exists() and torn.stat().st_size > 0  # half a file on disk
    assert load_checkpoint(tmp_path / CHECKPOINT)["iteration"] == 2  # the last complete one
    assert (tmp_path / "train.lock").exists()  # left behind by the dead process
    resume_and_compare(tmp_path, reference)
    assert not torn.exists()


def test_sigkill_between_checkpoints_resumes_exactly(tmp_path, reference):
    process = start_trainer(tmp_path, {})
    try:
        deadline = time.monotonic() + 60
        metrics = tmp_path / "metrics.jsonl"
        while time.monotonic() < deadline and process.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
                break
            time.sleep(0.01)
        kill(process)
    finally:
        process.kill()
    assert load_checkpoint(tmp_path / CHECKPOINT)["iteration"] in (4, 6)
    resume_and_compare(tmp_path, reference)


def test_sigterm_checkpoints_where_it_is_and_resumes_exactly(tmp_path, reference):
    """A polite stop (a time limit, a scheduler) loses no iteration: the checkpoint is taken at
    the step where SIGTERM arrived, not at the last periodic one."""
    process = start_trainer(tmp_path, {})
    metrics = tmp_path / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143
    logged = [json.loads(line)["iteration"] for line in metrics.read_text().splitlines()]
    assert load_checkpoint(tmp_path / CHECKPOINT)["iteration"] == logged[-1] < ITERATIONS
    assert not (tmp_path / "model.safetensors").exists() and not (tmp_path / "train.lock").exists()
    resume_and_compare(tmp_path, reference)


def test_resume_on_more_processes_gives_each_new_rank_its_own_rng(tmp_path, capsys):
    """A checkpoint of one process resumed by two: rank 1 keeps its own seed (dropout masks of its
    own, not rank 0's), and the note about it is printed once, by rank 0."""
    from ann.training.distributed import Processes
    from ann.training.loop import build_run, checkpoint_state, restore
    from ann.training.state import rng_states

    config = load_config("smoke", OVERRIDES)
    cpu = torch.device("cpu")
    state = checkpoint_state(build_run(config, tmp_path, Processes(0, 1, 0, cpu)), [rng_states()])
    after = []
    for rank in (0, 1):
        restore(build_run(config, tmp_path, Processes(rank, 2, rank, cpu)), state)
        after.append(torch.get_rng_state())
    assert torch.equal(after[0], state["rng"][0]["torch"])
    assert not torch.equal(after[1], after[0])
    assert capsys.readouterr().out.count("note: checkpoint of 1 processes resumed on 2") == 1


def test_resume_refuses_a_checkpoint_that_is_not_this_runs(tmp_path, capsys):
    """Another model's checkpoint, or a file that is no checkpoint, in the run folder: a clear
    message, and the folder is left as it was."""
    from ann.cli.train import main
    from ann.training.distributed import Processes
    from ann.training.loop import build_run, checkpoint_state
    from ann.training.state import rng_states, save_checkpoint

    out = tmp_path / "run"
    argv = ["smoke", "--out", str(out), *[arg for o in OVERRIDES[1:] for arg in ("--set", o)]]
    assert main([*argv, "--set", "train.iterations=2"]) == 0
    wider = load_config("smoke", [*OVERRIDES, "model.head_channels=64"])
    other = build_run(wider, tmp_path / "other", Processes(0, 1, 0, torch.device("cpu")))
    state = checkpoint_state(other, [rng_states()])
    state["config"] = load_config(str(out / "config.toml")).to_dict()  # same recipe, other tensors
    save_checkpoint(out / CHECKPOINT, state)
    config = (out / "config.toml").read_bytes()
    assert main([*argv, "--set", "train.iterations=2", "--resume"]) == 2
    assert "--resume: checkpoint does not match the model" in capsys.readouterr().err
    (out / CHECKPOINT).write_bytes(b"not a checkpoint\n")
    assert main([*argv, "--set", "train.iterations=2", "--resume"]) == 2
    error = capsys.readouterr().err
    assert "not a readable training checkpoint of this trainer" in error
    assert "weights_only` set to `False`" not in error  # torch's advice to unpickle anything
    assert (out / "config.toml").read_bytes() == config and not (out / "train.lock").exists()


def test_resume_checks_the_config_the_checkpoint_was_trained_with(tmp_path, capsys):
    """RUN/config.toml edited by hand, or gone: the checkpoint still knows its recipe, and a resume
    with another one is refused before anything in the folder is rewritten."""
    from ann.cli.train import main

    out = tmp_path / "run"
    argv = ["--out", str(out), *[arg for o in OVERRIDES[1:] for arg in ("--set", o)]]
    assert main(["smoke", *argv, "--set", "train.iterations=2"]) == 0
    saved = out / "config.toml"
    saved.write_text(saved.read_text().replace("lr = 0.01", "lr = 0.02"))
    edited = saved.read_bytes()
    assert main([str(saved), *argv, "--set", "train.iterations=2", "--resume"]) == 2
    assert f"than {out / CHECKPOINT} was trained with: optim.lr: 0.01 -> 0.02" in capsys.readouterr().err
    assert saved.read_bytes() == edited  # a refused resume rewrites nothing
    saved.unlink()
    assert main(["smoke", *argv, "--set", "train.iterations=2", "--set", "optim.lr=0.03", "--resume"]) == 2
    assert "optim.lr: 0.01 -> 0.03" in capsys.readouterr().err and not saved.exists()


def test_restore_brings_back_the_counters_of_the_run(tmp_path):
    """Random anchor sampling draws afresh every training step from a counter (Sec. 3.2 random
    sampling): a resume that lost it would draw the anchors of step 0 again. The iteration, best
    mIoU, last validation and the wall time of earlier sessions come back too."""
    from ann.models.sampling import Sampler
    from ann.training.distributed import Processes
    from ann.training.loop import build_run, checkpoint_state, restore
    from ann.training.state import rng_states, sampler_draws

    config = load_config("smoke", [*OVERRIDES, "model.sampling.method=pyramid_random"])
    cpu = Processes(0, 1, 0, torch.device("cpu"))
    run = build_run(config, tmp_path, cpu)
    samplers = [m for m in run.net.modules() if isinstance(m, Sampler)]
    for k, sampler in enumerate(samplers):
        sampler._draws = 3 + k  # as after some training steps
    run.iteration, run.best_miou, run.summary, run.wall_time = 5, 0.25, {"miou": 0.2}, 100.0
    state = checkpoint_state(run, [rng_states()])
    resumed = build_run(config, tmp_path, cpu)
    restore(resumed, state)
    assert sampler_draws(resumed.net) == [3 + k for k in range(len(samplers))]
    assert (resumed.iteration, resumed.best_miou, resumed.summary) == (5, 0.25, {"miou": 0.2})
    assert resumed.wall_time >= 100.0


def test_rng_states_round_trip_every_generator():
    """Python, numpy and torch generators each come back: any one left out would draw other
    numbers after a resume than the uninterrupted run (augmentation libraries, dropout)."""
    import random

    import numpy as np

    from ann.training.state import rng_states, set_rng_states

    saved = rng_states()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_states(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_resume_accepts_only_changes_that_compute_the_same():
    from ann.training.config import config_differences
    from ann.training.loop import RESUMABLE_CHANGES

    base = load_config("smoke", OVERRIDES)
    how = ["description=other", "train.progress=true", "train.log_every=7", "train.device=cpu",
           "train.compile=true", "train.val_every=3", "data.workers=3", "data.root=/elsewhere",
           "data.skip_bad=true", "data.cache_dir=/cache"]  # fmt: skip
    assert config_differences(base, load_config("smoke", [*OVERRIDES, *how]), RESUMABLE_CHANGES) == []
    for what in ("train.seed=1", "model.sampling.sizes=1,2", "loss.ohem_min_kept=10", "optim.poly_power=1.0"):
        changed = load_config("smoke", [*OVERRIDES, what])
        assert config_differences(base, changed, RESUMABLE_CHANGES), what


def test_a_checkpoint_with_other_sampler_counters_is_refused():
    """zip would pair the counters with the wrong samplers, or drop some, without a word."""
    from ann.models.network import build_network
    from ann.training.state import TrainingError, sampler_draws, set_sampler_draws

    net = build_network(load_config("smoke", OVERRIDES).model)
    count = len(sampler_draws(net))
    assert count >= 1
    with pytest.raises(
        TrainingError, match=f"checkpoint has {count + 1} sampler counters, the model {count}"
    ):
        set_sampler_draws(net, [1] * (count + 1))
    set_sampler_draws(net, list(range(4, 4 + count)))
    assert sampler_draws(net) == list(range(4, 4 + count))


def test_an_untrusted_checkpoint_is_refused_in_the_trainers_words(tmp_path):
    """torch's weights_only error advises weights_only=False, which would run the file's code:
    the trainer says what is wrong and nothing of that advice."""
    import argparse

    from ann.training.state import TrainingError, load_checkpoint

    path = tmp_path / "last.pt"
    torch.save({"args": argparse.Namespace(x=1)}, path)
    with pytest.raises(TrainingError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"{path}: not a readable training checkpoint of this trainer (not a file of ")
    assert "tensors and plain values: Unsupported global: GLOBAL argparse.Namespace" in message
    assert "weights_only" not in message

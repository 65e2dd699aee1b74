"""Trainer faults (issue 7), end to end through `python -m ann.train`'s main: a corrupt image in a
dataset folder (fail fast naming its path; --skip-bad goes on), a disk that fills up for real (a
small tmpfs), two trainers on one run folder, and SIGKILL in the middle of writing a safetensors
checkpoint. SIGKILL during the trainer's own checkpoint write, with an exact resume, is
tests/test_resume.py; the lock and a monkeypatched ENOSPC as units are in tests/test_train.py."""

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ann
from ann.checkpoint import CheckpointError, CheckpointMeta, file_sha256
from ann.cli.train import main
from ann.training.loop import CHECKPOINT
from ann.training.state import load_checkpoint
from tests.conftest_app import tiny_config

REPO = Path(__file__).resolve().parents[1]
FAST = ["train.progress=false", "data.val_limit=2", "train.val_every=0"]


def cli(out: Path, *overrides: str, flags: tuple[str, ...] = ()) -> list[str]:
    args = ["smoke", "--out", str(out), *flags]
    for override in (*FAST, *overrides):
        args += ["--set", override]
    return args


@pytest.fixture
def dataset(tmp_path) -> tuple[list[str], Path]:
    """Overrides training on a 3-image Cityscapes-layout folder, and the image that is corrupt."""
    from ann.cli.synthcity import write

    write(tmp_path / "cs", "val", [0, 1, 2], 0, (64, 32))
    images = sorted((tmp_path / "cs" / "leftImg8bit" / "val").rglob("*.png"))
    images[1].write_bytes(images[1].read_bytes()[:200])  # a truncated PNG
    overrides = ["data.dataset=cityscapes", f"data.root={tmp_path / 'cs'}", "data.train_split=val"]
    return [*overrides, "train.iterations=4", "train.checkpoint_every=4"], images[1]


def test_corrupt_image_fails_fast_naming_its_path(tmp_path, dataset, capsys):
    overrides, corrupt = dataset
    assert main(cli(tmp_path / "run", *overrides)) == 2
    error = capsys.readouterr().err
    assert f"unreadable image {corrupt}" in error and "Traceback" not in error
    assert "or --skip-bad to skip bad samples" in error
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert not (tmp_path / "run" / "train.lock").exists()  # released on the way out


def test_skip_bad_trains_on_and_reports_the_path(tmp_path, dataset, caplog):
    overrides, corrupt = dataset
    with caplog.at_level(logging.WARNING):
        assert main(cli(tmp_path / "run", *overrides, flags=("--skip-bad",))) == 0
    assert str(corrupt) in caplog.text
    assert ann.load(tmp_path / "run" / "model.safetensors").meta.provenance["data"]["dataset"] == "cityscapes"


@pytest.fixture
def small_disk(tmp_path):
    """A mounted tmpfs of a given size (needs root); unmounted afterwards."""
    mounted = []

    def mount(megabytes: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(folder)], capture_output=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip()})")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


def test_full_disk_stops_the_trainer_with_a_clear_error(tmp_path, small_disk, capsys):
    # size a disk that holds one training checkpoint but not the temp file of the next one
    reference = tmp_path / "reference"
    assert main(cli(reference, "train.iterations=2", "train.checkpoint_every=2")) == 0
    size = (reference / CHECKPOINT).stat().st_size
    disk = small_disk(int(1.5 * size / 2**20) + 1)
    capsys.readouterr()
    assert main(cli(disk / "run", "train.iterations=4", "train.checkpoint_every=2")) == 2
    error = capsys.readouterr().err
    assert "disk full" in error and str(disk / "run" / CHECKPOINT) in error and "Traceback" not in error
    assert load_checkpoint(disk / "run" / CHECKPOINT)["iteration"] == 2  # the previous one, intact
    assert not list((disk / "run").rglob("*.tmp"))
    assert not (disk / "run" / "train.lock").exists()


def test_full_disk_during_a_safetensors_save_leaves_nothing(small_disk):
    disk = small_disk(1)
    torch.manual_seed(0)
    model = ann.build_network(tiny_config()).eval()
    with pytest.raises(CheckpointError, match="No space left on device"):
        ann.save(model, disk / "model.safetensors", CheckpointMeta(model.config))
    assert list(disk.iterdir()) == []


def start_paused_trainer(out: Path) -> subprocess.Popen:
    """A trainer that holds the run folder's lock, paused halfway through its first checkpoint."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "ANN_TEST_CHECKPOINT_PAUSE": "120"}
    command = [sys.executable, "-m", "ann.train", *cli(out, "train.iterations=4", "train.checkpoint_every=2")]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    for line in process.stdout:
        if line.startswith("ANN_TEST: paused writing"):
            return process
    process.kill()
    raise AssertionError("the first trainer never reached its checkpoint write")


def test_second_trainer_on_the_same_folder_refuses(tmp_path, capsys):
    out = tmp_path / "run"
    first = start_paused_trainer(out)
    try:
        config = (out / "config.toml").read_bytes()
        for flags in ((), ("--resume",)):
            assert main(cli(out, "train.iterations=4", "train.checkpoint_every=2", flags=flags)) == 2
            error = capsys.readouterr().err
            assert "in use by another trainer" in error and f"pid {first.pid}" in error
        assert (out / "config.toml").read_bytes() == config
        assert not (out / CHECKPOINT).exists()  # the second one wrote nothing
        assert (out / "train.lock").read_text().split()[1] == str(first.pid)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)


SAVE_AND_HANG = """
import sys, time, torch, ann, ann.checkpoint as ckpt
from ann.checkpoint import CheckpointMeta
from tests.conftest_app import tiny_config

real = ckpt.write_safetensors
def half_then_hang(tensors, filename, metadata=None):
    real(tensors, filename, metadata)
    data = open(filename, "rb").read()
    open(filename, "wb").write(data[: len(data) // 2])
    print("HALF WRITTEN", flush=True)
    time.sleep(120)
ckpt.write_safetensors = half_then_hang
torch.manual_seed(1)
model = ann.build_network(tiny_config())
ann.save(model, sys.argv[1], CheckpointMeta(model.config))
"""


def test_sigkill_while_saving_a_safetensors_keeps_the_previous_file(tmp_path):
    torch.manual_seed(0)
    model = ann.build_network(tiny_config())
    path = ann.save(model, tmp_path / "model.safetensors", CheckpointMeta(model.config))
    before = file_sha256(path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", SAVE_AND_HANG, str(path)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "HALF WRITTEN"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert (tmp_path / "model.safetensors.tmp").exists()  # the torn temp file of the killed writer
    assert file_sha256(path) == before
    loaded = ann.load(path)
    assert all(torch.equal(loaded.state_dict()[k], v.half().float()) for k, v in model.state_dict().items()
               if v.is_floating_point())  # fmt: skip

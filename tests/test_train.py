"""The trainer on the smoke config: it learns, is reproducible, exports a loadable model with its
provenance and card, and refuses what would clobber or half-write a run folder."""

import errno
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

import ann
from ann.cli.train import main
from ann.data.datasets import BadSample, DatasetError
from ann.training.card import duration
from ann.training.config import ConfigError, load_config
from ann.training.data import resize_stages, scaled
from ann.training.loop import CHECKPOINT, train, train_step
from ann.training.state import RunLock, TrainingError, atomic_write

FAST = ["train.progress=false", "data.val_limit=2", "data.test_split=test"]  # val and test: 2 images


def smoke(*overrides: str):
    return load_config("smoke", [*FAST, *overrides])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    train(smoke(), out, command="test")
    return out


def losses(folder: Path) -> list[float]:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if "loss" in r]


def test_smoke_run_learns_and_exports(run_dir):
    curve = losses(run_dir)
    assert len(curve) == 20
    assert sum(curve[-5:]) / 5 < sum(curve[:5]) / 5 - 0.3
    model = ann.load(run_dir / "model.safetensors")
    provenance = model.meta.provenance
    assert provenance["iterations"] == 20 and provenance["seed"] == 0 and provenance["command"] == "test"
    assert {"git_commit", "data", "metrics", "wall_time_s", "device", "torch"} <= set(provenance)
    assert provenance["backbone_weights"] == ""  # from scratch: the seed alone gives the initial weights
    assert set(provenance["metrics"]["per_class_iou"]) == set(model.meta.classes)
    assert provenance["test_metrics"]["miou"] >= 0 and provenance["data"]["test_split"] == "test"
    assert model.config == smoke().model
    card = (run_dir / "model_card.md").read_text()
    assert "| road |" in card and "training_curve.png" in card and "iterations = 20" in card
    assert "first 2 images of each split (data.val_limit)" in card  # a subset is said to be one
    assert provenance["data"]["val_limit"] == 2
    assert f"| wall time | {duration(provenance['wall_time_s'])} |" in card
    assert (duration(8.04), duration(420)) == ("8.0 s", "7.0 min")  # a smoke run's is not "0.1 min"
    assert (
        "| class | val IoU | test IoU |" in card
        and f"test: mIoU **{100 * provenance['test_metrics']['miou']:.2f}" in card
    )
    assert (run_dir / "training_curve.png").stat().st_size > 1000
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert load_config(str(run_dir / "config.toml")) == smoke()
    assert not (run_dir / "train.lock").exists()


def test_same_seed_same_losses(run_dir, tmp_path):
    train(smoke("train.val_every=0"), tmp_path)
    assert losses(tmp_path) == pytest.approx(losses(run_dir), abs=1e-6)


def test_metrics_record_throughput(run_dir):
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[3])
    assert record["images_per_s"] > 0 and 0 <= record["data_wait"] < 1
    assert {"loss_main", "loss_aux", "lr"} <= set(record)


def test_refuses_existing_run_without_resume(run_dir):
    with pytest.raises(TrainingError, match="--resume"):
        train(smoke(), run_dir)


def test_resume_with_different_config_is_refused(run_dir):
    with pytest.raises(TrainingError, match="optim.lr: 0.01 -> 0.02"):
        train(smoke("optim.lr=0.02"), run_dir, resume=True)


def test_missing_data_folder_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["smoke", "--out", str(out), "--set", "data.dataset=cityscapes", "--set",
                 f"data.root={tmp_path / 'nowhere'}", "--set", "model.num_classes=19"]) == 2  # fmt: skip
    assert not out.exists()
    error = capsys.readouterr().err
    assert f"dataset root {tmp_path / 'nowhere'} is not a folder" in error
    # a missing root is no bad file: --skip-bad would not help, the root setting does
    assert "--skip-bad" not in error and "--set data.root=DIR" in error


def test_bad_config_value_is_named(tmp_path, capsys):
    assert main(["smoke", "--out", str(tmp_path / "run"), "--set", "train.iterations=0"]) == 2
    assert "train.iterations must be positive" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_an_out_that_is_a_file_is_named(tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("keep")
    for flags in ((), ("--resume",)):
        assert main(["smoke", "--out", str(afile), "--set", "train.progress=false", *flags]) == 2
        assert f"--out {afile} is a file, not a run folder" in capsys.readouterr().err
    assert afile.read_text() == "keep"
    assert main(["smoke", "--out", str(afile / "run"), "--set", "train.progress=false"]) == 2
    assert "cannot make the run folder there (Not a directory" in capsys.readouterr().err


def test_validates_on_the_first_images_of_the_unbounded_synthcity_train_split(tmp_path):
    run = train(smoke("data.val_split=train", "data.test_split=", "train.iterations=1"), tmp_path / "run")
    assert 0 <= run.summary["miou"] <= 1
    with pytest.raises(ConfigError, match="train split is unbounded: evaluating on it needs data.val_limit"):
        smoke("data.val_split=train", "data.val_limit=0")  # refused before training, not after


def test_full_disk_at_the_end_names_the_file_and_resume_finishes(tmp_path, monkeypatch, capsys):
    real_fsync = os.fsync

    def full_for_the_curve(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("training_curve.png.tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_for_the_curve)
    out = tmp_path / "run"
    argv = ["smoke", "--out", str(out), "--set", "train.progress=false", "--set", "train.iterations=2"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"could not write {out / 'training_curve.png'} (disk full)" in error
    assert "--resume continues from the last checkpoint" in error and not list(out.rglob("*.tmp"))
    monkeypatch.setattr(os, "fsync", real_fsync)  # room again
    assert main([*argv, "--resume"]) == 0
    assert (out / "training_curve.png").exists() and (out / "model_card.md").exists()


def test_full_disk_while_logging_names_the_file(tmp_path):
    from ann.training.logging import RunLog

    class FullDisk:
        def write(self, *text):
            raise OSError(errno.ENOSPC, "No space left on device")

        flush = close = write

    log = RunLog(tmp_path, 0, 1, progress=False)
    log.file.close()
    log.file = FullDisk()
    with pytest.raises(TrainingError, match=r"could not write .*metrics.jsonl \(disk full\)"):
        log.record({"iteration": 1, "loss": 1.0})
    log.close()  # does not raise again over the error that stopped the run


def test_metrics_are_strict_json_and_the_curve_skips_nulls(tmp_path):
    """NaN is no JSON (jq, JavaScript and pandas refuse it): a validation without a labelled pixel
    or a diverged loss is written as null, and the curve leaves such points out."""
    from ann.training.logging import RunLog, plot_curve, read_metrics

    log = RunLog(tmp_path, 0, 2, progress=False)
    log.record({"iteration": 1, "loss": 1.5, "lr": 0.01})
    log.record({"iteration": 1, "val_miou": float("nan"), "val_pixel_acc": float("nan")})
    log.record({"iteration": 2, "loss": float("inf"), "lr": 0.005})
    log.close()
    text = (tmp_path / "metrics.jsonl").read_text()
    strict = [json.loads(line, parse_constant=lambda name: pytest.fail(name)) for line in text.splitlines()]
    assert strict[1]["val_miou"] is None and strict[2]["loss"] is None
    assert read_metrics(tmp_path) == strict
    assert plot_curve(tmp_path, tmp_path / "curve.png").stat().st_size > 0


def test_skip_bad_passes_through(capsys):
    assert main(["smoke", "--print-config", "--skip-bad"]) == 0
    assert "skip_bad = true" in capsys.readouterr().out


def test_lock_refuses_live_pid_and_takes_over_dead_one(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(TrainingError, match="in use by another trainer"):
            RunLock(tmp_path).acquire()
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = os.uname().nodename
    (tmp_path / "train.lock").write_text(f"{host} {dead.pid}\n")
    lock = RunLock(tmp_path)
    lock.acquire()
    assert (tmp_path / "train.lock").read_text().split()[1] == str(os.getpid())
    lock.release()


def test_full_disk_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_write(path, b"old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(TrainingError, match="disk full"):
        atomic_write(path, b"new checkpoint")
    assert path.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [path]


def test_sigterm_after_the_last_step_lets_test_and_export_finish(tmp_path, monkeypatch):
    from ann.training import loop

    real_final_test = loop.final_test

    def final_test_after_a_stop(run, split):
        os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's stop just after the last step
        real_final_test(run, split)

    def killed(signum, frame):
        raise RuntimeError("SIGTERM reached the default action: the run would die here")

    monkeypatch.setattr(loop, "final_test", final_test_after_a_stop)
    previous = signal.signal(signal.SIGTERM, killed)
    try:
        train(smoke("train.iterations=2"), tmp_path / "run", command="test")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (tmp_path / "run" / "model_card.md").exists()


def test_a_missing_plotting_package_costs_the_curve_not_the_model(tmp_path, monkeypatch, capsys):
    from ann.training import export

    def no_matplotlib(folder, path):
        raise ModuleNotFoundError("No module named 'matplotlib'")

    monkeypatch.setattr(export, "plot_curve", no_matplotlib)
    train(smoke("train.iterations=2"), tmp_path / "run", command="test")
    assert ann.load(tmp_path / "run" / "model.safetensors") is not None
    card = (tmp_path / "run" / "model_card.md").read_text()
    assert "## Training curve" not in card and "no training_curve.png" in capsys.readouterr().err


def test_resume_completed_run_is_a_no_op(run_dir):
    before = torch.load(run_dir / CHECKPOINT, weights_only=True)["model"]
    train(smoke(), run_dir, resume=True)
    after = torch.load(run_dir / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_trains_on_a_dataset_folder(tmp_path):
    from ann.cli.synthcity import write

    write(tmp_path / "cs", "val", [0, 1, 2], 0, (64, 32))  # Cityscapes layout
    folder = ["data.dataset=cityscapes", f"data.root={tmp_path / 'cs'}", "data.train_split=val"]
    with pytest.raises(DatasetError, match="test"):  # no test folder: refused before training
        train(smoke(*folder, "train.iterations=4"), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    train(smoke(*folder, "train.iterations=4", "train.val_every=0", "data.test_split="), tmp_path / "run")
    assert len(losses(tmp_path / "run")) == 4
    assert ann.load(tmp_path / "run" / "model.safetensors").meta.provenance["data"]["dataset"] == "cityscapes"


def test_git_commit_of_a_copy_without_git_comes_from_the_environment(tmp_path, monkeypatch):
    from ann.training import export

    monkeypatch.setenv("ANN_GIT_COMMIT", "abc123")
    assert export.git_commit() == "abc123"  # wins also in this checkout, which has .git
    monkeypatch.setattr(export, "__file__", str(tmp_path / "ann" / "training" / "export.py"))
    assert export.git_commit() == "abc123"
    monkeypatch.delenv("ANN_GIT_COMMIT")
    assert export.git_commit() == "unknown"


def test_card_gives_the_command_that_reproduces_a_chunked_run(tmp_path):
    out = tmp_path / "run"
    common = ["smoke", "--out", str(out), "--set", "train.progress=false", "--set", "optim.lr=0.02",
              "--set", "data.val_limit=1", "--set", "train.iterations=3"]  # fmt: skip
    assert main([*common, "--set", "data.workers=0"]) == 0
    assert main([*common, "--resume"]) == 0  # a later chunk: --resume, other workers
    provenance = ann.load(out / "model.safetensors").meta.provenance
    sets = "--set optim.lr=0.02 --set data.val_limit=1 --set train.iterations=3"
    want = f"python -m ann.train smoke --out {out} {sets}"
    assert provenance["reproduce"] == want and "--resume" in provenance["command"]
    assert f"| reproduce | `{want}` |" in (out / "model_card.md").read_text()


@pytest.mark.slow
def test_compiled_run_trains(tmp_path):
    """train.compile=true through torch.compile (inductor; about a minute on 2 CPU cores)."""
    run = train(smoke("train.compile=true", "train.iterations=3", "train.val_every=0"), tmp_path)
    assert run.iteration == 3 and run.model is not run.net  # the step called the compiled wrapper
    assert len(losses(tmp_path)) == 3


@pytest.mark.parametrize("rank", [0, 1])
def test_under_torchrun_the_run_is_reported_once_and_errors_name_their_rank(
    tmp_path, monkeypatch, capsys, rank
):
    from ann.training import loop

    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(loop, "train", lambda *args, **kwargs: None)
    assert main(["smoke", "--out", str(tmp_path / "run")]) == 0
    assert ("done:" in capsys.readouterr().out) == (rank == 0)

    def fails(*args, **kwargs):
        raise DatasetError("bad.png: truncated")

    monkeypatch.setattr(loop, "train", fails)
    assert main(["smoke", "--out", str(tmp_path / "run")]) == 2
    assert f"error (rank {rank} of 2): bad.png: truncated" in capsys.readouterr().err


def test_under_torchrun_the_commands_to_reproduce_and_resume_are_torchrun(tmp_path, monkeypatch, capsys):
    """The number of processes is part of the result: a plain `python -m ann.train` is another run."""
    from ann.training import loop
    from ann.training.state import Stopped

    for key, value in {"RANK": "0", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    seen = {}

    def stopped(*args, **kwargs):
        seen.update(kwargs)
        raise Stopped(3)

    monkeypatch.setattr(loop, "train", stopped)
    out = tmp_path / "run"
    monkeypatch.setattr("sys.argv", ["ann/train.py", "smoke", "--out", str(out)])
    assert main() == 143
    launch = "torchrun --nnodes 2 --nproc_per_node 2 -m ann.train smoke"
    assert seen["reproduce"] == f"{launch} --out {out}"
    assert f"{launch} --out {out} --resume" in capsys.readouterr().err
    # stopped again in a resumed session: the command to go on names --resume once
    monkeypatch.setattr("sys.argv", ["ann/train.py", "smoke", "--out", str(out), "--resume"])
    assert main() == 143
    assert capsys.readouterr().err.endswith(f"{launch} --out {out} --resume\n")


# The paper's recipe (Sec. 4.2) in the optimizer and schedule the run actually steps: each check
# below fails if a field is not passed on, the schedule decays at another power or over another
# length, or the scheduler is stepped twice or not at all per iteration.
def cpu_run(config, out: Path):
    from ann.training.distributed import Processes
    from ann.training.loop import build_run

    return build_run(config, out, Processes(0, 1, 0, torch.device("cpu")))


def test_optimizer_gets_the_configured_sgd_fields(tmp_path):
    group = cpu_run(smoke(), tmp_path).optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        0.01,
        0.9,
        5e-4,
        False,
    )
    other = smoke("optim.momentum=0.5", "optim.weight_decay=0.001", "optim.nesterov=true", "optim.lr=0.02")
    group = cpu_run(other, tmp_path).optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        0.02,
        0.5,
        1e-3,
        True,
    )


def test_each_step_decays_the_lr_by_poly_and_records_the_lr_it_used(tmp_path):
    run = cpu_run(smoke("train.iterations=4", "optim.poly_power=2.0"), tmp_path)
    torch.manual_seed(0)
    images, labels = torch.randn(2, 3, 32, 64), torch.randint(0, 19, (2, 32, 64))
    used = []
    for _ in range(3):
        train_step(run, images, labels)
        used.append(run.lr)
    # lr_it = 0.01 (1 - it / 4) ** 2 for it = 0, 1, 2: the step uses the lr before its own decay
    assert used == pytest.approx([0.01, 0.01 * 0.75**2, 0.01 * 0.5**2])
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.25**2)


def test_logged_lr_and_loss_are_those_of_each_step(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if "loss" in r]
    # smoke: lr 0.01, 20 iterations, power 0.9; iteration i trained at lr_(i-1)
    want = [0.01 * (1 - (r["iteration"] - 1) / 20) ** 0.9 for r in train_records]
    assert [r["lr"] for r in train_records] == pytest.approx(want)
    for r in train_records:  # Eq. 18: the logged loss is the total, main + 0.4 aux
        assert r["loss"] == pytest.approx(r["loss_main"] + 0.4 * r["loss_aux"], rel=1e-5)


def test_the_best_validation_miou_is_the_highest(monkeypatch):
    from types import SimpleNamespace

    from ann.training import loop

    scores = iter([float("nan"), 0.3, 0.5, 0.4])
    monkeypatch.setattr(loop, "measure", lambda run, split: {"miou": next(scores), "pixel_acc": 0.0})
    run = SimpleNamespace(summary=None, best_miou=float("nan"), iteration=0)
    best = []
    for _ in range(4):
        loop.validate(run, None, None)
        best.append(run.best_miou)
    assert best[1:] == [0.3, 0.5, 0.5] and best[0] != best[0]  # a NaN validation is never the best


def test_throughput_counts_the_images_of_every_process(tmp_path):
    """Under torchrun each rank steps on its share: images/s is the global rate."""
    from ann.training.distributed import Processes
    from ann.training.logging import Meter
    from ann.training.loop import build_run, train_iteration
    from ann.training.state import StopRequest

    config = smoke(
        "train.iterations=100", "train.log_every=50", "train.val_every=0", "train.checkpoint_every=50"
    )
    run = build_run(config, tmp_path, Processes(0, 4, 0, torch.device("cpu")))
    meter = Meter()
    images = torch.zeros(1, 3, 32, 64, dtype=torch.uint8)  # this rank's 1 image of a global 4
    train_iteration(run, images, torch.zeros(1, 32, 64, dtype=torch.uint8), meter, None, None, StopRequest())
    assert meter.images == 4


def test_data_wait_is_the_share_of_the_log_window_spent_in_the_loader(monkeypatch):
    from ann.training import loop

    clock = [0.0]
    monkeypatch.setattr(loop.time, "perf_counter", lambda: clock[0])

    def loader():
        for batch in range(3):
            clock[0] += 1.0  # 1 s waiting for each batch
            yield batch

    meter = loop.Meter()
    batches = meter.timed(loader())
    for _ in range(2):
        next(batches)
        clock[0] += 3.0  # 3 s of training step
        meter.images += 2
    assert meter.read() == pytest.approx((4 / 8, 2 / 8))
    next(batches)
    clock[0] += 3.0
    meter.images += 2
    assert meter.read() == pytest.approx((2 / 4, 1 / 4))  # a new window: the first one's time is gone


def test_export_is_fp16_with_the_runs_provenance(run_dir):
    """train.export_dtype = float16 halves the file; provenance holds the best val mIoU of the run
    and the wall time of its session."""
    from safetensors import safe_open

    with safe_open(run_dir / "model.safetensors", "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert "F16" in dtypes and "F32" not in dtypes
    provenance = ann.load(run_dir / "model.safetensors").meta.provenance
    val = [json.loads(line).get("val_miou") for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert provenance["best_miou"] == max(v for v in val if v is not None)
    assert provenance["wall_time_s"] > 0


def test_card_puts_each_splits_iou_in_its_column():
    from ann.training.card import model_card

    config = smoke()
    provenance = {"data": {}, "iterations": 20, "wall_time_s": 8.0, "device": "cpu", "world_size": 1,
                  "torch": "2", "git_commit": "abc", "command": "train"}  # fmt: skip
    val = {"miou": 0.5, "pixel_acc": 0.9, "per_class_iou": {"road": 0.5, "sky": None}}
    test = {"miou": 0.25, "pixel_acc": 0.8, "per_class_iou": {"road": 0.25, "sky": 0.75}}
    card = model_card(config, provenance, val, None, test)
    assert "| road | 50.00 | 25.00 |" in card and "| sky | n/a (absent) | 75.00 |" in card
    assert "- val: mIoU **50.00**, pixel accuracy 90.00" in card and "- test: mIoU **25.00**" in card


def test_reproduce_keeps_the_overrides_that_change_the_result():
    from argparse import Namespace

    from ann.cli.train import reproduce

    overrides = ["data.root=/data/cs", "data.workers=8", "train.progress=false", "train.seed=3",
                 "train.device=cpu", "optim.lr=0.02"]  # fmt: skip
    command = reproduce(Namespace(config="smoke", out=Path("runs/x")), overrides)
    want = "--set data.root=/data/cs --set train.seed=3 --set optim.lr=0.02"
    assert command == f"python -m ann.train smoke --out runs/x {want}"


def test_reproduce_gives_an_out_folder_under_the_working_directory_relative(tmp_path, monkeypatch):
    """A card's command must work on another checkout: /home/me/ann/runs/x would only work here."""
    from argparse import Namespace

    from ann.cli.train import reproduce

    monkeypatch.chdir(tmp_path / "..")
    inside = reproduce(Namespace(config="smoke", out=tmp_path / "runs" / "x"), [])
    assert inside == f"python -m ann.train smoke --out {tmp_path.name}/runs/x"
    elsewhere = tmp_path.parent.parent / "y"  # not under the working directory: kept as given
    monkeypatch.chdir(tmp_path)
    kept = reproduce(Namespace(config="smoke", out=elsewhere), [])
    assert kept == f"python -m ann.train smoke --out {elsewhere}"


def test_export_sums_the_sessions_and_names_the_data_it_was_trained_on(tmp_path):
    """The exported provenance: the wall time of earlier sessions plus this one up to the export,
    no NaN (strict JSON) when no validation scored, no folder for SynthCity (it reads none), the
    rendered size the evaluator defaults to, and the classes and colours of the data in its order."""
    import time

    from ann.training.data import open_split
    from ann.training.export import export

    config = smoke("data.root=/unused")
    run = cpu_run(config, tmp_path)
    run.wall_time, run.started = 100.0, time.perf_counter() - 30.0  # earlier sessions; 30 s in this one
    split = open_split(config.data, config.data.val_split)
    model = ann.load(export(run, split, "cmd"))
    provenance = model.meta.provenance
    assert 130.0 <= provenance["wall_time_s"] < 200.0 and provenance["best_miou"] is None
    assert provenance["data"]["root"] == "" and provenance["data"]["synthcity_size"] == [32, 64]
    assert model.meta.classes == list(split.class_names)
    assert model.meta.palette == [list(c) for c in split.palette]


def test_git_commit_is_dirty_only_with_changes_to_tracked_files(tmp_path, monkeypatch):
    """A run folder or data inside the checkout (untracked) does not make the commit dirty; an edit
    of the code does: then the commit alone does not reproduce the model."""
    from ann.training import export

    monkeypatch.delenv("ANN_GIT_COMMIT", raising=False)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "code.py").write_text("a = 1\n")
    subprocess.run([*git, "add", "code.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    monkeypatch.setattr(export, "__file__", str(tmp_path / "ann" / "training" / "export.py"))
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "metrics.jsonl").write_text("{}\n")
    assert export.git_commit() == head
    (tmp_path / "code.py").write_text("a = 2\n")
    assert export.git_commit() == f"{head}+dirty"


def test_card_names_the_data_and_seed_and_draws_a_full_table():
    """The separator row has one cell per column, or markdown renders no table at all."""
    from ann.training.card import model_card

    config = smoke("data.dataset=cityscapes", "data.root=/data/cs", "train.seed=7")
    provenance = {"data": {"root": "/data/cs"}, "iterations": 20, "wall_time_s": 8.0, "device": "cpu",
                  "world_size": 1, "torch": "2", "git_commit": "abc", "command": "train"}  # fmt: skip
    val = {"miou": 0.5, "pixel_acc": 0.9, "per_class_iou": {"road": 0.5}}
    card = model_card(config, provenance, val, None)
    assert "| data | cityscapes /data/cs |" in card and "| seed | 7 |" in card
    assert "| class | val IoU |\n|---|---|\n| road | 50.00 |" in card
    card = model_card(config, provenance, val, None, val)
    assert "| class | val IoU | test IoU |\n|---|---|---|\n" in card
    assert (duration(59.94), duration(60)) == ("59.9 s", "1.0 min")


def test_read_metrics_stops_at_a_torn_line(tmp_path):
    """A kill mid-write tears the last line; what follows it is not trusted either."""
    from ann.training.logging import read_metrics

    (tmp_path / "metrics.jsonl").write_text('{"iteration": 1}\n{"itera\n{"iteration": 3}\n')
    assert read_metrics(tmp_path) == [{"iteration": 1}]


def test_tensorboard_gets_each_scalar_at_its_iteration_and_a_resume_replaces_the_lost_ones(tmp_path):
    """A run killed after iteration 2 resumes from its checkpoint of iteration 1: TensorBoard shows
    iteration 2 of the resumed session only (purge_step), and the tqdm bar starts at 1."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from ann.training.logging import RunLog

    log = RunLog(tmp_path, 0, 4, progress=False)
    log.record({"iteration": 1, "loss": 1.0})
    log.record({"iteration": 2, "loss": 2.0})
    log.close()
    log = RunLog(tmp_path, 1, 4, progress=False)
    assert log.bar.n == 1
    log.record({"iteration": 2, "loss": 5.0})
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert events.Tags()["scalars"] == ["loss"]  # the step is the x axis, not a curve of its own
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1.0), (2, 5.0)]


def test_a_log_file_gets_a_line_per_log_step_and_no_bar(tmp_path, capsys):
    """Not a terminal (a log file, here pytest's capture): no tqdm frames with carriage returns, but
    one line per train.log_every iterations and one at the end, with loss, lr, images/s and ETA."""
    config = smoke("train.progress=true", "train.iterations=5", "train.log_every=2", "train.val_every=0")
    train(config, tmp_path)
    printed = capsys.readouterr()
    lines = [line for line in printed.err.splitlines() if line.startswith("train ")]
    assert [line.split()[1] for line in lines] == ["2/5", "4/5", "5/5"]
    assert all(word in lines[-1] for word in ("loss", "lr", "img/s", "ETA"))
    assert "\r" not in printed.err + printed.out


def test_the_bar_is_for_a_terminal_and_progress_false_silences_both(tmp_path, monkeypatch, capsys):
    from ann.training.logging import RunLog

    log = RunLog(tmp_path, 0, 4, progress=False)
    log.show(2, 1.0, 0.01, 3.0)
    assert log.bar.disable and capsys.readouterr().err == ""
    log.close()
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    log = RunLog(tmp_path, 0, 4, progress=True)
    log.step()
    log.show(1, 1.0, 0.01, 3.0)
    assert not log.bar.disable and "loss=1.0000" in log.bar.postfix and "ETA=" in log.bar.postfix
    log.close()
    assert "train 1/4" not in capsys.readouterr().err


def test_the_eta_of_a_progressive_run_counts_its_larger_iterations_at_their_cost(tmp_path):
    """7 small iterations took 7 s; the 3 left are 4x the pixels each: 12 s, not the 3 s that a
    per-iteration average gives. A resumed run times only its own iterations."""
    import time

    from ann.training.logging import RunLog, work

    costs = [(7, 1.0), (10, 4.0)]
    assert work(costs, 0, 10) == 19 and work(costs, 5, 8) == 6 and work(costs, 8, 8) == 0
    log = RunLog(tmp_path, 0, 10, progress=False, costs=costs)
    log.since = time.perf_counter() - 7.0
    assert log.eta(7) == pytest.approx(12.0, abs=0.1)
    log.close()
    log = RunLog(tmp_path, 7, 10, progress=False, costs=costs)
    log.since = time.perf_counter() - 4.0  # one large iteration in 4 s: two left
    assert log.eta(8) == pytest.approx(8.0, abs=0.1)
    log.close()


def test_curve_shows_the_validation_miou_in_percent(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from ann.training.logging import plot_curve

    (tmp_path / "metrics.jsonl").write_text(
        '{"iteration": 1, "loss": 2.0}\n{"iteration": 2, "loss": 1.0}\n{"iteration": 2, "val_miou": 0.25}\n'
    )
    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: (figures.append(fig), real_close(fig)))
    plot_curve(tmp_path, tmp_path / "curve.png")
    loss, miou = (ax.lines[0] for ax in figures[0].axes)
    assert list(loss.get_xdata()) == [1, 2] and list(loss.get_ydata()) == [2.0, 1.0]
    assert list(miou.get_xdata()) == [2] and list(miou.get_ydata()) == [25.0]


def test_stop_request_flags_sigterm_and_gives_the_handler_back():
    """After the run the process's own SIGTERM handler (a test runner's, a notebook's) is back."""
    from ann.training.state import StopRequest

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with StopRequest() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.requested
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_atomic_write_syncs_the_file_then_renames_then_syncs_the_folder(tmp_path, monkeypatch):
    """The rename is durable only once the folder's entry is on disk; the data must be on disk
    before the rename, or a power cut leaves the new name on an empty file."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "last.pt"
    atomic_write(path, b"data")
    assert events == [("fsync", f"{path}.tmp"), ("replace", str(path)), ("fsync", str(tmp_path))]
    assert path.read_bytes() == b"data"


def test_lock_of_another_host_or_a_live_pid_of_another_user_is_kept(tmp_path, monkeypatch):
    """A dead pid means nothing on another machine (a shared file system), and a process of
    another user is alive though signalling it is not permitted."""
    from ann.training import state

    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "train.lock").write_text(f"other-host {dead.pid}\n")
    with pytest.raises(TrainingError, match=f"in use by another trainer \\(pid {dead.pid} on other-host\\)"):
        RunLock(tmp_path).acquire()
    assert not state.pid_alive(0) and not state.pid_alive(-1)  # kill(0) would signal our own group

    def not_permitted(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(state.os, "kill", not_permitted)
    assert state.pid_alive(12345)


def test_a_missing_backbone_weight_file_stops_the_run_before_an_existing_folder_is_written(tmp_path):
    """A run folder made beforehand (a scheduler's output folder) is not ours to delete: the check
    of the weight file must come before config.toml and the lock are written into it."""
    from ann.checkpoint import CheckpointError

    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(CheckpointError, match="missing.pth: no such file"):
        train(smoke(f"train.backbone_weights={tmp_path / 'missing.pth'}"), out)
    assert list(out.iterdir()) == []


def test_error_hints_say_what_to_do_and_that_resume_loses_nothing(tmp_path):
    from ann.cli.train import error_hint

    checkpoint = tmp_path / "last.pt"
    bad = BadSample("unreadable image a.png")
    fix = "\nfix that file (python -m ann.check_data finds them all), or --skip-bad to skip bad samples"
    assert error_hint(bad, checkpoint) == fix  # nothing to resume from yet
    folders = "\ndocs/datasets.md shows each dataset's folders; --set data.root=DIR points at yours"
    assert error_hint(DatasetError("cityscapes: missing folder x"), checkpoint) == folders
    checkpoint.write_bytes(b"")
    assert error_hint(bad, checkpoint) == fix + "; then --resume continues from the last checkpoint"
    full = TrainingError("could not write x")
    full.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert (
        error_hint(full, checkpoint)
        == "\nfree some disk space; then --resume continues from the last checkpoint"
    )
    assert error_hint(ValueError("other"), checkpoint) == ""


def test_progressive_stages_are_smaller_images_and_fewer_kept_pixels():
    sizes = ["data.synthcity_size=64,128", "data.crop_size=64,128"]
    config = smoke("data.progressive=[[0.25, 0.5], [0.6, 0.75]]", "loss.ohem_min_kept=1000", *sizes)
    stages = resize_stages(config)
    assert [end for end, _ in stages] == [5, 12, 20]
    first, second, last = (stage for _, stage in stages)
    h, w = config.data.crop_size
    assert first.data.crop_size == scaled((h, w), 0.5) == (round(h / 16) * 8, round(w / 16) * 8)
    assert second.data.synthcity_size == scaled(config.data.synthcity_size, 0.75)
    assert (first.loss.ohem_min_kept, second.loss.ohem_min_kept) == (250, 562)
    assert last is config and first.model == config.model and first.train == config.train
    with pytest.raises(ConfigError, match="below 32"):  # 32x64 SynthCity halved
        smoke("data.progressive=[[0.5, 0.5]]")
    with pytest.raises(ConfigError, match="increase"):
        smoke("data.progressive=[[0.6, 0.5], [0.3, 0.75]]")


def test_progressive_run_trains_each_stage_at_its_size_and_resumes_across_them(tmp_path, monkeypatch):
    from ann.training.state import Stopped

    seen = []

    def recording_step(run, images, labels):
        seen.append((run.iteration, tuple(images.shape[2:]), run.criterion.main.min_kept))
        if run.iteration == 6 and not (tmp_path / "stopped").exists():  # SIGTERM in stage one
            (tmp_path / "stopped").touch()
            os.kill(os.getpid(), signal.SIGTERM)
        return train_step(run, images, labels)

    monkeypatch.setattr("ann.training.loop.train_step", recording_step)
    sizes = ["data.synthcity_size=64,128", "data.crop_size=64,128", "train.log_every=1"]
    config = smoke("data.progressive=[[0.5, 0.5]]", "loss.ohem_min_kept=1000", *sizes)
    h, w = config.data.crop_size
    small = scaled((h, w), 0.5)
    with pytest.raises(Stopped):
        train(config, tmp_path / "run")
    train(config, tmp_path / "run", resume=True)
    stage_one = [(i, small, 250) for i in range(10)]
    assert seen == stage_one + [(i, (h, w), 1000) for i in range(10, 20)]
    resumed = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in resumed if "loss" in r] == list(range(1, 21))


def test_card_says_where_and_at_what_scale_the_model_was_trained(tmp_path):
    from ann.training.card import trained_on
    from ann.training.export import device_name

    device = device_name(torch.device("cpu"))
    assert (
        device.startswith("cpu (") and f"{os.cpu_count()} cores), {torch.get_num_threads()} threads" in device
    )
    sizes = ["data.synthcity_size=64,128", "data.crop_size=64,128", "data.progressive=[[0.7, 0.5]]"]
    train(smoke(*sizes, "train.iterations=4"), tmp_path / "run", command="test")
    provenance = ann.read_meta(tmp_path / "run" / "model.safetensors").provenance
    line = trained_on(provenance)
    seen = 4 * smoke().train.batch_size
    expected = f"{device} at 128x64 SynthCity images; iterations before 70% at 64x32; {seen} images seen"
    assert (
        line == expected
        and f"| trained on | {expected} |" in (tmp_path / "run" / "model_card.md").read_text()
    )
    gpu = {"device": "NVIDIA H100", "world_size": 2, "images_seen": 40,
           "data": {"dataset": "cityscapes", "crop_size": [512, 1024], "progressive": []}}  # fmt: skip
    assert trained_on(gpu) == "2 processes on NVIDIA H100 at 1024x512 crops; 40 images seen"


def test_the_final_test_has_its_own_limit_and_the_card_says_which(tmp_path, monkeypatch):
    from ann.training import loop

    limits = []
    real_measure = loop.measure
    monkeypatch.setattr(
        loop,
        "measure",
        lambda run, split, limit=None: limits.append(limit) or real_measure(run, split, limit),
    )
    train(smoke("train.iterations=2", "data.test_limit=3"), tmp_path / "run", command="test")
    assert limits == [None, 3]  # validation on data.val_limit (2), the test on its own 3
    provenance = ann.read_meta(tmp_path / "run" / "model.safetensors").provenance
    assert (provenance["data"]["val_limit"], provenance["data"]["test_limit"]) == (2, 3)
    card = (tmp_path / "run" / "model_card.md").read_text()
    assert "(first 2 images)" in card and "(first 3 images)" in card and "of each split" not in card
    assert smoke("data.test_limit=0").data.resolved_test_limit == 0
    assert smoke().data.resolved_test_limit == 2  # -1: as val_limit
    with pytest.raises(ConfigError, match="or data.test_limit"):
        smoke("data.test_split=train", "data.test_limit=0")


def test_a_frozen_backbone_from_a_trained_ann_keeps_its_weights_and_statistics(run_dir, tmp_path):
    """The head-only ablation protocol: the smoke ANN's backbone starts an FCN whose head alone trains."""
    trained = ann.load(run_dir / "model.safetensors")
    weights = f"train.backbone_weights={run_dir / 'model.safetensors'}"
    config = smoke(weights, "train.freeze_backbone=true", "model.fusion=none", "model.context=none")
    run = train(config, tmp_path / "fcn")
    backbone = run.net.backbone.state_dict()
    for name, tensor in trained.backbone.state_dict().items():  # weights and BN running statistics
        assert torch.equal(backbone[name].to(tensor.dtype), tensor), name
    assert not any(p.requires_grad for p in run.net.backbone.parameters())
    head = ann.load(tmp_path / "fcn" / "model.safetensors").classifier.state_dict()
    assert any(not torch.equal(t, trained.classifier.state_dict()[k]) for k, t in head.items())  # trained
    with pytest.raises(TrainingError, match="freeze_backbone keeps a random backbone"):
        train(smoke("train.freeze_backbone=true"), tmp_path / "refused")

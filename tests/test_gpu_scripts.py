"""The GPU session round trip on CPU: train a queue in a deadline, ship in parts, join, install."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import ann
from scripts import gpu_unpack

REPO = Path(__file__).resolve().parents[1]
ENTRY = "smoke+train.device=cpu+train.iterations=3+data.val_limit=1+data.test_split=test"


def session(cwd: Path, out: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the script finds `ann` itself
    env.update(OUT=str(out), ANN_PART_BYTES=str(5 * 2**20))
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_session.py"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> tuple[Path, Path]:
    machine = tmp_path_factory.mktemp("machine")  # stands for the device's repo copy
    out = tmp_path_factory.mktemp("out")
    session(machine, out, ENTRY, "--deadline", "240")
    return machine, out


def test_session_ships_a_finished_run_in_checked_parts(shipped, tmp_path):
    machine, out = shipped
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runs"] == ["smoke"]
    assert len(manifest["parts"]) > 1  # split (parts of 5 MiB here, 15 MiB on the GPU)
    assert (
        gpu_unpack.main([str(out), "--into", str(tmp_path / "gpu"), "--install", str(tmp_path / "ck")]) == 0
    )
    model = ann.load(tmp_path / "ck" / "smoke.safetensors")
    assert model.meta.provenance["iterations"] == 3 and model.meta.provenance["test_metrics"]
    card = (tmp_path / "ck" / "smoke.md").read_text()
    assert "(smoke_curve.png)" in card and (tmp_path / "ck" / "smoke_curve.png").is_file()
    assert (tmp_path / "gpu" / "logs" / "smoke.log").is_file()


def test_next_session_neither_retrains_nor_reships(shipped, tmp_path):
    machine, _ = shipped
    stamp = (machine / "runs" / "smoke" / "model.safetensors").stat().st_mtime_ns
    out = tmp_path / "out2"
    text = session(machine, out, ENTRY, "--deadline", "60")
    assert "ann.train" not in text and "shipped no runs" in text
    assert (machine / "runs" / "smoke" / "model.safetensors").stat().st_mtime_ns == stamp
    assert json.loads((out / "manifest.json").read_text())["runs"] == []


def test_damaged_or_missing_part_is_named_and_nothing_extracted(shipped, tmp_path, capsys):
    _, out = shipped
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in out.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    damaged = copy / "bundle.part01"
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"\0")
    assert gpu_unpack.main([str(copy), "--into", str(tmp_path / "x")]) == 2
    assert "bundle.part01" in capsys.readouterr().err and not (tmp_path / "x").exists()
    damaged.unlink()
    assert gpu_unpack.main([str(copy), "--into", str(tmp_path / "x")]) == 2
    assert "part missing" in capsys.readouterr().err


def test_check_commands_are_valid_trainer_calls(tmp_path, monkeypatch):
    """--check runs on the GPU only; here every command it would run is parsed by the trainer."""
    from ann.cli.train import main as train_main
    from scripts import gpu_session

    commands = []
    monkeypatch.setattr(gpu_session, "sh", lambda command, *a, **k: commands.append(command) or 0)
    pools = []  # rendering the real pool here cost 16 GB of disk and 7 minutes
    monkeypatch.setattr(gpu_session, "render_pools", lambda queue, logs: pools.append(queue))
    monkeypatch.chdir(tmp_path)
    gpu_session.check(
        ["ann-r18-synthcity", "fcn-r18-synthcity"], tmp_path, gpu_session.time.monotonic() + 600
    )
    trainer = [c for c in commands if "ann.train" in c]
    assert len(trainer) == 5  # cuda, compile, ddp/nccl, a probe of the first entry, streaming
    for command in trainer:
        args = command[command.index("ann.train") + 1 :]
        assert train_main([*args, "--print-config"]) == 0, command
    assert any("data.synthcity_train_images=0" in c for c in trainer)
    assert not any("fcn-r18-synthcity" in c for c in trainer)  # it reports its rate as it trains
    assert pools == [["ann-r18-synthcity", "fcn-r18-synthcity"]]  # rendered once, before the probes
    assert json.loads((tmp_path / "check.json").read_text()).keys() >= {
        "smoke-cuda",
        "probe-ann-r18-synthcity",
    }


def test_study_switches_every_table7_setting(shipped, monkeypatch):
    """--study NAME evaluates the trained run with each Table 7 sampling (commands checked here)."""
    from scripts import gpu_session

    machine, _ = shipped
    commands = []
    monkeypatch.setattr(gpu_session, "sh", lambda command, *a, **k: commands.append(command) or 0)
    monkeypatch.chdir(machine)
    gpu_session.study(["smoke", "never-trained"], gpu_session.time.monotonic() + 600, machine / "logs")
    switched = {(c[c.index("--sampling") + 1], c[c.index("--sizes") + 1]) for c in commands}
    assert len(commands) == 8 and ("pyramid_max", "1,2,3,6") in switched and ("random", "15") in switched
    assert all(c[c.index("ann.evaluate") + 1] == "runs/smoke/model.safetensors" for c in commands)


def test_queue_entries_name_their_run_folder():
    from scripts.gpu_session import parse_entry

    assert parse_entry("fcn-r18-synthcity") == ("fcn-r18-synthcity", "fcn-r18-synthcity", [])
    seed1 = parse_entry("fcn-seed1=fcn-r18-synthcity+train.seed=1+optim.lr=0.02")
    assert seed1 == ("fcn-seed1", "fcn-r18-synthcity", ["train.seed=1", "optim.lr=0.02"])


def test_device_tree_hides_checkpoints_from_the_index_and_restores_them(tmp_path):
    """hide: the weights stay on disk but are neither tracked nor untracked-unignored (not sent)."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@t")
    git("config", "user.name", "t")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "a.safetensors").write_bytes(b"w" * 100)
    (tmp_path / "checkpoints" / "a.md").write_text("card")
    git("add", "-A")
    git("commit", "-qm", "x")
    script = ["bash", str(REPO / "scripts" / "device_tree.sh")]
    subprocess.run([*script, "hide"], cwd=tmp_path, check=True, capture_output=True)
    assert git("ls-files").split() == ["checkpoints/a.md"]
    assert "a.safetensors" not in git("ls-files", "--others", "--exclude-standard")
    assert (tmp_path / "checkpoints" / "a.safetensors").read_bytes() == b"w" * 100
    subprocess.run([*script, "restore"], cwd=tmp_path, check=True, capture_output=True)
    assert git("status", "--porcelain") == "" and "a.safetensors" in git("ls-files")


def test_check_skips_what_the_deadline_leaves_no_time_for(tmp_path, monkeypatch):
    from scripts import gpu_session

    commands = []
    monkeypatch.setattr(gpu_session, "sh", lambda command, *a, **k: commands.append(command) or 0)
    monkeypatch.setattr(gpu_session, "render_pools", lambda queue, logs: None)
    monkeypatch.chdir(tmp_path)
    deadline = gpu_session.time.monotonic() + gpu_session.RESERVE_S + 20  # 20 s: too little for a probe
    gpu_session.check(["ann-r18-synthcity"], tmp_path, deadline)
    results = json.loads((tmp_path / "check.json").read_text())
    assert not [c for c in commands if "ann.train" in c]
    assert all(r == {"exit": "skipped: deadline"} for r in results.values())


def test_parallel_queue_trains_runs_side_by_side(tmp_path):
    entries = [f"{name}={ENTRY}" for name in ("a", "b", "c")]
    text = session(tmp_path, tmp_path / "out", *entries, "--parallel", "2", "--deadline", "240")
    assert all((tmp_path / "runs" / name / "model.safetensors").exists() for name in "abc")
    assert text.count(": exit 0") == 3
    first_end = text.index(": exit 0")
    assert "--out runs/a" in text[:first_end] and "--out runs/b" in text[:first_end]  # side by side
    assert "--out runs/c" not in text[:first_end]
    # one 24 MB smoke model per 35 MiB bundle (5 MiB parts here): whichever of a and b finished
    # first; the next calls ship the others
    shipped = json.loads((tmp_path / "out" / "manifest.json").read_text())["runs"]
    assert shipped in (["a"], ["b"])
    # a run named after no bundled config (a second seed, say) is unpacked, not installed
    into, checkpoints = tmp_path / "gpu", tmp_path / "ck"
    assert gpu_unpack.main([str(tmp_path / "out"), "--into", str(into), "--install", str(checkpoints)]) == 0
    assert (into / shipped[0] / "model.safetensors").is_file() and not list(checkpoints.glob("*"))


def test_bench_commands_parse(tmp_path, monkeypatch):
    from ann.cli.bench import parse_args
    from scripts import gpu_session

    commands = []
    monkeypatch.setattr(gpu_session, "sh", lambda command, *a, **k: commands.append(command) or 0)
    gpu_session.bench(tmp_path, gpu_session.time.monotonic() + 600)
    assert len(commands) == 6  # paper widths, shipped widths, network; fp32 and bf16
    for command in commands:
        args = parse_args(command[command.index("ann.bench") + 1 :])
        assert args.device == "cuda" and args.json.parent == tmp_path


def test_stop_asks_politely_then_kills_the_whole_group(tmp_path):
    """SIGTERM reaches the trainer (which checkpoints); SIGKILL then takes its workers too."""
    from scripts import gpu_session

    code = (
        "import signal, subprocess, sys, time\n"
        "worker = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(worker.pid, flush=True)\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
        "time.sleep(60)\n"
    )
    log = tmp_path / "child.log"
    proc = gpu_session.start([sys.executable, "-c", code], log)
    deadline = time.monotonic() + 20
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int(log.read_text().split()[0])
    gpu_session.stop(proc, grace=10)
    assert proc.returncode == 143
    time.sleep(0.2)
    assert not alive(worker)  # the worker in the same process group is gone


def alive(pid: int) -> bool:
    """Running or sleeping; a zombie waiting for its reaper is dead."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in state


def test_only_runs_with_a_card_are_finished_and_failed_runs_are_not_retried(tmp_path, monkeypatch):
    """The export writes the card last: a run killed between weights and card is resumed, not
    shipped; a run that exited 2 in an earlier call is skipped, not started again."""
    from scripts import gpu_session

    monkeypatch.chdir(tmp_path)
    for name in ("half", "done", "broken"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "model.safetensors").write_bytes(b"w")
    (tmp_path / "runs" / "done" / "model_card.md").write_text("card")
    (tmp_path / "runs" / "broken.failed").write_text("exit 2")
    out, logs = tmp_path / "out", tmp_path / "logs"
    out.mkdir()
    logs.mkdir()
    gpu_session.Shipper(logs, out)()
    assert json.loads((out / "manifest.json").read_text())["runs"] == ["done"]
    started = []
    monkeypatch.setattr(
        gpu_session, "start", lambda command, log, env=None: started.append(command) or Done()
    )
    gpu_session.train_queue(["half", "done", "broken"], gpu_session.time.monotonic() + 600)
    assert [c[c.index("--out") + 1] for c in started] == ["runs/half"]


class Done:
    """A finished child process."""

    returncode = 0
    pid = 2**22 + 1  # above Linux's pid_max: no process has it

    def poll(self):
        return 0


def test_reproduction_tables_fill_in_and_check(tmp_path, capsys):
    """Runs with known test mIoU, a Table 7 switch and block costs -> the tables and verdicts."""
    from ann.checkpoint import CheckpointMeta, save
    from ann.models.network import build_network
    from ann.training.config import load_config
    from scripts import reproduction_tables

    net = build_network(load_config("local9-synthcity", ["model.head_channels=8"]).model)
    results = {"ann-r18-synthcity": 0.62, "fcn-r18-synthcity": 0.57, "nb-r18-synthcity": 0.60,
               "apnb-r18-synthcity": 0.604, "local9-synthcity": 0.45, "ann-r18-synthcity-rerun": 0.615,
               "ann-r18-synthcity-pyramid-max": 0.61}  # fmt: skip
    for name, miou in results.items():
        (tmp_path / name).mkdir()
        save(
            net,
            tmp_path / name / "model.safetensors",
            CheckpointMeta(net.config, provenance={"test_metrics": {"miou": miou}}),
        )
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "switch_ann-r18-synthcity_pyramid_max_1-2-3-6.json").write_text(json.dumps({"miou": 0.598}))
    gpu = {"dtype": "bf16", "device_name": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130"}
    rows = [{"block": b, "height": 64, "width": 64, "gmacs": g, "time_ms": t, "peak_mem_mb": m, **gpu}
            for b, g, t, m in (("nb", 2.4, 1.5, 300.0), ("apnb", 0.3, 0.4, 20.0))]  # fmt: skip
    (logs / "bench_block_r18_bf16.json").write_text(json.dumps(rows))
    assert reproduction_tables.main(["--runs", str(tmp_path), "--ceiling", "60.8"]) == 0
    text = capsys.readouterr().out
    assert "| + AFNB + APNB (Full) | 79.9 | 62.0 |  | 0.30 | 0.40 | 20.0 |" in text
    assert "| pyramid max | 1,2,3,6 | 50 | 79.1 | 61.0 | 59.8 |" in text
    assert "| full beats baseline by >= 3 mIoU | 5.00 | PASS |" in text
    assert "| +APNB within 0.5 mIoU of +NB | 0.40 | PASS |" in text
    assert "| APNB block >= 4x cheaper than NB (GMACs) | 8.00 | PASS |" in text
    assert "| local9 control >= 20 mIoU below full | 17.00 | FAIL |" in text
    assert "| re-run within 1.0 test mIoU of the card | -0.50 | PASS |" in text
    assert "| local9 below the context-blind ceiling (60.8) | 45.00 | PASS |" in text
    assert "| bench_block_r18_bf16 | apnb | 64 x 64 | bf16 | 0.3 | 0.4 | 20.0 | NVIDIA H100" in text


def test_check_suggests_iterations_for_seven_minutes():
    from scripts.gpu_session import iterations_for, train_command

    command = train_command("ann-r18-synthcity", Path("runs/x"))  # batch 16 in the config
    assert iterations_for(7, 400.0, command) == 10500  # 7 x 60 x 400 / 16
    assert iterations_for(7, 400.0, train_command("ann-r18-synthcity+train.batch_size=8", Path("x"))) == 21000


def test_a_program_the_machine_lacks_does_not_end_the_call(tmp_path):
    """nvidia-smi may be missing from a GPU image: the check logs it and goes on."""
    from scripts import gpu_session

    log = tmp_path / "env.log"
    assert gpu_session.sh(["no-such-program-on-this-machine", "--version"], log) == 127
    assert "no-such-program-on-this-machine" in log.read_text()


class FakeTrainer:
    """`start` for main(): each run finishes at once with a card and weights; the order is logged."""

    def __init__(self, events: list) -> None:
        self.events = events

    def __call__(self, command, log, env=None):
        out = Path(command[command.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.safetensors").write_bytes(b"w")
        (out / "model_card.md").write_text("card")
        self.events.append(("train", out.name))
        return Done()


def fake_machine(tmp_path, monkeypatch) -> list:
    """main() in tmp_path with trainers and evaluations recorded, not run."""
    from scripts import gpu_session

    events = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    monkeypatch.setattr(gpu_session, "start", FakeTrainer(events))
    monkeypatch.setattr(gpu_session, "sh", lambda command, *a, **k: events.append(("sh", command)) or 0)
    return events


def test_runs_that_came_back_are_not_trained_again_on_a_cold_machine(shipped, tmp_path, monkeypatch):
    """A machine given back loses runs/; the list gpu_unpack keeps here travels (carry) instead."""
    from scripts import gpu_session

    _, out = shipped
    assert gpu_unpack.main([str(out), "--into", str(tmp_path / "runs" / "gpu")]) == 0
    assert (tmp_path / "runs" / "gpu" / "shipped.txt").read_text().split() == ["smoke"]
    events = fake_machine(tmp_path, monkeypatch)
    gpu_session.main(["smoke", "other=smoke", "--deadline", "600"])
    assert events == [("train", "other")]
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["runs"] == ["other"]


def test_study_runs_as_soon_as_its_model_is_finished(tmp_path, monkeypatch):
    """A queue longer than the session never ends; the Table 7 switch must not wait for it."""
    from scripts import gpu_session

    events = fake_machine(tmp_path, monkeypatch)
    gpu_session.main(["a=smoke", "b=smoke", "--study", "a", "--deadline", "600"])
    kinds = [e[0] if e[0] == "sh" else e for e in events]
    assert kinds.index("sh") < kinds.index(("train", "b")) and kinds.count("sh") == 8


def test_a_mistyped_queue_entry_is_reported_and_the_rest_trains(tmp_path, monkeypatch, capsys):
    from scripts import gpu_session

    events = fake_machine(tmp_path, monkeypatch)
    gpu_session.main(["--check", "smoke+train.iteration=5", "no-such-config", "a=smoke", "--deadline", "600"])
    assert [e for e in events if e[0] == "train"] == [("train", "a")]
    text = capsys.readouterr().out
    assert "no field 'iteration'" in text and "unknown config 'no-such-config'" in text


def fake_training(tmp_path, monkeypatch, ended: bool, seconds: float) -> "subprocess.Popen":
    """A trainer child that runs `seconds` and obeys SIGTERM at once (exit 143); if `ended`, its
    last step is logged already (it is validating, testing or exporting) and it writes the card."""
    from scripts import gpu_session

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gpu_session, "START_S", 0)
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    last = {"iteration": 20 if ended else 7, "loss": 1.0}  # smoke trains 20 iterations
    (run / "metrics.jsonl").write_text(json.dumps(last) + "\n")
    code = (
        "import signal, sys, time, pathlib\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
        f"time.sleep({seconds})\n"
        "pathlib.Path('runs/r/model_card.md').write_text('card')\n"
    )
    monkeypatch.setattr(gpu_session, "train_command", lambda entry, out, *extra: [sys.executable, "-c", code])
    return run


def test_a_run_past_its_last_step_is_left_to_test_and_export(tmp_path, monkeypatch):
    """SIGTERM after the last step kills the trainer (no stop request is read there): the test
    split and the export would be lost, and with them the run if the machine goes cold."""
    from scripts import gpu_session

    run = fake_training(tmp_path, monkeypatch, ended=True, seconds=3)
    deadline = time.monotonic() + gpu_session.RESERVE_S + 10
    gpu_session.train_queue(["r=smoke"], deadline)
    assert (run / "model_card.md").exists()


def test_training_goes_on_until_shortly_before_the_deadline(tmp_path, monkeypatch):
    """Packing takes about a second: a call stopped 70 s early wasted a minute of each call."""
    from scripts import gpu_session

    fake_training(tmp_path, monkeypatch, ended=False, seconds=60)
    started = time.monotonic()
    deadline = started + 45
    gpu_session.train_queue(["r=smoke"], deadline)
    assert deadline - time.monotonic() <= 42  # stopped at most 40 s (+1 s poll) before the deadline
    assert time.monotonic() - started < 20


def test_summary_survives_a_metrics_line_torn_by_a_kill(tmp_path):
    from scripts.gpu_session import summarise

    record = {"iteration": 10, "loss": 2.0, "images_per_s": 5.0, "data_wait": 0.1}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(record) + "\n" + '{"iteration": 20, "lo')
    assert summarise(tmp_path, 0) == {"iteration": 10, "loss": 2.0, "images_per_s": 5.0, "data_wait": 0.1,
                                      "gpu_max_memory_gb": None}  # fmt: skip


def test_a_package_the_export_needs_is_named_before_training(tmp_path, monkeypatch, capsys):
    """matplotlib is imported only by the export, after the whole run has trained."""
    from scripts import gpu_session

    find_spec = gpu_session.importlib.util.find_spec
    without = lambda name: None if name == "matplotlib" else find_spec(name)  # noqa: E731
    monkeypatch.setattr(gpu_session.importlib.util, "find_spec", without)
    events = fake_machine(tmp_path, monkeypatch)
    gpu_session.main(["a=smoke", "--deadline", "600"])
    text = capsys.readouterr().out
    assert "warning: matplotlib is not installed" in text
    assert text.index("warning: matplotlib") < text.index("a=smoke: exit") and events


def test_parallel_runs_are_stopped_together_within_one_grace(tmp_path, monkeypatch):
    """Stopped one after the other, two slow-to-stop runs took two graces: past the deadline."""
    from scripts import gpu_session

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gpu_session, "START_S", 0)
    code = (  # checkpointing takes 3 s
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(3), sys.exit(143)))\n"
        "time.sleep(60)\n"
    )
    monkeypatch.setattr(gpu_session, "train_command", lambda entry, out, *extra: [sys.executable, "-c", code])
    (tmp_path / "runs").mkdir()
    started = time.monotonic()
    gpu_session.train_queue(["a=smoke", "b=smoke"], started + gpu_session.RESERVE_S + 20, parallel=2)
    assert time.monotonic() - started < 5.5  # 1 s poll + one 3 s stop, not two


def test_a_trainer_left_running_by_a_cut_off_call_is_stopped_first(tmp_path, monkeypatch):
    """gpu_session killed by the tool leaves its trainers (own sessions) holding their runs' locks."""
    from scripts import gpu_session

    fake_machine(tmp_path, monkeypatch)
    monkeypatch.setattr(gpu_session, "GRACE_S", 5)
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
    code += "time.sleep(120)"
    command = [sys.executable, "-c", code, "-m", "ann.train"]  # named like a trainer
    leftover = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, text=True)
    assert leftover.stdout.readline().strip() == "up"
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "trainers.pid").write_text(f"{leftover.pid}\n")
    try:
        gpu_session.main(["--no-train", "--deadline", "600"])
        assert leftover.wait(timeout=10) == -9  # ignored SIGTERM, so SIGKILL after the grace
    finally:
        leftover.kill()
    assert not (tmp_path / "runs" / "trainers.pid").exists()


def test_summary_of_a_diverged_run_gives_its_loss_as_null(tmp_path):
    """The trainer writes a non-finite loss as null (strict JSON); the probe summary still reads."""
    from scripts.gpu_session import summarise

    records = [{"iteration": i, "loss": None, "images_per_s": 4.0 + i, "data_wait": None} for i in (10, 20)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert summarise(tmp_path, 0) == {"iteration": 20, "loss": None, "images_per_s": 24.0, "data_wait": None,
                                      "gpu_max_memory_gb": None}  # fmt: skip

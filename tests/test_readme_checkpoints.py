"""Every checkpoint the docs name ships (or a documented command makes it), and the README's
commands and library example that use the shipped model run as written."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ann.training.config import list_configs

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
NAMED = re.compile(r"checkpoints/([\w.-]+\.safetensors)")
SHARED = ("checkpoints", "app")  # linked into the command's folder
MADE = re.compile(r"--out\s+checkpoints/([\w.-]+\.safetensors)")  # the user's own, e.g. ann.convert's output


def documents() -> list[Path]:
    return [README, ROOT / "checkpoints" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_checkpoint_the_docs_name_is_shipped():
    missing = []
    for doc in documents():
        text = doc.read_text()
        # the user's own files: ann.convert's --out, a GPU session's installs (named after configs)
        made = set(MADE.findall(text)) | {f"{config}.safetensors" for config in list_configs()}
        for name in sorted(set(NAMED.findall(text)) - made):
            if not (ROOT / "checkpoints" / name).is_file():
                missing.append(f"{doc.relative_to(ROOT)} names checkpoints/{name}")
    assert not missing, "; ".join(missing)


def readme_commands() -> list[str]:
    """The README's `python -m ann.*` lines that use a shipped checkpoint, continuations joined."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    commands = [line.split("#")[0].strip() for line in lines]
    return [c for c in commands if c.startswith("python -m ann.") and NAMED.search(c)]


def test_the_readme_has_commands_on_the_shipped_model():
    programs = {c.split()[2] for c in readme_commands()}
    assert {"ann.predict", "ann.deploy", "ann.info"} <= programs


def run_as_written(command: str, cwd: Path) -> subprocess.CompletedProcess:
    for shared in SHARED:  # the command's relative paths resolve as in a checkout
        (cwd / shared).symlink_to(ROOT / shared)
    argv = shlex.split(re.sub(r"\s\[[^\]]*\]", "", command))  # [optional flags] are left out
    argv[0] = sys.executable
    if argv[2] == "ann.evaluate":
        argv += ["--limit", "8"]  # the card scores the whole split; the command's working is what is tested
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # as from the checkout's root
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def command_params():
    for command in readme_commands():
        slow = command.split()[2] == "ann.deploy"  # an ONNX export and its onnxruntime check
        yield pytest.param(command, id=command.split()[2], marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("command", list(command_params()))
def test_readme_command_runs_as_written(command, tmp_path):
    done = run_as_written(command, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    program = command.split()[2]
    if program in ("ann.predict", "ann.deploy"):
        written = [p for p in tmp_path.rglob("*") if p.relative_to(tmp_path).parts[0] not in SHARED]
        assert any(p.is_file() for p in written), f"{command} wrote nothing"
    if program == "ann.evaluate":
        assert "miou" in done.stdout.lower(), done.stdout


def test_library_example_runs_on_the_shipped_model():
    code = re.search(r"## The library\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    photo = np.asarray(Image.open(ROOT / "app/examples/synthcity/leftImg8bit/test/synthcity/"
                                  "synthcity_000004_leftImg8bit.png").convert("RGB"))  # fmt: skip
    namespace = {"image": photo, "x": torch.randn(1, 3, 128, 256)}
    with torch.inference_mode():
        exec(code, namespace)  # noqa: S102
    labels = namespace["labels"]
    assert labels.shape == photo.shape[:2]
    assert namespace["logits"].shape[:2] == (1, namespace["model"].config.num_classes)
    # a trained model sees more than one class in a street scene
    assert len(np.unique(np.asarray(labels))) >= 5

"""The models the app can show (`ModelStore`, shared) and one browser tab's state (`Session`).

How a tab gets the current model, image and stages. Every handler that needs them takes the
`gr.State` built by `layout.build_demo` as an input and returns it as an output:

    def handler(session: Session | None, ...):
        session = require(session)               # raises gr.Error "segment an image first"
        explorer = session.explorer              # ann.explore.Explorer (shared model, own caches)
        explorer.model, explorer.meta            # the ANN in eval mode and its CheckpointMeta
        explorer.stages                          # [Stage1..Stage5] tensors (1, C, h, w) of the image
        result = explorer.result                 # ann.explore.Result: labels, confidence, entropy,
                                                 # logits (K, H, W), head (HeadOutput), attention
        session.image                            # the uint8 RGB image that was run (after resizing)
        session.target                           # ground-truth trainIds (H, W) uint8, or None

Listeners that run the model must share one concurrency group: `**MODEL_QUEUE`
(`concurrency_id="model"`, one at a time), because sessions on the same checkpoint share one
network. Explorer takes the model lock itself too, so direct calls from tests are safe.
"""

from __future__ import annotations

import ctypes
import functools
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ann.checkpoint import CheckpointMeta, file_sha256, load
from ann.explore import Explorer, Result
from ann.models.network import ANN, build_network, variant

MODEL_QUEUE = {"concurrency_id": "model", "concurrency_limit": 1}
UNTRAINED = "untrained ResNet-18 ANN (no bundled checkpoint yet)"
DEFAULT_CHECKPOINT = "ann-r18-synthcity.safetensors"
STATE_TTL_S = 30 * 60  # a session holds ~200 MB at 1024x512 (stages, head, maps)


try:
    MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
except (OSError, AttributeError):
    MALLOC_TRIM = None  # not glibc: nothing to trim


def returns_freed_memory(handler):
    """Run a model handler, then hand the allocator's free pages back to the OS (malloc_trim).

    Every image size gives the network MB-sized buffers of other sizes. glibc serves them from its
    arenas (its mmap threshold rises to the largest buffer freed so far), and the freed gaps
    between the sessions' live caches stayed resident: +23% RSS over the 16-client load test
    while the Python heap, gc object counts and session count stayed flat (docs/reliability.md).
    Trimming costs ~10 ms per model call, far less than the call itself.
    """

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        finally:
            if MALLOC_TRIM is not None:
                MALLOC_TRIM(0)

    return wrapper


@dataclass
class Session:
    """What one browser tab is looking at."""

    checkpoint: str
    explorer: Explorer
    image: np.ndarray | None = None  # the image that was run (uint8 RGB)
    target: np.ndarray | None = None  # ground truth at image size, trainIds, 255 = ignore
    image_name: str = ""  # where the image came from (upload, example file name)
    selection: dict = field(default_factory=dict)  # last click: {"x", "y", "block", "anchor"}

    @property
    def result(self) -> Result | None:
        return self.explorer.result


class ModelStore:
    """Checkpoints on disk and uploaded files, each loaded once (cached by sha256)."""

    def __init__(self, checkpoint_dir: str | Path = "checkpoints", max_models: int = 4) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.max_models = max_models
        self._paths: dict[str, Path] = {}  # display name -> file
        self._models: dict[str, ANN] = {}  # sha256 -> model
        self._locks: dict[str, threading.RLock] = {}
        self._names_to_sha: dict[str, str] = {}
        self._guard = threading.Lock()
        self.refresh()

    def refresh(self) -> list[str]:
        for path in sorted(self.checkpoint_dir.glob("*.safetensors")):
            self._paths.setdefault(path.name, path)
        return self.names()

    def names(self) -> list[str]:
        names = list(self._paths)
        return names if names else [UNTRAINED]

    def default(self) -> str:
        names = self.names()
        return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT in names else names[0]

    def add_file(self, path: str | Path, uploaded: bool = True) -> str:
        """Register a checkpoint file (ours, or an authors' .pth via ann.convert); its name."""
        path = Path(path)
        name = f"{path.name} (uploaded)" if uploaded else path.name
        with self._guard:
            # a new file under a known name replaces the old one; a refused file is never listed
            old = self._paths.pop(name, None), self._names_to_sha.pop(name, None)
        try:
            model = read_checkpoint(path)  # now, outside the guard: a bad file is reported at upload
        except Exception:
            with self._guard:
                if old[0] is not None:
                    self._paths[name] = old[0]
                if old[1] is not None:
                    self._names_to_sha[name] = old[1]
            raise
        with self._guard:
            self._register(name, path, model)
            self._paths[name] = path
        return name

    def model(self, name: str) -> ANN:
        with self._guard:
            sha = self._names_to_sha.get(name)
            if sha in self._models:
                return self._models[sha]
            if name == UNTRAINED:
                return self._register(name, None, untrained_model())
            if name not in self._paths:
                raise ValueError(f"unknown checkpoint {name!r}; available: {', '.join(self.names())}")
            path = self._paths[name]
            sha = file_sha256(path)
            if sha in self._models:  # same file under another name
                self._names_to_sha[name] = sha
                return self._models[sha]
            return self._register(name, path, read_checkpoint(path))

    def _register(self, name: str, path: Path | None, model: ANN) -> ANN:
        sha = model.meta.sha256 or (file_sha256(path) if path else "untrained")
        model.meta.sha256 = sha
        if len(self._models) >= self.max_models:  # drop the oldest; sessions keep their reference
            self._models.pop(next(iter(self._models)))
        self._models[sha] = model
        self._locks.setdefault(sha, threading.RLock())
        self._names_to_sha[name] = sha
        if path is not None:
            self._paths.setdefault(name, path)
        return model

    def get(self, name: str) -> Explorer:
        """A fresh Explorer (own caches and sampling) on the shared model of `name`."""
        model = self.model(name)
        return Explorer(model, model.meta, self._locks[model.meta.sha256])

    def session(self, name: str) -> Session:
        return Session(name, self.get(name))

    def path(self, name: str) -> Path | None:
        return self._paths.get(name)


def untrained_model() -> ANN:
    """Random-init full ResNet-18 ANN so the mechanics work before a model is trained."""
    torch.manual_seed(0)
    model = build_network(variant("full", backbone="resnet18")).eval()
    model.meta = CheckpointMeta(
        model.config,
        provenance={"note": "untrained: random initialisation (seed 0), no bundled checkpoint yet"},
        sha256="untrained",
    )
    return model


def read_checkpoint(path: Path) -> ANN:
    """Our .safetensors, or an authors' .pth/.pt converted; also when an evicted model is read again."""
    return convert_original(path) if path.suffix in (".pth", ".pt") else load(path)


def convert_original(path: Path) -> ANN:
    """An authors' original .pth through ann.convert (read without unpickling code); the
    converted file lives only as long as it takes to load it."""
    from ann import convert

    with tempfile.TemporaryDirectory(prefix="ann-converted-") as folder:
        return load(convert.convert(path, Path(folder) / (path.stem + ".safetensors")))


def require(session: Session | None) -> Session:
    """The session of a handler that needs a segmented image; a clear UI error otherwise."""
    import gradio as gr

    if session is None or session.result is None:
        raise gr.Error("Segment an image first (Segment tab).")
    return session

"""The models the app can show (`ModelStore`, shared) and one browser tab's state (`Session`).

How a tab gets the current model, image and stages. Every handler that needs them takes the
`gr.State` built by `layout.build_demo` as an input and returns it as an output:

    def handler(session: Session | None, ...):
        session = require(session)               # raises gr.Error "segment an image first"
        explorer = session.explorer              # ann.analysis.explore.Explorer (shared model, own caches)
        explorer.model, explorer.meta            # the ANN in eval mode and its CheckpointMeta
        explorer.stages                          # [Stage1..Stage5] tensors (1, C, h, w) of the image
        result = explorer.result                 # ann.analysis.explore.Result: labels, confidence, entropy,
                                                 # logits (K, H, W), head (HeadOutput), attention
        session.image                            # the uint8 RGB image that was run (after resizing)
        session.target                           # ground-truth trainIds (H, W) uint8, or None

The programmatic API (app/api.py) keeps its sessions in `RESULTS`, by handle; `require` falls back
to the latest one of the calling client, so the tabs' endpoints work for gradio_client too.

Listeners that run the model must share one concurrency group: `**MODEL_QUEUE`
(`concurrency_id="model"`, one at a time), because sessions on the same checkpoint share one
network. Explorer takes the model lock itself too, so direct calls from tests are safe.
"""

from __future__ import annotations

import ctypes
import functools
import secrets
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import numpy as np
import torch

from ann.analysis.explore import Explorer, Result
from ann.checkpoint import CheckpointError, CheckpointMeta, file_sha256, load, read_meta
from ann.models.network import ANN, ANNConfig, build_network, variant
from app.errors import UserError

MODEL_QUEUE = {"concurrency_id": "model", "concurrency_limit": 1}
UNTRAINED = "untrained ResNet-18 ANN (no bundled checkpoint yet)"
FULL_ANN = ("afnb", "apnb")  # (fusion, context) of the paper's full network, the app's default
DEFAULT_SIDE = 1024  # 1024x512 (Cityscapes' aspect) at full resolution, for a model of unknown scale
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
    # what the image and label map were read from, and the longer side they were read at: a model
    # trained at another scale reads them again (from the file, not from the resized copy)
    source: object = None  # a file path or the array given
    label_source: str | None = None
    side: int = 0
    handle: str = ""  # its name in RESULTS, for a session of the programmatic API
    context: object = None  # the ContextResult the Class context tab showed last (exported with the view)

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
        """The full ANN (AFNB + APNB) of the checkpoint folder, told by each file's metadata, not its
        name, on the paper's backbone (a dilated ResNet) before others (ties: the first by name);
        else its first readable checkpoint; else the first listed, or the untrained network."""
        folder = sorted(name for name, path in self._paths.items() if path.parent == self.checkpoint_dir)
        configs = {name: config_of(self._paths[name]) for name in folder}
        readable = [name for name, config in configs.items() if config is not None]
        full = [name for name in readable if (configs[name].fusion, configs[name].context) == FULL_ANN]
        on_resnet = [name for name in full if configs[name].backbone.startswith("resnet")]
        return (on_resnet or full or readable or self.names())[0]

    def add_file(self, path: str | Path, uploaded: bool = True) -> str:
        """Register a checkpoint file (ours, or an authors' .pth via ann.conversion); its name."""
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


def config_of(path: Path) -> ANNConfig | None:
    """The network a checkpoint holds, from its header alone (no weights read); None if unreadable
    (it stays in the menu and is refused with its reason when chosen)."""
    try:
        return read_meta(path).config
    except CheckpointError:
        return None


def processing_size(meta: CheckpointMeta, max_side: int | None = None) -> tuple[int, str]:
    """The longer side a model's images are processed at, and why: `max_side` (--max-side) when
    given, else the scale the model was trained at (ann/training/export.py's provenance): the
    rendered SynthCity size, or the crop size of another dataset. Other scales change what the
    fixed pyramid bins cover, so the attention and the predictions the card reports hold there."""
    if max_side:
        return max_side, "set by --max-side"
    data = meta.provenance.get("data") or {}
    if data.get("dataset") == "synthcity" and data.get("synthcity_size"):
        H, W = data["synthcity_size"]
        return max(H, W), f"the model was trained at {W}x{H}"
    if data.get("crop_size"):
        H, W = data["crop_size"]
        return max(H, W), f"the model was trained on {W}x{H} crops"
    return DEFAULT_SIDE, "the model's card records no training size"


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
    """An authors' original .pth through ann.conversion (read without unpickling code); the
    converted file lives only as long as it takes to load it."""
    from ann import conversion

    with tempfile.TemporaryDirectory(prefix="ann-converted-") as folder:
        return load(conversion.convert(path, Path(folder) / (path.stem + ".safetensors")))


class Results:
    """The programmatic API's sessions by handle: an API call carries no browser session, so a
    result is named by the handle returned with it. The least recently used are dropped (their
    caches freed at once) while the results hold more than `budget` bytes: a result is ~50 MB at
    512x256 and ~210 MB at 1024x512 (stages, head outputs, maps), so a count would fit one scale
    only. Each client (gradio_client keeps one session hash per Client) also finds its latest
    result without a handle."""

    def __init__(self, budget: int = 1 << 30) -> None:
        self.budget = budget
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._latest: OrderedDict[str, str] = OrderedDict()  # client -> handle
        self._guard = threading.Lock()

    def add(self, session: Session, client: str | None = None) -> str:
        session.handle = secrets.token_hex(6)
        size = footprint([session.explorer.stages, session.explorer.result, session.image, session.target])
        with self._guard:
            self._sessions[session.handle], self._sizes[session.handle] = session, size
            if client:
                self._latest[client] = session.handle
                self._latest.move_to_end(client)
            dropped = []
            while sum(self._sizes.values()) > self.budget and len(self._sessions) > 1:
                handle, old = self._sessions.popitem(last=False)
                del self._sizes[handle]
                dropped.append(old)
            while len(self._latest) > 1024:  # clients come and go
                self._latest.popitem(last=False)
        for old in dropped:  # freed now, not when the last reference goes
            old.explorer.stages = old.explorer.result = None
        return session.handle

    def __contains__(self, handle: str) -> bool:
        return handle in self._sessions

    def find(self, handle: str | None, client: str | None = None) -> Session | None:
        """The session of `handle`, else the client's latest; None when there is none (any more)."""
        with self._guard:
            key = handle or self._latest.get(client or "")
            if key not in self._sessions:
                return None
            self._sessions.move_to_end(key)
            return self._sessions[key]

    def get(self, handle: str | None, client: str | None = None) -> Session:
        """As `find`, with a UserError that says what to do when there is none."""
        session = self.find(handle, client)
        if session is not None:
            return session
        kept = f"the server keeps the most recent results, {self.budget >> 20} MB of them"
        if handle:
            raise UserError(f"unknown or expired handle {handle!r} ({kept}): segment the image again")
        if client in self._latest:
            raise UserError(f"your last result has expired ({kept}): segment the image again")
        raise UserError("Segment an image first (/segment), or give the handle it returned or an image.")


def footprint(value) -> int:
    """Bytes of the arrays in `value` (tensors, arrays, and the lists, dicts and dataclasses that
    hold them, as a Result and its HeadOutput do)."""
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        value = list(value.values())
    if is_dataclass(value) and not isinstance(value, type):
        value = [getattr(value, f.name) for f in fields(value)]
    return sum(map(footprint, value)) if isinstance(value, list | tuple) else 0


RESULTS = Results()


def current(session: Session | None) -> Session | None:
    """The browser tab's session; for a client of the API (no browser session), its latest result."""
    if session is not None and session.result is not None:
        return session
    from gradio.context import LocalContext  # the request being served, as gradio's own helpers read it

    request = LocalContext.request.get(None)
    return RESULTS.find(None, getattr(request, "session_hash", None)) or session


def require(session: Session | None) -> Session:
    """The session of a handler that needs a segmented image; a clear UI error otherwise."""
    session = current(session)
    if session is None or session.result is None:
        raise UserError("Segment an image first (Segment tab).")
    return session

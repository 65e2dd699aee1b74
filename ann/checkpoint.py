"""The one checkpoint format: a safetensors file (fp16 or fp32) whose metadata carries everything
needed to rebuild and use the network. Loading never unpickles.

Metadata keys (JSON strings): format, config (ANNConfig), classes, palette, normalization
({"mean", "std", "scale", "channel_order"}), provenance (command, git commit, data, iterations,
metrics, ...).
"""

import hashlib
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_bytes

from ann.data.labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from ann.models.backbones import input_normalization
from ann.models.network import ANN, ANNConfig, build_network
from ann.models.pretrained import CheckpointError, short_list

FORMAT = "ann-checkpoint/1"


@dataclass
class CheckpointMeta:
    config: ANNConfig
    classes: list[str] = field(default_factory=lambda: list(CITYSCAPES_CLASSES))
    palette: list[list[int]] = field(default_factory=lambda: [list(c) for c in CITYSCAPES_PALETTE])
    normalization: dict | None = None  # None: the input its backbone's ImageNet weights expect
    provenance: dict = field(default_factory=dict)
    sha256: str = ""  # of the file it was loaded from

    def __post_init__(self) -> None:
        if self.normalization is None:
            self.normalization = input_normalization(self.config.backbone)

    def to_metadata(self) -> dict[str, str]:
        return {
            "format": FORMAT,
            "config": json.dumps(self.config.to_dict()),
            "classes": json.dumps(self.classes),
            "palette": json.dumps(self.palette),
            "normalization": json.dumps(self.normalization),
            "provenance": json.dumps(self.provenance),
        }


def save(model: ANN, path: str | Path, meta: CheckpointMeta, dtype: torch.dtype = torch.float16) -> Path:
    """Write model weights and meta atomically (temp file + rename)."""
    if len(meta.classes) != model.config.num_classes or len(meta.palette) != len(meta.classes):
        raise CheckpointError(
            f"{len(meta.classes)} class names and {len(meta.palette)} colours for a "
            f"{model.config.num_classes}-class network"
        )
    meta = replace(meta, config=model.config)
    tensors = {
        name: (t.to(dtype) if t.is_floating_point() else t).detach().cpu().contiguous()
        for name, t in model.state_dict().items()
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write_safetensors(tensors, tmp, meta.to_metadata())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as error:  # safetensors reports a full disk as SafetensorError
        tmp.unlink(missing_ok=True)  # never leave a half-written file behind (e.g. disk full)
        raise CheckpointError(f"{path}: could not write checkpoint ({error})") from error
    return path


def write_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """A safetensors file whose bytes depend only on its content, fsynced: the data is on disk
    before a rename makes it the checkpoint."""
    data = save_bytes(tensors, metadata=metadata)
    size = int.from_bytes(data[:8], "little")
    header = canonical_header(data[8 : 8 + size])
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.write(memoryview(data)[8 + size :])  # the tensors as safetensors laid them out, no copy
        f.flush()
        os.fsync(f.fileno())


def canonical_header(header: bytes) -> bytes:
    """safetensors writes the metadata in hash-map order, a new one on every save, so the same
    model and metadata gave other bytes and another sha256 each time. The header again with sorted
    keys (8-byte aligned with spaces, as safetensors pads it); the tensor offsets are unchanged."""
    text = json.dumps(json.loads(header), sort_keys=True, separators=(",", ":")).encode()
    return text + b" " * (-len(text) % 8)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_meta(path: str | Path) -> CheckpointMeta:
    """The metadata of a checkpoint, without reading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: metadata 'format' is {raw.get('format')!r}, expected {FORMAT!r}")
    try:
        parsed = {key: json.loads(raw[key]) for key in ("config", "classes", "palette", "normalization")}
        provenance = json.loads(raw.get("provenance", "{}"))
        config = ANNConfig.from_dict(parsed["config"])
    except KeyError as error:
        raise CheckpointError(f"{path}: metadata lacks {error}") from error
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: bad metadata ({error})") from error
    return CheckpointMeta(config, parsed["classes"], parsed["palette"], parsed["normalization"], provenance)


def load(path: str | Path, device: str | torch.device = "cpu") -> ANN:
    """The network of a checkpoint in eval mode, in fp32, with `.meta` (CheckpointMeta) attached."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    meta = read_meta(path)
    # weights come from the file; never fetch backbone ImageNet weights here
    model = build_network(replace(meta.config, pretrained=False))
    if len(meta.classes) != meta.config.num_classes:
        raise CheckpointError(
            f"{path}: {len(meta.classes)} class names for {meta.config.num_classes} classes"
        )
    if not valid_palette(meta.palette, len(meta.classes)):
        raise CheckpointError(
            f"{path}: the palette must hold {len(meta.classes)} [R, G, B] colours in 0..255"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: truncated or corrupt tensor data ({error})") from error
    load_state(model, tensors, str(path))
    meta.sha256 = file_sha256(path)
    model.meta = meta
    return model.to(device).eval()


def valid_palette(palette: object, num_classes: int) -> bool:
    """One colour of three 0..255 integers per class (the overlays index it by class id)."""
    return (
        isinstance(palette, list)
        and len(palette) == num_classes
        and all(
            isinstance(colour, list)
            and len(colour) == 3
            and all(isinstance(v, int) and 0 <= v <= 255 for v in colour)
            for colour in palette
        )
    )


def load_state(model: ANN, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy tensors into the model, refusing missing, extra or mis-shaped entries by name."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k} {tuple(tensors[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {short_list(missing)}")
    if extra:
        problems.append(f"unexpected tensors {short_list(extra)}")
    if wrong:
        problems.append(f"shape mismatch {short_list(wrong)}")
    if problems:
        raise CheckpointError(f"{source}: config does not match tensors: " + "; ".join(problems))
    model.load_state_dict({k: t.to(expected[k].dtype) for k, t in tensors.items()})


def tensor_summary(path: Path) -> dict:
    """Parameter counts per top-level module of ANN (backbone, fusion = AFNB/FNB, bottleneck,
    context = APNB/NB, classifier, aux_head) and the dtypes, from the safetensors header alone."""
    from safetensors import safe_open

    counts, dtypes = Counter(), Counter()
    with safe_open(str(path), framework="pt") as f:
        for name in f.keys():
            tensor = f.get_slice(name)
            if "running_" not in name and "num_batches_tracked" not in name:  # BN buffers are not parameters
                counts[name.split(".")[0]] += math.prod(tensor.get_shape())
            dtypes[tensor.get_dtype()] += 1
    return {"parameters": dict(counts), "dtypes": dict(dtypes)}


def summary(path: Path) -> dict:
    """What a checkpoint is (`python -m ann.info`): metadata, sha256, parameter counts and dtypes,
    without loading its weights."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    meta = read_meta(path)
    return {
        "file": str(path),
        "mib": round(path.stat().st_size / 2**20, 2),
        "sha256": file_sha256(path),
        "config": meta.config.to_dict(),
        "classes": meta.classes,
        "normalization": meta.normalization,
        "provenance": meta.provenance,
        **tensor_summary(path),
    }

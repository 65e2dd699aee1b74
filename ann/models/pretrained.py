"""ImageNet weights for the dilated ResNet from a local file (nothing is downloaded, ever).

The paper starts from an ImageNet ResNet-101 with the deep stem (released with the authors'
code). Two layouts are read: torchvision's (conv1/bn1 = the 7x7 stem, fc) and the deep-stem files
of PSPNet/openseg (conv1..3/bn1..3 at the top level, or under `prefix.`). Both map onto our names
by renaming the stem only (resnet.py); the classifier `fc` is dropped. Dilation adds no
parameters, so the weights fit any output stride. Files are .pth (read with weights_only=True, so
a pickle that would run code is refused; `read_pth`, the converter's reader too) or .safetensors.
"""

import pickle
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

WRAPPERS = ("module.", "backbone.")  # DataParallel, and segmentation checkpoints' backbone
STEM = re.compile(r"^(?:prefix\.)?((?:conv|bn)[123]\..*)$")
# The authors' trainer stores numpy scalars in runner_state (e.g. the mIoU from np.nanmean). Rebuilding
# one needs numpy's `scalar` and `dtype`, which read bytes and call no other code: allowed by name
# (numpy 1.x's spelling, the release's, and 2.x's), for bool, integer and float dtypes only.
NUMPY_SCALAR = np.float64(0).__reduce__()[0]
NUMPY_SCALAR_GLOBALS = [
    (NUMPY_SCALAR, "numpy.core.multiarray.scalar"),
    (NUMPY_SCALAR, "numpy._core.multiarray.scalar"),
    np.dtype,
    *{type(np.dtype(code)) for code in "?bBhHiIlLqQefd"},
]


class CheckpointError(ValueError):
    """A checkpoint or weight file that cannot be loaded; the message says what is wrong."""


def short_list(items: list[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def read_state(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (backbone ImageNet weights)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        return read_pth(path)[0]
    except Exception as error:  # noqa: BLE001 - any reader failure is one clear message
        raise CheckpointError(f"{path}: not a readable weight file ({error})") from error


def read_pth(path: Path) -> tuple[dict[str, Tensor], dict]:
    """(state dict without 'module.' prefixes, runner_state or {}) of a torch .pth, weights only."""
    try:
        with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
            data = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as error:
        detail = unpickling_detail(error)
        if "GLOBAL" in detail:  # a class or function to import and call: code would run
            raise CheckpointError(
                f"{path}: refused: torch.load(weights_only=True) cannot read it, because loading it "
                f"would run code from the pickle; only tensor checkpoints are read ({detail})"
            ) from error
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({detail})") from error
    except Exception as error:  # arbitrary bytes make the unpickler raise anything (KeyError, ...)
        detail = f"{type(error).__name__}: {error}"
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({detail})") from error
    runner_state = {}
    if isinstance(data, dict) and "state_dict" in data:
        runner_state = data.get("runner_state") or {}
        data = data["state_dict"]
    if not isinstance(data, dict) or not data or not all(isinstance(v, Tensor) for v in data.values()):
        found = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: expected a state dict or {{'state_dict': ...}}, found {found}")
    state = {k.removeprefix("module."): v for k, v in data.items()}
    return state, runner_state if isinstance(runner_state, dict) else {}


def unpickling_detail(error: Exception) -> str:
    """The specific line of torch's weights-only error, without its general advice."""
    text = str(error)
    if "WeightsUnpickler error: " in text:  # torch's advice before it (weights_only=False) is not ours
        text = text.split("WeightsUnpickler error: ", 1)[1]
    advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in text.splitlines()]
    detail = [line for line in lines if line and not line.startswith(advice)]
    return " ".join(detail) or lines[0]


def backbone_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our DilatedResNet names for an ImageNet ResNet state dict (fc dropped)."""
    # a segmentation checkpoint (a trained ANN's model.safetensors) holds its head too: the
    # backbone's tensors only, so a trained ANN's backbone can start another run
    if any(k.removeprefix("module.").startswith("backbone.") for k in state):
        state = {k: v for k, v in state.items() if k.removeprefix("module.").startswith("backbone.")}
    renamed = {}
    for name, tensor in state.items():
        for wrapper in WRAPPERS:
            name = name.removeprefix(wrapper)
        if name.startswith("fc."):
            continue
        stem = STEM.match(name)
        renamed["stem." + stem.group(1) if stem else name] = tensor
    return renamed


def fitted_state(backbone: nn.Module, path: str | Path) -> dict[str, Tensor]:
    """The file's weights under `backbone`'s names; any missing, extra or mis-shaped tensor is named.
    Works on a backbone built on the meta device too (a check before anything is written)."""
    state = backbone_state(read_state(path))
    own = backbone.state_dict()
    # BN's batch counter is bookkeeping that some exporters leave out
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    extra = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]  # fmt: skip
    if missing or extra or wrong:
        found = {"missing": missing, "unexpected": extra, "wrong shape": wrong}
        problems = [f"{label}: {short_list(names)}" for label, names in found.items() if names]
        raise CheckpointError(f"{path}: does not fit the {type(backbone).__name__}: " + "; ".join(problems))
    return {k: state.get(k, own[k]) for k in own}


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    backbone.load_state_dict(fitted_state(backbone, path))

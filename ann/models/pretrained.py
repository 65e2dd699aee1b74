"""ImageNet weights for the dilated ResNet from a local file (nothing is downloaded, ever).

The paper starts from an ImageNet ResNet-101 with the deep stem (released with the authors'
code). Two layouts are read: torchvision's (conv1/bn1 = the 7x7 stem, fc) and the deep-stem files
of PSPNet/openseg (conv1..3/bn1..3 at the top level, or under `prefix.`). Both map onto our names
by renaming the stem only (resnet.py); the classifier `fc` is dropped. Dilation adds no
parameters, so the weights fit any output stride. Files are .pth (read with weights_only=True, so
a pickle that would run code is refused) or .safetensors.
"""

import re
from pathlib import Path

from torch import Tensor, nn

from ann.checkpoint import CheckpointError, short_list

WRAPPERS = ("module.", "backbone.")  # DataParallel, and segmentation checkpoints' backbone
STEM = re.compile(r"^(?:prefix\.)?((?:conv|bn)[123]\..*)$")


def read_state(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (backbone ImageNet weights)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        # the converter's reader: weights_only, code-running pickles refused and named
        from ann.conversion import read_original

        return read_original(path)[0]
    except Exception as error:  # noqa: BLE001 - any reader failure is one clear message
        raise CheckpointError(f"{path}: not a readable weight file ({error})") from error


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

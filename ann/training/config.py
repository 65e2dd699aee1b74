"""Run configuration of the trainer: one flat TOML file per experiment, no inheritance.

Sections: [model] (the ANNConfig fields, [model.sampling] its SamplingConfig), [data], [optim],
[loss], [train]. Every field can be overridden from the command line as `section.field=value`
(`model.sampling.sizes=1,2,3,6`); values are checked against the dataclass field types, and an
unknown key is refused with the list of valid ones.
"""

import json
import math
import tomllib
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from ann.data.layouts import LAYOUTS
from ann.models.backbones import NORMALIZATIONS as BACKBONE_NORMALIZATIONS
from ann.models.network import ANNConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DATASETS = (*LAYOUTS, "folder")  # "folder": your own data (ann/data/folder.py)
NORMALIZATIONS = ("auto", *BACKBONE_NORMALIZATIONS)  # auto: the backbone's (ann/models/backbones.py)


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthcity"  # synthcity (procedural, no folder), a layout name, or folder
    root: str = ""  # dataset folder; unused for synthcity
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = ""  # evaluated once at the end for the model card; "" = none
    synthcity_seed: int = 0  # which procedural city
    synthcity_size: tuple[int, int] = (512, 1024)  # rendered (height, width)
    # 0: train renders an unbounded stream on the fly; N: the first N train images, rendered
    # once into cache_dir and reused (ann/data/synthcity/pool.py), for GPUs faster than rendering
    synthcity_train_images: int = 0
    cache_dir: str = ""  # "" = ~/.cache/ann/synthcity
    crop_size: tuple[int, int] = (769, 769)  # (height, width)
    scale_range: tuple[float, float] = (0.5, 2.0)
    aspect_range: tuple[float, float] = (0.9, 1.1)
    brightness: float = 10.0
    normalization: str = "auto"  # auto: the backbone's ImageNet statistics
    val_limit: int = 0  # validate (and test) on the first N images only; 0 = whole split
    # the final test on its own limit: -1 = as val_limit; 0 = the whole split (a model card's
    # test score over the whole split while periodic validation stays cheap); N = the first N
    test_limit: int = -1
    workers: int = 4
    skip_bad: bool = False  # dataset skip_bad: replace unreadable samples by the next one
    # progressive resizing, [[until, factor], ...]: the iterations before until x train.iterations
    # train on images and crops `factor` times smaller (OHEM's min_kept scaled by factor^2), where a
    # step costs about factor^2 as much (docs/cpu-training.md); validation, test and the model card
    # stay at the sizes above, the model's target scale. [] = one size throughout
    progressive: tuple[tuple[float, float], ...] = ()

    @property
    def resolved_test_limit(self) -> int:
        return self.val_limit if self.test_limit == -1 else self.test_limit

    def __post_init__(self) -> None:
        check_choice("data.dataset", self.dataset, DATASETS)
        check_choice("data.normalization", self.normalization, NORMALIZATIONS)
        check_positive("data.crop_size", *self.crop_size)
        check_positive("data.synthcity_size", *self.synthcity_size)
        check_range("data.scale_range", self.scale_range)
        check_range("data.aspect_range", self.aspect_range)
        # brightness: the shift is drawn from [-b, b]; numpy refuses negative seeds
        check_not_negative(
            {
                "data.val_limit": self.val_limit,
                "data.workers": self.workers,
                "data.synthcity_train_images": self.synthcity_train_images,
                "data.brightness": self.brightness,
                "data.synthcity_seed": self.synthcity_seed,
            }
        )
        untils = [until for until, _ in self.progressive]
        if untils != sorted(set(untils)) or not all(0 < u < 1 for u in untils):
            raise ConfigError(f"data.progressive: the untils must increase within (0, 1), got {untils}")
        if not all(0 < factor <= 1 for _, factor in self.progressive):
            raise ConfigError(f"data.progressive: factors must be in (0, 1], got {list(self.progressive)}")
        smallest = min([factor for _, factor in self.progressive], default=1) * min(self.synthcity_size)
        if self.dataset == "synthcity" and smallest < 32:  # SynthCity's smallest rendering
            raise ConfigError(f"data.progressive: SynthCity images {smallest:g} pixels high, below 32")
        if self.test_limit < -1:
            raise ConfigError(
                f"data.test_limit must be -1 (as val_limit), 0 (all) or N, got {self.test_limit}"
            )
        # SynthCity renders train images without end: evaluating on them needs a limit
        evaluated = (
            (self.val_split, self.val_limit, "val_limit"),
            (self.test_split, self.resolved_test_limit, "test_limit"),
        )
        unlimited = [key for split, limit, key in evaluated if split == "train" and limit == 0]
        if self.dataset == "synthcity" and unlimited:
            raise ConfigError(
                "SynthCity's train split is unbounded: evaluating on it needs data.val_limit = N"
                + (" or data.test_limit = N" if unlimited[-1] == "test_limit" else "")
            )
        if self.dataset != "synthcity" and not self.root:
            raise ConfigError(f"data.root: dataset {self.dataset!r} needs a folder (--set data.root=DIR)")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 0.01  # same for backbone and head, as released
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9  # lr * (1 - it / iterations) ** power, per iteration
    nesterov: bool = False
    warmup_iterations: int = 0  # the first N iterations at (it + 1) / N of the poly lr; 0 = none, as released

    def __post_init__(self) -> None:
        check_positive("optim.lr", self.lr)
        if not 0 <= self.momentum < 1 or self.weight_decay < 0 or self.poly_power < 0:
            raise ConfigError("optim: need 0 <= momentum < 1, weight_decay >= 0, poly_power >= 0")
        check_not_negative({"optim.warmup_iterations": self.warmup_iterations})


@dataclass(frozen=True)
class LossConfig:
    aux_weight: float = 0.4  # Eq. 18
    ohem: bool = True
    ohem_threshold: float = 0.7
    ohem_min_kept: int = 100_000  # per image
    class_weights: str = "none"  # none | cityscapes (the released weights)

    def __post_init__(self) -> None:
        check_choice("loss.class_weights", self.class_weights, ("none", "cityscapes"))
        if self.aux_weight < 0 or not 0 < self.ohem_threshold <= 1 or self.ohem_min_kept < 0:
            raise ConfigError("loss: need aux_weight >= 0, 0 < ohem_threshold <= 1, ohem_min_kept >= 0")


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 60_000
    batch_size: int = 8  # global: split evenly over the processes
    seed: int = 0  # model init, data order, augmentation and random sampling
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "bf16"  # bf16 autocast on CUDA (ignored on CPU) | none
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the network
    checkpoint_every: int = 1000  # iterations between resumable checkpoints
    log_every: int = 20
    val_every: int = 5000  # 0 = only at the end
    val_mode: str = "whole"  # whole | slide | msflip
    progress: bool = True  # rank 0: a tqdm bar on a terminal, else a line per log_every; false = neither
    export_dtype: str = "float16"  # float16 | float32 for the final safetensors file
    # ImageNet weights of a ResNet backbone, a local .pth/.safetensors (torchvision or deep-stem
    # layout, ann/models/pretrained.py); "" = random init. EfficientNet: model.pretrained.
    backbone_weights: str = ""
    # no gradients into the backbone and its BN statistics kept: the head-only ablation protocol
    # on a trained ANN's backbone (docs/cpu-training.md); needs backbone_weights or model.pretrained
    freeze_backbone: bool = False

    def __post_init__(self) -> None:
        check_positive("train.iterations", self.iterations)
        check_positive("train.batch_size", self.batch_size)
        check_positive("train.checkpoint_every", self.checkpoint_every)
        check_positive("train.log_every", self.log_every)
        check_not_negative({"train.val_every": self.val_every, "train.seed": self.seed})
        check_choice("train.device", self.device, ("auto", "cpu", "cuda"))
        check_choice("train.amp", self.amp, ("bf16", "none"))
        check_choice("train.val_mode", self.val_mode, ("whole", "slide", "msflip"))
        check_choice("train.export_dtype", self.export_dtype, ("float16", "float32"))


@dataclass(frozen=True)
class RunConfig:
    name: str
    description: str = ""
    model: ANNConfig = field(default_factory=ANNConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def check_choice(key: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{key}: unknown value {value!r}; valid: {', '.join(valid)}")


def check_positive(key: str, *values: float) -> None:
    if any(v <= 0 for v in values):
        raise ConfigError(f"{key} must be positive, got {values if len(values) > 1 else values[0]}")


def check_not_negative(values: dict[str, float]) -> None:
    for key, value in values.items():
        if value < 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")


def check_range(key: str, bounds: tuple[float, float]) -> None:
    """A (low, high) range of random factors: positive, low <= high."""
    low, high = bounds
    if not 0 < low <= high:
        raise ConfigError(f"{key} must be two factors 0 < low <= high, got {list(bounds)}")


def list_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def config_path(name_or_path: str) -> Path:
    """A bundled config by name (`smoke`) or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file():  # a folder named like a config is not one (runs/smoke)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        return path
    bundled = CONFIG_DIR / f"{name_or_path}.toml"
    if not bundled.is_file():
        raise ConfigError(f"unknown config {name_or_path!r}; bundled: {', '.join(list_configs())}")
    return bundled


def load_config(name_or_path: str, overrides: list[str] = ()) -> RunConfig:
    """Read a TOML config and apply `section.field=value` overrides."""
    path = config_path(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from error
    raw.setdefault("name", path.stem)
    for text in overrides:
        key, value = parse_override(text)
        set_nested(raw, key, value, RunConfig, verbatim=text.partition("=")[2].strip())
    try:
        return build(RunConfig, raw, "")
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error


def parse_override(text: str) -> tuple[str, Any]:
    """`optim.lr=0.02` -> ("optim.lr", 0.02); values are TOML literals or bare strings/lists."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form section.field=value")
    value = value.strip()
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    if "," in value:  # 1,2,3,6 -> [1, 2, 3, 6]
        return key.strip(), [parse_override(f"v={item}")[1] for item in value.split(",")]
    return key.strip(), value  # a bare string such as resnet18


def set_nested(raw: dict, key: str, value: Any, cls: type, verbatim: str | None = None) -> None:
    """Set raw[a][b]... = value after checking that the path names a field of `cls`; a text field
    takes the `verbatim` text of the override where TOML read another type (a folder named 2024)."""
    parts = key.split(".")
    node, owner = raw, cls
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(owner)
        if part not in hints:
            where = ".".join(parts[:i]) or "the config"
            raise ConfigError(f"override {key!r}: {where} has no field {part!r}; valid: {', '.join(hints)}")
        if i == len(parts) - 1:
            text_field = hints[part] is str and verbatim is not None and not isinstance(value, str)
            node[part] = verbatim if text_field else value
            return
        owner = hints[part]
        if not is_dataclass(owner):
            raise ConfigError(f"override {key!r}: {'.'.join(parts[: i + 1])} is a value, not a section")
        node = node.setdefault(part, {})


def build(cls: type, raw: Any, where: str) -> Any:
    """An instance of dataclass `cls` from a dict, every value checked against the field type."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'} must be a table, got {raw!r}")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ConfigError(f"[{where or 'top level'}] unknown keys {unknown}; valid: {', '.join(hints)}")
    values = {}
    for f in fields(cls):
        key = f"{where}.{f.name}" if where else f.name
        if f.name in raw:
            values[f.name] = coerce(raw[f.name], hints[f.name], key)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"missing required key {key!r}")
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"[{where}] {error}") from error


def coerce(value: Any, hint: Any, key: str) -> Any:
    if is_dataclass(hint):
        return build(hint, value, key)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            value = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {list(value)}")
        return tuple(coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):  # TOML has no literal our saved config.toml could write back
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is bool and isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    if hint in (int, bool, str) and type(value) is hint:
        return value
    raise ConfigError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def to_toml(config: RunConfig) -> str:
    """The resolved config as TOML that `load_config` reads back to an equal RunConfig."""
    data = config.to_dict()
    lines = [f"name = {json.dumps(data.pop('name'))}", f"description = {json.dumps(data.pop('description'))}"]
    for section, table in data.items():
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        lines += ["", f"[{section}]"] + [
            f"{k} = {toml_value(v)}" for k, v in table.items() if k not in nested
        ]
        for name, sub in nested.items():
            lines += ["", f"[{section}.{name}]"] + [f"{k} = {toml_value(v)}" for k, v in sub.items()]
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # ints, floats and strings have the same literal in TOML


def config_differences(a: RunConfig, b: RunConfig, ignore: tuple[str, ...] = ()) -> list[str]:
    """`section.field: a -> b` for every field that differs, except those under `ignore`."""
    flat_a, flat_b = flatten(a.to_dict()), flatten(b.to_dict())
    return [
        f"{key}: {flat_a.get(key)!r} -> {flat_b.get(key)!r}"
        for key in sorted(set(flat_a) | set(flat_b))
        if flat_a.get(key) != flat_b.get(key) and not key.startswith(ignore)
    ]


def flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat

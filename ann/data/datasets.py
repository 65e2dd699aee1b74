"""One generic reader for the dataset layouts of ann/data/layouts.py (paper Sec. 4.1, appendix A).

Pairing images with labels is checked when the dataset is built (a listing, cheap); sizes, label
values and readability are checked when a sample is loaded, since that needs reading every file.
"""

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import torch.utils.data
from PIL import Image, ImageOps

from ann.data.folder import folder_layout, packed
from ann.data.layouts import INVALID, LAYOUTS, DatasetLayout, LabelFormat

log = logging.getLogger(__name__)

Transform = Callable[[np.ndarray, np.ndarray], Any]


class DatasetError(ValueError):
    """A dataset file or folder is missing, unreadable or inconsistent; the message names it."""


class BadSample(DatasetError):
    """One image or label that cannot be used (unreadable, wrong size or values): fixing that file,
    or skip_bad, gets past it, while a DatasetError about folders needs the root or layout fixed."""


def plain_message(error: Exception) -> str:
    """The message of an error, without the traceback a DataLoader worker wraps around it."""
    text, marker = str(error), f"{type(error).__module__}.{type(error).__qualname__}: "
    if "Original Traceback" in text and marker in text:
        return text.rsplit(marker, 1)[1].strip()
    return text


class SegmentationFolder(torch.utils.data.Dataset):
    """Image/label pairs of one split of a dataset stored as `layout` under `root`.

    Items are `transform(image, label)`, or `(image, label)` without a transform: image uint8
    (H, W, 3) RGB, label uint8 (H, W) of train ids with 255 = ignore. `names[i]` is the image stem
    of item i, for saving predictions. With `skip_bad`, a sample that fails to load is logged and
    the next loadable one is returned instead.
    """

    def __init__(
        self,
        layout: DatasetLayout,
        root: str | Path,
        split: str,
        transform: Transform | None = None,
        skip_bad: bool = False,
    ) -> None:
        if split not in layout.splits:
            raise ValueError(f"unknown split {split!r} for {layout.name}; valid: {sorted(layout.splits)}")
        self.layout = layout
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.skip_bad = skip_bad
        self.bad: set[int] = set()
        if not self.root.is_dir():
            raise DatasetError(f"{layout.name}: dataset root {self.root} is not a folder")
        self.samples = pair_files(layout, self.root, layout.splits[split])
        self.names = [name for name, _, _ in self.samples]

    @property
    def num_classes(self) -> int:
        return self.layout.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.layout.class_names

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return self.layout.palette

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Any:
        image, label = self.load(index) if not self.skip_bad else self._load_skipping(index)
        if self.transform is None:
            return image, label
        return self.transform(image, label)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw (image, label) of item `index`, checked; raises BadSample naming the file."""
        _, image_path, (label_path, label_format) = self.samples[index]
        image = read_image(image_path)
        label = read_label(label_path, label_format, self.layout)
        if image.shape[:2] != label.shape:
            raise BadSample(
                f"size mismatch: image {image_path} is {image.shape[1]}x{image.shape[0]} but "
                f"label {label_path} is {label.shape[1]}x{label.shape[0]} (width x height)"
            )
        return image, label

    def _load_skipping(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        # Walk forward so a bad sample is replaced by a deterministic neighbour, not a random one.
        for step in range(len(self)):
            candidate = (index + step) % len(self)
            if candidate in self.bad:
                continue
            try:
                return self.load(candidate)
            except BadSample as error:
                self.bad.add(candidate)
                log.warning("skipping bad sample %d: %s", candidate, error)
        raise DatasetError(f"{self.layout.name} {self.split}: no sample under {self.root} loads")


def pair_files(
    layout: DatasetLayout, root: Path, split_folder: str
) -> list[tuple[str, Path, tuple[Path, LabelFormat]]]:
    """(name, image path, (label path, label format)) for every image of the split, in order."""
    image_dir = root / layout.image_dir.format(split=split_folder)
    label_dir = root / layout.label_dir.format(split=split_folder)
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise DatasetError(f"{layout.name}: missing folder {folder}{_root_hint(root, folder)}")
    if layout.split_list is None:
        images = _images_in_folder(layout, image_dir)
    else:
        list_path = root / layout.split_list.format(split=split_folder)
        images = [
            (stem, _listed_image(layout, image_dir, stem)) for stem in _stems_in_list(layout, list_path)
        ]
    names = [Path(stem).name for stem, _ in images]
    if len(set(names)) < len(names):  # one file name in two sub-folders: keep the sub-folders
        names = [stem for stem, _ in images]  # so saved predictions do not overwrite each other
    samples, missing = [], []
    for name, (stem, path) in zip(names, images, strict=True):
        try:
            samples.append((name, path, _find_label(layout, label_dir / stem, path)))
        except DatasetError as error:
            missing.append(str(error))
    if missing:  # all of them at once, so they need not be fixed one run at a time
        more = f"\n... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise DatasetError(f"{len(missing)} images without a label:\n" + "\n".join(missing[:10]) + more)
    return samples


def _root_hint(root: Path, folder: Path) -> str:
    """A guess at the root when the one given is up to three levels too deep (cs/leftImg8bit/val
    for cs) or one too high (mmsegmentation's ADE20K data_root is the ADEChallengeData2016 folder,
    which this layout expects inside the root)."""
    relative = folder.relative_to(root)
    try:
        children = sorted(c for c in root.iterdir() if c.is_dir())
    except OSError:  # an unreadable root: no guess
        children = []
    guess = next((c for c in [*root.parents[:3], *children] if (c / relative).is_dir()), None)
    return f"; is the root {guess}?" if guess else ""


def files_under(folder: Path) -> list[Path]:
    """Every file under `folder`, sorted. Symlinked sub-folders are followed (Path.rglob skips
    them, which silently dropped linked city folders); each real folder is read once, so a link
    cycle cannot loop."""
    seen, files = set(), []
    for current, subfolders, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        subfolders.sort()  # a folder reached twice is kept under the same name on every machine
        files += [Path(current) / name for name in names]
    return sorted(files)


def _images_in_folder(layout: DatasetLayout, image_dir: Path) -> list[tuple[str, Path]]:
    """(relative stem, path) of every image, sub-folders included: Cityscapes keeps one per city."""
    found: dict[str, Path] = {}
    clashes = []
    for path in files_under(image_dir):
        relative = str(path.relative_to(image_dir))
        suffix = next((s for s in layout.image_suffixes if relative.lower().endswith(s.lower())), None)
        # hidden files and folders: macOS copies leave "._NAME.jpg" beside the images
        if suffix is None or any(part.startswith(".") for part in Path(relative).parts) or not path.is_file():
            continue
        stem = relative[: -len(suffix)]
        if stem in found:  # a.jpg and a.png would share one label file
            clashes.append(f"{found[stem]} and {path}")
        found[stem] = path
    if clashes:
        raise DatasetError(f"{layout.name}: two images for one label: " + "; ".join(clashes[:10]))
    if not found:
        patterns = ", ".join("*" + suffix for suffix in layout.image_suffixes)
        raise DatasetError(f"{layout.name}: no {patterns} images under {image_dir}")
    return list(found.items())


def _listed_image(layout: DatasetLayout, image_dir: Path, stem: str) -> Path:
    for suffix in layout.image_suffixes:
        if (image_dir / (stem + suffix)).is_file():
            return image_dir / (stem + suffix)
    raise DatasetError(f"{layout.name}: missing image {image_dir / (stem + layout.image_suffixes[0])}")


def _stems_in_list(layout: DatasetLayout, list_path: Path) -> list[str]:
    if not list_path.is_file():
        raise DatasetError(f"{layout.name}: missing split list {list_path}")
    stems = [line.strip() for line in list_path.read_text().splitlines() if line.strip()]
    if not stems:
        raise DatasetError(f"{layout.name}: split list {list_path} is empty")
    return stems


def _find_label(layout: DatasetLayout, label_stem: Path, image_path: Path) -> tuple[Path, LabelFormat]:
    for label_format in layout.label_formats:
        path = label_stem.parent / (label_stem.name + label_format.suffix)
        if path.is_file():
            return path, label_format
    tried = ", ".join(str(label_stem) + f.suffix for f in layout.label_formats)
    raise DatasetError(f"{layout.name}: no label for image {image_path} (looked for {tried})")


def read_image(path: Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB; grayscale images (a few in ADE20K and COCO) are expanded.

    EXIF orientation is applied, as viewers and annotation tools show a photo and as the app and
    ann.predict read it; a label drawn on the upright photo then fits it (size checked on load)."""
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, ValueError, SyntaxError) as error:
        raise BadSample(f"unreadable image {path}: {error}") from error


def read_label(path: Path, label_format: LabelFormat, layout: DatasetLayout) -> np.ndarray:
    """uint8 (H, W) train ids, 255 = ignore, mapped through the format's lookup table."""
    raw = _read_raw_label(path, layout.mat_key)
    if raw.ndim == 3 and raw.shape[2] == 2:  # grey + alpha ("LA"): the grey values are the ids
        raw = raw[..., 0]
    elif raw.ndim == 3 and raw.shape[2] in (3, 4):  # RGB(A); alpha is not read
        rgb = raw[..., :3]
        grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
        # a grey picture with a grey of no class holds ids saved as RGB, not class colours
        if layout.colour_ids is not None and not (grey and _grey_of_no_class(rgb[..., 0], layout)):
            return colour_label(rgb, path, layout)
        if grey:
            raw = rgb[..., 0]
    if raw.ndim != 2:
        raise BadSample(f"label {path} has shape {raw.shape}; expected one channel (H, W) of class ids")
    if raw.size and (raw.min() < 0 or raw.max() > 255):
        raise BadSample(f"label {path} has values outside 0..255 ({raw.min()}..{raw.max()})")
    mapped = label_format.lut[raw.astype(np.intp)]
    if (mapped == INVALID).any():
        bad = np.unique(raw[mapped == INVALID])[:10].tolist()
        raise BadSample(
            f"label {path} has values {bad} outside the {layout.num_classes} classes of "
            f"{layout.name} (and 255 = ignore)"
        )
    return mapped.astype(np.uint8)


def _grey_of_no_class(grey: np.ndarray, layout: DatasetLayout) -> bool:
    values = np.flatnonzero(np.bincount(grey.ravel(), minlength=256)).tolist()  # no sort of H*W
    return any(packed((v, v, v)) not in layout.colour_ids for v in values)


def colour_label(rgb: np.ndarray, path: Path, layout: DatasetLayout) -> np.ndarray:
    """Train ids of an RGB label painted in the classes' colours."""
    codes = packed(tuple(rgb[..., c].astype(np.int32) for c in range(3)))
    colours, inverse = np.unique(codes, return_inverse=True)  # measured faster than a searchsorted
    ids = np.array([layout.colour_ids.get(c, INVALID) for c in colours.tolist()])
    if (ids == INVALID).any():
        unknown = ", ".join(f"#{c:06x}" for c in colours[ids == INVALID][:5].tolist())
        raise BadSample(f"label {path} has colours {unknown} that are not class colours of {layout.name}")
    return ids[inverse].reshape(codes.shape).astype(np.uint8)


def _read_raw_label(path: Path, mat_key: str) -> np.ndarray:
    try:
        if path.suffix == ".mat":
            return np.asarray(scipy.io.loadmat(path)[mat_key])
        with Image.open(path) as label:
            # mode "P" labels (palette PNGs) store class ids as palette indices: read them as is.
            return np.asarray(label)
    except KeyError as error:
        raise BadSample(f"label {path} has no variable {mat_key!r}") from error
    # NotImplementedError: scipy.io cannot read MATLAB 7.3 (HDF5) files
    except (OSError, ValueError, SyntaxError, NotImplementedError, scipy.io.matlab.MatReadError) as error:
        raise BadSample(f"unreadable label {path}: {error}") from error


def build_dataset(
    name: str,
    root: str | Path,
    split: str,
    transform: Transform | None = None,
    skip_bad: bool = False,
) -> SegmentationFolder:
    """The `split` of dataset `name` stored under `root` (layouts in docs/datasets.md)."""
    root = Path(root).expanduser()  # "--set data.root=~/data": no shell expands a ~ after "="
    if name == "folder":  # your own data: the layout is read from root (ann/data/folder.py)
        if not Path(root).is_dir():
            raise DatasetError(f"folder: dataset root {root} is not a folder")
        return SegmentationFolder(folder_layout(root), root, split, transform, skip_bad)
    if name not in LAYOUTS:
        raise ValueError(f"unknown dataset {name!r}; valid: {sorted(LAYOUTS) + ['folder']}")
    return SegmentationFolder(LAYOUTS[name], root, split, transform, skip_bad)

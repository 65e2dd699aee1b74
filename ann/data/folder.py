"""Your own dataset: the `folder` layout (not in the paper; how users train ANN on their data).

```
ROOT/classes.txt                      one class per line, line i = train id i
ROOT/images/{split}/**/NAME.jpg|png   any split names (train, val, test, ...)
ROOT/labels/{split}/**/NAME.png       class ids (one channel, 255 = ignore) or class colours (RGB)
```

A line of classes.txt is a class name, optionally followed by its colour as `#rrggbb` or three
integers (`traffic light 250 170 30`); classes without one get the PASCAL VOC colour of their id.
Blank lines, `#` lines and trailing ` # comments` are skipped. A line named `ignore` is no class: its
colour marks the pixels to ignore in RGB labels. The layout is read from ROOT itself, so the
classes, palette and splits travel into the checkpoint like those of the built-in layouts.
"""

import re
from pathlib import Path

from ann.data.labels import IGNORE_INDEX
from ann.data.layouts import DatasetLayout, LabelFormat, identity_lut, voc_palette

CLASSES_FILE = "classes.txt"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # any letter case
MAX_CLASSES = 255  # label value 255 is the ignore index
IGNORE_NAME = "ignore"

Colour = tuple[int, int, int]
COMMENT = re.compile(r"\s#(?:\s|$)")  # "road #804080  # purple": a # then a space ends the line
LIST_OF_NUMBERS = re.compile(r"\d\s*[,;]\s*\d")  # "255,0,0": not a colour notation we read


class ClassesError(ValueError):
    """classes.txt is missing or malformed; the message names the file and line."""


def folder_layout(root: str | Path) -> DatasetLayout:
    """The layout of ROOT: its classes.txt and the split folders under ROOT/images."""
    root = Path(root)
    names, palette, ignore = read_classes(root / CLASSES_FILE)
    images = root / "images"
    splits = sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []
    if not splits:
        raise ClassesError(
            f"folder: no split folders under {images} (expected images/train, images/val, ...)"
        )
    colour_ids = {packed(colour): i for i, colour in enumerate(palette)}
    if ignore is not None:
        colour_ids[packed(ignore)] = IGNORE_INDEX
    return DatasetLayout(
        name="folder",
        image_dir="images/{split}",
        image_suffixes=IMAGE_SUFFIXES,
        label_dir="labels/{split}",
        label_formats=(LabelFormat(".png", identity_lut(len(names))),),
        splits={split: split for split in splits},
        num_classes=len(names),
        class_names=names,
        palette=palette,
        colour_ids=colour_ids,
    )


def packed(colour: Colour) -> int:
    return (colour[0] << 16) | (colour[1] << 8) | colour[2]


def read_classes(path: Path) -> tuple[tuple[str, ...], tuple[Colour, ...], Colour | None]:
    """Class names, their colours, and the ignore colour (if any) of a classes.txt."""
    if not path.is_file():
        raise ClassesError(f"folder: missing {path} (one class name per line, line i = label value i)")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: Windows editors add a BOM
    except (OSError, UnicodeDecodeError) as error:
        raise ClassesError(f"folder: unreadable {path}: {error}") from error
    entries = [(number, line.strip()) for number, line in enumerate(lines, 1)]
    parsed = [parse_line(path, number, line) for number, line in entries if line and not line.startswith("#")]
    ignore = [colour for name, colour in parsed if name == IGNORE_NAME]
    parsed = [(name, colour) for name, colour in parsed if name != IGNORE_NAME]
    if not parsed:
        raise ClassesError(f"folder: {path} names no class")
    if len(parsed) > MAX_CLASSES:
        raise ClassesError(
            f"folder: {path} names {len(parsed)} classes; at most {MAX_CLASSES} (255 = ignore)"
        )
    if len(ignore) > 1 or (ignore and ignore[0] is None):
        raise ClassesError(
            f"folder: {path}: give '{IGNORE_NAME}' once, with a colour ({IGNORE_NAME} #rrggbb)"
        )
    names = [name for name, _ in parsed]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ClassesError(f"folder: {path} names {', '.join(map(repr, duplicates))} more than once")
    default = voc_palette(len(names))
    palette = [colour or default[i] for i, (_, colour) in enumerate(parsed)]
    check_distinct(path, names + [IGNORE_NAME] * len(ignore), palette + ignore)
    return tuple(names), tuple(palette), ignore[0] if ignore else None


def check_distinct(path: Path, names: list[str], colours: list[Colour]) -> None:
    """Colour labels map colours to classes, and the app tells classes apart by colour."""
    seen: dict[Colour, str] = {}
    for name, colour in zip(names, colours, strict=True):
        if colour in seen:
            hex_colour = "#" + "".join(f"{v:02x}" for v in colour)
            raise ClassesError(f"folder: {path}: {seen[colour]!r} and {name!r} share the colour {hex_colour}")
        seen[colour] = name


def parse_line(path: Path, number: int, line: str) -> tuple[str, tuple[int, int, int] | None]:
    """`name`, `name #rrggbb` or `name R G B`, and a trailing ` # comment`."""
    words, colour, where = COMMENT.split(line, maxsplit=1)[0].split(), None, f"{path}, line {number}"
    if words[-1].startswith("#"):
        digits = words.pop()[1:]
        if len(digits) != 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise ClassesError(f"folder: {where}: colour #{digits} is not #rrggbb")
        colour = tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))
    elif len(words) >= 4 and all(w.lstrip("-").isdigit() for w in words[-3:]):
        colour, words = tuple(int(w) for w in words[-3:]), words[:-3]
        if any(not 0 <= v <= 255 for v in colour):
            raise ClassesError(f"folder: {where}: colour {colour} has values outside 0..255")
    # a mistyped colour would otherwise become part of the name, and the class a default colour
    if any("#" in w for w in words) or LIST_OF_NUMBERS.search(" ".join(words)):
        raise ClassesError(
            f"folder: {where}: {line.strip()!r} is not `name`, `name #rrggbb` or `name R G B` "
            "(three integers separated by spaces)"
        )
    name = " ".join(words)
    return (IGNORE_NAME if name.lower().rstrip(":") == IGNORE_NAME else name), colour

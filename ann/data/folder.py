"""Your own dataset: the `folder` layout (not in the paper; how users train ANN on their data).

```
ROOT/classes.txt                      one class per line, line i = train id i
ROOT/images/{split}/**/NAME.jpg|png   any split names (train, val, test, ...)
ROOT/labels/{split}/**/NAME.png       one channel, values 0..K-1, 255 = ignore
```

A line of classes.txt is a class name, optionally followed by its colour as `#rrggbb` or three
integers (`traffic light 250 170 30`); classes without one get the PASCAL VOC colour of their id.
Blank lines and lines starting with `#` are skipped. The layout is read from ROOT itself, so the
classes, palette and splits travel into the checkpoint like those of the built-in layouts.
"""

from pathlib import Path

from ann.data.layouts import DatasetLayout, LabelFormat, identity_lut, voc_palette

CLASSES_FILE = "classes.txt"
IMAGE_SUFFIXES = tuple(
    s for suffix in (".png", ".jpg", ".jpeg", ".bmp", ".webp") for s in (suffix, suffix.upper())
)
MAX_CLASSES = 255  # label value 255 is the ignore index


class ClassesError(ValueError):
    """classes.txt is missing or malformed; the message names the file and line."""


def folder_layout(root: str | Path) -> DatasetLayout:
    """The layout of ROOT: its classes.txt and the split folders under ROOT/images."""
    root = Path(root)
    names, palette = read_classes(root / CLASSES_FILE)
    images = root / "images"
    splits = sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []
    if not splits:
        raise ClassesError(
            f"folder: no split folders under {images} (expected images/train, images/val, ...)"
        )
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
    )


def read_classes(path: Path) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    """Class names and colours from a classes.txt (format in the module docstring)."""
    if not path.is_file():
        raise ClassesError(f"folder: missing {path} (one class name per line, line i = label value i)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ClassesError(f"folder: unreadable {path}: {error}") from error
    entries = [(number, line.strip()) for number, line in enumerate(lines, 1)]
    entries = [(number, line) for number, line in entries if line and not line.startswith("#")]
    if not entries:
        raise ClassesError(f"folder: {path} names no class")
    if len(entries) > MAX_CLASSES:
        raise ClassesError(
            f"folder: {path} names {len(entries)} classes; at most {MAX_CLASSES} (255 = ignore)"
        )
    names, colours = zip(*(parse_line(path, number, line) for number, line in entries), strict=True)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ClassesError(f"folder: {path} names {', '.join(map(repr, duplicates))} more than once")
    default = voc_palette(len(names))
    return tuple(names), tuple(colour or default[i] for i, colour in enumerate(colours))


def parse_line(path: Path, number: int, line: str) -> tuple[str, tuple[int, int, int] | None]:
    """`name`, `name #rrggbb` or `name R G B`."""
    words, colour, where = line.split(), None, f"{path}, line {number}"
    if words[-1].startswith("#"):
        digits = words.pop()[1:]
        if len(digits) != 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise ClassesError(f"folder: {where}: colour #{digits} is not #rrggbb")
        colour = tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))
    elif len(words) >= 4 and all(w.lstrip("-").isdigit() for w in words[-3:]):
        colour, words = tuple(int(w) for w in words[-3:]), words[:-3]
        if any(not 0 <= v <= 255 for v in colour):
            raise ClassesError(f"folder: {where}: colour {colour} has values outside 0..255")
    return " ".join(words), colour

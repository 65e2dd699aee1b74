"""Folder layouts of the datasets the paper evaluates on (Sec. 4.1 and appendix A), as data.

Each `DatasetLayout` says where images and labels live, how they pair, which split names exist and
how raw label values become train ids. One generic reader (ann/data/datasets.py) reads them all.
The folder conventions follow the converted layouts documented by mmsegmentation; see
docs/datasets.md for the trees and the conversion scripts.
"""

from dataclasses import dataclass, replace

import numpy as np

from ann.data.labels import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    IGNORE_INDEX,
    cityscapes_labelid_lut,
)

# LUT entry for a raw value that must not occur in a label file (a wrong file or a corrupt one).
INVALID = -1


@dataclass(frozen=True, eq=False)
class LabelFormat:
    """One way a label file can be stored: its name suffix and its raw value -> train id table."""

    suffix: str
    lut: np.ndarray  # (256,) int16: train id, IGNORE_INDEX, or INVALID


@dataclass(frozen=True, eq=False)
class DatasetLayout:
    """Where the files of one dataset live. `{split}` in a folder is replaced by the split folder."""

    name: str
    image_dir: str
    image_suffixes: tuple[str, ...]  # tried in order; the first is the usual one
    label_dir: str
    # Tried in order for each image; the first label file that exists is used.
    label_formats: tuple[LabelFormat, ...]
    splits: dict[str, str]  # split name the user passes -> folder / list name on disk
    num_classes: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    # A text file of image ids per split; None means every image under image_dir is in the split.
    split_list: str | None = None
    mat_key: str = "S"  # variable holding the label map in a MATLAB .mat label file
    # RGB label colour (0xRRGGBB) -> train id, for labels painted in class colours (folder layout)
    colour_ids: dict[int, int] | None = None

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes or len(self.palette) != self.num_classes:
            raise ValueError(
                f"layout {self.name}: {self.num_classes} classes but "
                f"{len(self.class_names)} names and {len(self.palette)} colours"
            )


def identity_lut(num_classes: int) -> np.ndarray:
    """Labels already hold train ids 0..num_classes-1 (and 255 = ignore)."""
    lut = np.full(256, INVALID, dtype=np.int16)
    lut[:num_classes] = np.arange(num_classes)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


def reduce_zero_lut(num_classes: int) -> np.ndarray:
    """Labels hold 0 = unlabelled and classes 1..num_classes: 0 -> ignore, v -> v - 1."""
    lut = np.full(256, INVALID, dtype=np.int16)
    lut[0] = IGNORE_INDEX
    lut[1 : num_classes + 1] = np.arange(num_classes)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


def cityscapes_labelids_lut() -> np.ndarray:
    """The official labelId -> trainId table; labelIds beyond 33 do not exist."""
    lut = cityscapes_labelid_lut().astype(np.int16)
    lut[34:IGNORE_INDEX] = INVALID
    return lut


# COCO-Stuff ids 1..182 (0 = unlabelled); these 11 thing ids were dropped from COCO and never occur.
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)


def coco_stuff_raw_lut() -> np.ndarray:
    """Raw ids of the 10K release's .mat files -> the 171 contiguous train ids."""
    lut = np.full(256, INVALID, dtype=np.int16)
    used = [i for i in range(1, 183) if i not in COCO_UNUSED_IDS]
    lut[used] = np.arange(len(used))
    lut[[0, *COCO_UNUSED_IDS, IGNORE_INDEX]] = IGNORE_INDEX
    return lut


def voc_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map (bits of the class id spread over R, G, B): distinct, stable colours.
    Datasets whose raw 0 is "unlabelled" take voc_palette(n + 1)[1:]: a class keeps the colour of its
    raw id, and black stays for unlabelled and ignored pixels (plots draw 255 black)."""
    colours = []
    for index in range(num_classes):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def hex_palette(text: str) -> tuple[tuple[int, int, int], ...]:
    """Colours written as RRGGBB words: a 150-colour table reads as 15 lines instead of 150."""
    return tuple(tuple(bytes.fromhex(word)) for word in text.split())


# The colours of the ADE20K scene-parsing benchmark's own tools (MIT CSAIL's color150 table, also
# used by mmsegmentation), so predictions look like every published ADE20K figure. As in that table,
# road (6) and skyscraper (48) share grey 8c8c8c.
ADE20K_PALETTE = hex_palette(
    """
    787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07
    e005ff ebff07 96053d 787846 08ff33 ff0652 8fff8c ccff04 ff3307 cc4603
    0066c8 3de6fa ff0633 0b66ff ff0747 ff09e0 0907e6 dcdcdc ff095c 7009ff
    08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff e0ff08 6608ff ff3d06 ffc207
    ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff 8c8c8c fa0a0f
    14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff
    0bc8c8 ff5200 00fff5 003dff 00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00
    008fff 33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 ff5c00 ff00ff
    ff00f5 ff0066 ffad00 ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2
    00ff52 000aff 0070ff 3300ff 00c2ff 007aff 00ffa3 ff9900 00ff0a ff7000
    8fff00 5200ff a3ff00 ffeb00 08b8aa 8500ff 00ff5c b800ff ff001f 00b8ff
    00d6ff ff0070 5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 ff00a3
    ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500 0abed4 d6ff00
    00ccff 1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff
    4700ff 7a00ff 00ffb8 005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff
    """
)


ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)  # fmt: skip

# Index order of the converted masks: background, then the 59 categories sorted by their
# original PASCAL-Context id (mmsegmentation's pascal_context.py conversion).
PASCAL_CONTEXT_CLASSES = (
    "background", "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat",
    "book", "bottle", "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth",
    "computer", "cow", "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass",
    "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse", "person", "plate",
    "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky",
    "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water",
    "window", "wood",
)  # fmt: skip

COCO_STUFF_CLASSES = (
    # 80 things
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
    # 91 stuff
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage",
    "cardboard", "carpet", "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds",
    "counter", "cupboard", "curtain", "desk-stuff", "dirt", "door-stuff", "fence", "floor-marble",
    "floor-other", "floor-stone", "floor-tile", "floor-wood", "flower", "fog", "food-other",
    "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill", "house", "leaves",
    "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net", "paper",
    "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing",
    "railroad", "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf",
    "sky-other", "skyscraper", "snow", "solid-other", "stairs", "stone", "straw",
    "structural-other", "table", "tent", "textile-other", "towel", "tree", "vegetable",
    "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)  # fmt: skip

# The 40-class task of Gupta et al. (CVPR 2013) used by RefineNet and the paper's Table 8.
NYUD_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip

CITYSCAPES = DatasetLayout(
    name="cityscapes",
    image_dir="leftImg8bit/{split}",
    image_suffixes=("_leftImg8bit.png",),
    label_dir="gtFine/{split}",
    label_formats=(
        LabelFormat("_gtFine_labelTrainIds.png", identity_lut(19)),
        LabelFormat("_gtFine_labelIds.png", cityscapes_labelids_lut()),
    ),
    splits={"train": "train", "val": "val", "test": "test"},
    num_classes=19,
    class_names=CITYSCAPES_CLASSES,
    palette=CITYSCAPES_PALETTE,
)

ADE20K = DatasetLayout(
    name="ade20k",
    image_dir="ADEChallengeData2016/images/{split}",
    image_suffixes=(".jpg",),
    label_dir="ADEChallengeData2016/annotations/{split}",
    label_formats=(LabelFormat(".png", reduce_zero_lut(150)),),
    splits={"train": "training", "val": "validation"},
    num_classes=150,
    class_names=ADE20K_CLASSES,
    palette=ADE20K_PALETTE,
)

PASCAL_CONTEXT = DatasetLayout(
    name="pascal_context",
    image_dir="JPEGImages",
    image_suffixes=(".jpg",),
    label_dir="SegmentationClassContext",
    label_formats=(LabelFormat(".png", identity_lut(60)),),
    splits={"train": "train", "val": "val"},
    num_classes=60,
    class_names=PASCAL_CONTEXT_CLASSES,
    palette=voc_palette(60),
    split_list="ImageSets/SegmentationContext/{split}.txt",
)

# The 59-class protocol most later papers report (mmsegmentation's PascalContextDataset59): the same
# masks with background ignored. Each class keeps its colour from the 60-class palette.
PASCAL_CONTEXT_59 = replace(
    PASCAL_CONTEXT,
    name="pascal_context_59",
    label_formats=(LabelFormat(".png", reduce_zero_lut(59)),),
    num_classes=59,
    class_names=PASCAL_CONTEXT.class_names[1:],
    palette=PASCAL_CONTEXT.palette[1:],
)

# COCO-Stuff-10K has no validation split; the paper (like DeepLab-v2) reports on the 1K test split,
# so "val" names it too.
COCO_STUFF10K = DatasetLayout(
    name="coco_stuff10k",
    image_dir="images/{split}",
    image_suffixes=(".jpg",),
    label_dir="annotations/{split}",
    label_formats=(LabelFormat("_labelTrainIds.png", reduce_zero_lut(171)),),
    splits={"train": "train2014", "val": "test2014", "test": "test2014"},
    num_classes=171,
    class_names=COCO_STUFF_CLASSES,
    palette=voc_palette(172)[1:],
)

# The release as downloaded (cocostuff-10k-v1.1.zip): flat folders, lists in imageLists/.
COCO_STUFF10K_MAT = DatasetLayout(
    name="coco_stuff10k_mat",
    image_dir="images",
    image_suffixes=(".jpg",),
    label_dir="annotations",
    label_formats=(LabelFormat(".mat", coco_stuff_raw_lut()),),
    splits={"train": "train", "val": "test", "test": "test"},
    num_classes=171,
    class_names=COCO_STUFF_CLASSES,
    palette=voc_palette(172)[1:],
    split_list="imageLists/{split}.txt",
)

# NYUD-v2, 795 train / 654 test images; label40 PNGs hold 0 = unlabelled and classes 1..40.
NYUD_V2 = DatasetLayout(
    name="nyud_v2",
    image_dir="image/{split}",
    image_suffixes=(".png",),
    label_dir="label40/{split}",
    label_formats=(LabelFormat(".png", reduce_zero_lut(40)),),
    splits={"train": "train", "val": "test", "test": "test"},
    num_classes=40,
    class_names=NYUD_CLASSES,
    palette=voc_palette(41)[1:],
)

# SynthCity (ann/data/synthcity/) writes the Cityscapes layout with labelTrainIds.
LAYOUTS = {
    "cityscapes": CITYSCAPES,
    "synthcity": CITYSCAPES,
    "ade20k": ADE20K,
    "pascal_context": PASCAL_CONTEXT,
    "pascal_context_59": PASCAL_CONTEXT_59,
    "coco_stuff10k": COCO_STUFF10K,
    "coco_stuff10k_mat": COCO_STUFF10K_MAT,
    "nyud_v2": NYUD_V2,
}

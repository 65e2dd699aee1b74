"""The images of the app: the upload component (files reach `ann.images.read_image` undecoded)
and the bundled examples."""

from pathlib import Path

import gradio as gr

EXAMPLES = Path(__file__).parent / "examples"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class UploadedImage(gr.Image):
    """gr.Image whose upload reaches the handler as the file itself, undecoded, for `read_image`.

    gr.Image's own preprocessing opens every upload with PIL first: a non-image, an empty file or a
    decompression bomb then fails inside gradio with its generic "raised an exception" instead of
    our message naming the problem, and non-RGB modes are converted lossily (16-bit clipped,
    transparency dropped) before `to_rgb` sees them.

    Create it with type="filepath", image_mode=None. It has no __init__ of its own on purpose:
    gradio builds the settings it sends to the browser from the constructor's signature, and a
    (*args, **kwargs) one sends none, so the page never renders.
    """

    is_template = True  # the browser side is gr.Image's component

    def preprocess(self, payload):
        if payload is None or self.type != "filepath" or payload.path is None:
            return super().preprocess(payload)
        if payload.url and payload.url.startswith("data:"):  # base64 from the browser: gradio writes it
            return super().preprocess(payload)
        return payload.path


def examples() -> tuple[list[list], list[str]]:
    """[image, label map or None] rows: SynthCity test images with ground truth, then photos."""
    rows, labels = [], []
    for image in sorted((EXAMPLES / "synthcity").rglob("*_leftImg8bit.png")):
        label = label_file_for(image)
        rows.append([str(image), str(label) if label else None])
        labels.append(
            f"SynthCity {image.stem.removesuffix('_leftImg8bit')}" + (" + ground truth" if label else "")
        )
    for image in sorted((EXAMPLES / "photos").glob("*")):
        if image.suffix.lower() in IMAGE_SUFFIXES:
            rows.append([str(image), None])
            labels.append(f"photo: {image.stem}")
    return rows, labels


def label_file_for(image: Path) -> Path | None:
    """The Cityscapes-layout ground truth of a leftImg8bit image (trainIds), if present."""
    relative = image.relative_to(EXAMPLES / "synthcity")
    name = image.name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png")
    path = EXAMPLES / "synthcity" / "gtFine" / relative.parent.relative_to("leftImg8bit") / name
    return path if path.is_file() else None

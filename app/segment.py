"""Models and Segment handlers: choose a checkpoint, segment an image, redraw the overlay."""

from __future__ import annotations

import base64
import re
from functools import cache
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from ann.analysis.explore import class_shares, error_map, per_class_iou
from ann.checkpoint import file_sha256
from ann.data.labels import CITYSCAPES_CLASSES
from ann.images import ImageError, from_array, read_image, read_label_map
from ann.training.card import data_text, trained_on
from app import plots
from app.errors import UserError
from app.sampling import trained_sampling
from app.session import UNTRAINED, ModelStore, Session, processing_size, require, returns_freed_memory

CONFIDENCE_CMAP, ENTROPY_CMAP = "cividis", "magma"
EXAMPLE_LABELS = Path(__file__).parent / "examples" / "synthcity" / "gtFine"


def session_for(store: ModelStore, session: Session | None, checkpoint: str) -> Session:
    """The session on `checkpoint`: the existing one, or a new one (image kept, to be rerun)."""
    checkpoint = checkpoint or store.default()
    if session is not None and session.checkpoint == checkpoint:
        return session
    try:
        fresh = store.session(checkpoint)
    except ValueError as error:  # CheckpointError included
        raise UserError(str(error)) from error
    if session is not None:
        for kept in ("image", "target", "image_name", "source", "label_source", "side"):
            setattr(fresh, kept, getattr(session, kept))
    return fresh


def load_image(value, max_side: int) -> tuple[np.ndarray, str]:
    try:
        if isinstance(value, np.ndarray):
            return from_array(value, max_side), "array"
        return read_image(value, max_side), Path(value).name
    except ImageError as error:
        raise UserError(str(error)) from error


@returns_freed_memory
def segment(
    session: Session | None,
    image,
    label_map: str | None = None,
    checkpoint: str | None = None,
    opacity: float = 0.55,
    outline: bool = False,
    hidden: list[str] | None = None,
    *,
    store: ModelStore,
    max_side: int | None = None,
):
    """Segment an image (file path or array); with a label map, errors and per-class IoU. Images
    are read at the model's processing size (`processing_size`; `max_side` overrides it)."""
    session = session_for(store, session, checkpoint)
    side = processing_size(session.explorer.meta, max_side)[0]
    if image is None and session.source is not None and session.side != side:
        image, label_map = session.source, label_map or session.label_source  # the files, at the new scale
    if image is None and session.image is None:
        raise UserError("Upload an image, use the webcam or click an example first.")
    # decode and check everything before the session changes: a refused label map must not
    # leave the new image beside the old result (attention and export would mix the two)
    picture, name, target = session.image, session.image_name, session.target
    if image is not None:
        (picture, name), target = load_image(image, side), None
    classes = session.explorer.meta.classes
    if label_map and tuple(classes) != CITYSCAPES_CLASSES and is_example_label(label_map):
        # Gradio hands examples over as cached copies: recognised by content, not by path
        gr.Info("The example's ground truth is in Cityscapes classes, not this model's: no IoU.")
        label_map = None
    if label_map:
        try:
            target = read_label_map(label_map, picture.shape[:2], len(classes))
        except ImageError as error:
            raise UserError(str(error)) from error
    session.explorer.run(picture)
    if image is not None:
        session.source, session.side, session.label_source = image, side, None
    if label_map:
        session.label_source = label_map
    session.image, session.image_name, session.target, session.selection = picture, name, target, {}
    return session, *segment_views(session, opacity, outline, hidden)


def is_example_label(path) -> bool:
    return file_sha256(path) in example_label_digests()


@cache
def example_label_digests() -> frozenset[str]:
    return frozenset(file_sha256(path) for path in EXAMPLE_LABELS.rglob("*.png"))


def resegment(
    session: Session | None, image, label_map, checkpoint, opacity, outline, hidden, *, store, max_side
):
    """After a model switch: segment the session's image again, if it has one."""
    if session is None or session.image is None:
        return session, *([gr.skip()] * 8)
    return segment(session, None, None, checkpoint, opacity, outline, hidden, store=store, max_side=max_side)


def segment_views(session: Session, opacity: float, outline: bool, hidden: list[str] | None):
    """overlay, legend, confidence, entropy, error map, IoU table, summary, clickable image."""
    result, meta = session.result, session.explorer.meta
    picture, legend = render(session, opacity, outline, hidden)
    confidence = plots.heatmap(result.confidence, CONFIDENCE_CMAP, 0.0, 1.0)
    entropy = plots.heatmap(result.entropy, ENTROPY_CMAP, 0.0, float(np.log(len(meta.classes))))
    errors, table, text = None, None, ""
    score = scores(session)
    if score is not None:
        errors = plots.error_picture(result.image, error_map(result.labels, session.target))
        table = pd.DataFrame({"class": list(score["iou"]), "IoU %": list(score["iou"].values())})
        text = (
            f" mIoU over present classes **{score['miou']:.1f}**, "
            f"pixel accuracy **{score['pixel_accuracy']:.1f}** (%)."
        )
    H, W = result.size
    summary = (
        f"{session.image_name}: {W}x{H} px on **{session.checkpoint}**. Mean confidence "
        f"{result.confidence.mean():.3f}, mean entropy {result.entropy.mean():.3f} nats.{text}"
    )
    if session.checkpoint == UNTRAINED:
        summary = "**Untrained model (no bundled checkpoint yet): random predictions.** " + summary
    return picture, legend, confidence, entropy, errors, table, summary, plots.clickable(picture)


def scores(session: Session) -> dict | None:
    """Against the session's label map (None without one), in percent as the model card and the
    evaluator report them: IoU of each class present (ann.metrics convention), their mean, and
    the pixel accuracy over pixels that are not ignored."""
    if session.target is None:
        return None
    labels, target, classes = session.result.labels, session.target, session.explorer.meta.classes
    iou = per_class_iou(labels, target, len(classes))
    valid = target != 255
    accuracy = float((labels[valid] == target[valid]).mean()) if valid.any() else float("nan")
    return {
        "iou": {classes[k]: round(100 * float(iou[k]), 1) for k in np.flatnonzero(~np.isnan(iou))},
        "miou": 100 * float(np.nanmean(iou)),
        "pixel_accuracy": 100 * accuracy,
    }


def render(session: Session | None, opacity: float, outline: bool, hidden: list[str]):
    """The overlay and legend of the current result, without running the model."""
    session = require(session)
    meta, result = session.explorer.meta, session.result
    hidden_ids = {meta.classes.index(name) for name in hidden or [] if name in meta.classes}
    picture = plots.overlay(result.image, result.labels, meta.palette, opacity, outline, hidden_ids)
    shares = class_shares(result.labels, len(meta.classes))
    return picture, plots.legend_html(meta.classes, meta.palette, shares, hidden_ids)


def redraw(session: Session | None, opacity: float, outline: bool, hidden: list[str]):
    if session is None or session.result is None:
        return None, ""
    return render(session, opacity, outline, hidden)


def choose_model(session: Session | None, checkpoint: str, *, store: ModelStore, max_side: int | None = None):
    """Switch the session's model; its model card and processing size. The image, if any, is
    segmented again after (at the new model's size)."""
    from app.attention import block_update

    session = session_for(store, session, checkpoint)
    meta = session.explorer.meta
    blocks = block_update(session.explorer.model.config)
    card = model_card(store, checkpoint, max_side)
    return session, card, gr.update(choices=meta.classes, value=[]), blocks, size_text(meta, max_side)


def upload_checkpoint(
    session: Session | None, file: str | None, *, store: ModelStore, max_side: int | None = None
):
    """Register an uploaded checkpoint (.safetensors, or the authors' .pth) and switch to it."""
    name = add_checkpoint(store, file)
    session, card, classes, blocks, size = choose_model(session, name, store=store, max_side=max_side)
    return session, gr.update(choices=store.names(), value=name), card, classes, blocks, size


def add_checkpoint(store: ModelStore, file: str | None) -> str:
    """A checkpoint file registered in the store; its name in the menu."""
    if not file:
        raise UserError("Choose a .safetensors or .pth file.")
    try:
        return store.add_file(file)
    except ValueError as error:
        # the user knows the file by its name, not by the server's upload folder
        raise UserError(str(error).replace(str(Path(file).parent) + "/", "")) from error


def size_text(meta, max_side: int | None = None) -> str:
    """The page's line on the processing size: which size and why."""
    side, reason = processing_size(meta, max_side)
    return f"Images are processed with their longer side at most **{side} px** ({reason})."


def model_card(store: ModelStore, name: str, max_side: int | None = None) -> str:
    """Classes, training data, metrics and config from the metadata, then the .md next to the file."""
    model = store.model(name)
    meta = model.meta
    config, provenance = meta.config, meta.provenance
    lines = [f"### {name}"]
    if name == UNTRAINED:
        lines.append(
            "**Untrained: random initialisation, no bundled checkpoint yet.** The mechanics work; "
            "the predictions and attention maps mean nothing."
        )
    lines += [
        f"- network: {config.fusion.upper()} + {config.context.upper()} on {config.backbone} "
        f"(output stride {config.output_stride}), head {config.head_channels}, key {config.key_channels}, "
        f"value {config.value_channels}",
        f"- trained sampling: {trained_sampling(model)}",
        f"- {len(meta.classes)} classes: {', '.join(meta.classes)}",
        f"- sha256: `{meta.sha256}`",
    ]
    if provenance.get("source_sha256"):  # converted from the authors' .pth: the file the user has
        lines.append(f"- sha256 of the converted .pth: `{provenance['source_sha256']}`")
    for key, split in (("metrics", "val_split"), ("test_metrics", "test_split")):
        result = provenance.get(key) or {}
        if "miou" in result:
            name_of_split = provenance.get("data", {}).get(split) or key
            lines.append(f"- {name_of_split} mIoU: **{100 * result['miou']:.2f}**")
    if isinstance(provenance.get("data"), dict):
        lines.append(f"- data: {data_text(provenance['data'])}")
        lines.append(f"- trained on: {trained_on(provenance)}")
    side, reason = processing_size(meta, max_side)
    lines.append(f"- processed here at a longer side of {side} px ({reason})")
    for key in ("dataset", "iterations", "note", "source", "git_commit"):
        if key in provenance:
            lines.append(f"- {key}: {provenance[key]}")
    if provenance.get("reproduce"):
        lines.append(f"- reproduce: `{provenance['reproduce']}`")
    return "\n".join(lines + card_file(store.path(name)))


def card_file(path: Path | None) -> list[str]:
    """NAME.md beside a shipped checkpoint, else the trainer's model_card.md in its run folder."""
    cards = [path.with_suffix(".md"), path.parent / "model_card.md"] if path is not None else []
    card = next((c for c in cards if c.is_file()), None)
    if card is None:
        return []
    text = card.read_text(encoding="utf-8", errors="replace")[:20_000]
    return ["", "---", "", inline_images(text, card.parent)]


CARD_IMAGE = re.compile(r"!\[([^\]]*)\]\(([\w.-]+\.png)\)")  # a bare file name: no folders, no '..'


def inline_images(card: str, folder: Path, limit: int = 2_000_000) -> str:
    """The card's own PNGs (its training curve, beside it) as data URIs: the page cannot fetch
    files from the checkpoint folder, and nothing outside that folder is ever read."""

    def inline(match: re.Match) -> str:
        image = folder / match.group(2)
        if not image.is_file() or image.stat().st_size > limit:
            return match.group(0)
        data = base64.b64encode(image.read_bytes()).decode()
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    return CARD_IMAGE.sub(inline, card)

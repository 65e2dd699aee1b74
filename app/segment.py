"""Models and Segment handlers: choose a checkpoint, segment an image, redraw the overlay."""

from __future__ import annotations

import base64
import re
from functools import cache
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from ann.checkpoint import file_sha256
from ann.data.labels import CITYSCAPES_CLASSES
from ann.explore import class_shares, error_map, per_class_iou
from ann.images import ImageError, from_array, read_image, read_label_map
from ann.info import data_text
from app import plots
from app.sampling import trained_sampling
from app.session import UNTRAINED, ModelStore, Session, require, returns_freed_memory

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
        raise gr.Error(str(error)) from error
    if session is not None:
        fresh.image, fresh.target, fresh.image_name = session.image, session.target, session.image_name
    return fresh


def load_image(value, max_side: int) -> tuple[np.ndarray, str]:
    try:
        if isinstance(value, np.ndarray):
            return from_array(value, max_side), "array"
        return read_image(value, max_side), Path(value).name
    except ImageError as error:
        raise gr.Error(str(error)) from error


@returns_freed_memory
def segment(
    session: Session | None,
    image,
    label_map: str | None,
    checkpoint: str,
    opacity: float,
    outline: bool,
    hidden: list[str],
    *,
    store: ModelStore,
    max_side: int,
):
    """Segment an image (file path or array); with a label map, errors and per-class IoU."""
    session = session_for(store, session, checkpoint)
    if image is None and session.image is None:
        raise gr.Error("Upload an image, use the webcam or click an example first.")
    # decode and check everything before the session changes: a refused label map must not
    # leave the new image beside the old result (attention and export would mix the two)
    picture, name, target = session.image, session.image_name, session.target
    if image is not None:
        (picture, name), target = load_image(image, max_side), None
    classes = session.explorer.meta.classes
    if label_map and tuple(classes) != CITYSCAPES_CLASSES and is_example_label(label_map):
        # Gradio hands examples over as cached copies: recognised by content, not by path
        gr.Info("The example's ground truth is in Cityscapes classes, not this model's: no IoU.")
        label_map = None
    if label_map:
        try:
            target = read_label_map(label_map, picture.shape[:2], len(classes))
        except ImageError as error:
            raise gr.Error(str(error)) from error
    session.explorer.run(picture)
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


def segment_views(session: Session, opacity: float, outline: bool, hidden: list[str]):
    """overlay, legend, confidence, entropy, error map, IoU table, summary, clickable image."""
    result, meta = session.result, session.explorer.meta
    picture, legend = render(session, opacity, outline, hidden)
    confidence = plots.heatmap(result.confidence, CONFIDENCE_CMAP, 0.0, 1.0)
    entropy = plots.heatmap(result.entropy, ENTROPY_CMAP, 0.0, float(np.log(len(meta.classes))))
    errors, table, scores = None, None, ""
    if session.target is not None:
        errors = plots.error_picture(result.image, error_map(result.labels, session.target))
        iou = per_class_iou(result.labels, session.target, len(meta.classes))
        present = np.flatnonzero(~np.isnan(iou))
        percent = [round(100 * float(iou[k]), 1) for k in present]
        table = pd.DataFrame({"class": [meta.classes[k] for k in present], "IoU %": percent})
        valid = session.target != 255
        accuracy = (
            float((result.labels[valid] == session.target[valid]).mean()) if valid.any() else float("nan")
        )
        scores = (  # percent, as the model card and the evaluator report them
            f" mIoU over present classes **{100 * np.nanmean(iou):.1f}**, "
            f"pixel accuracy **{100 * accuracy:.1f}** (%)."
        )
    H, W = result.size
    summary = (
        f"{session.image_name}: {W}x{H} px on **{session.checkpoint}**. Mean confidence "
        f"{result.confidence.mean():.3f}, mean entropy {result.entropy.mean():.3f} nats.{scores}"
    )
    if session.checkpoint == UNTRAINED:
        summary = "**Untrained model (no bundled checkpoint yet): random predictions.** " + summary
    return picture, legend, confidence, entropy, errors, table, summary, plots.clickable(picture)


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


def choose_model(session: Session | None, checkpoint: str, *, store: ModelStore):
    """Switch the session's model; its model card. The image, if any, is segmented again after."""
    from app.attention import block_update

    session = session_for(store, session, checkpoint)
    classes = session.explorer.meta.classes
    blocks = block_update(session.explorer.model.config)
    return session, model_card(store, checkpoint), gr.update(choices=classes, value=[]), blocks


def upload_checkpoint(session: Session | None, file: str | None, *, store: ModelStore):
    """Register an uploaded checkpoint (.safetensors, or the authors' .pth) and switch to it."""
    if not file:
        raise gr.Error("Choose a .safetensors or .pth file.")
    try:
        name = store.add_file(file)
    except ValueError as error:
        # the user knows the file by its name, not by the server's upload folder
        raise gr.Error(str(error).replace(str(Path(file).parent) + "/", "")) from error
    session, card, classes, blocks = choose_model(session, name, store=store)
    return session, gr.update(choices=store.names(), value=name), card, classes, blocks


def model_card(store: ModelStore, name: str) -> str:
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
    for key in ("dataset", "iterations", "note", "source", "git_commit"):
        if key in provenance:
            lines.append(f"- {key}: {provenance[key]}")
    if provenance.get("reproduce"):
        lines.append(f"- reproduce: `{provenance['reproduce']}`")
    path = store.path(name)
    # NAME.md beside a shipped checkpoint; model_card.md in a trainer's run folder
    cards = [path.with_suffix(".md"), path.parent / "model_card.md"] if path is not None else []
    card = next((c for c in cards if c.is_file()), None)
    if card is not None:
        text = card.read_text(encoding="utf-8", errors="replace")[:20_000]
        lines += ["", "---", "", inline_images(text, card.parent)]
    return "\n".join(lines)


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

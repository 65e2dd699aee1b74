"""Segment tab: segment an image (with a ground-truth label map: errors and IoU), redraw the
overlay; its listeners also bring in a new model (the model row, app/models.py) and then
segment the session's image again."""

from __future__ import annotations

from functools import cache, partial
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from ann.analysis.explore import error_map, per_class_iou
from ann.checkpoint import file_sha256
from ann.data.labels import CITYSCAPES_CLASSES
from ann.images import ImageError, from_array, read_image, read_label_map
from app import plots
from app.errors import UserError
from app.images import EXAMPLES, UploadedImage, examples
from app.models import choose_model, session_for, upload_checkpoint
from app.session import MODEL_QUEUE, UNTRAINED, ModelStore, Session, processing_size, returns_freed_memory
from app.tab import CLICK, Components, Context, Tab

CONFIDENCE_CMAP, ENTROPY_CMAP = "cividis", "magma"
EXAMPLE_LABELS = EXAMPLES / "synthcity" / "gtFine"


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
    picture, legend = plots.render(session, opacity, outline, hidden)
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


def redraw(session: Session | None, opacity: float, outline: bool, hidden: list[str]):
    if session is None or session.result is None:
        return None, ""
    return plots.render(session, opacity, outline, hidden)


def build(ctx: Context) -> Components:
    c = {}
    with gr.Row():
        with gr.Column(scale=1):
            c["image"] = UploadedImage(  # the file reaches ann.images.read_image undecoded
                label="image",
                type="filepath",
                image_mode=None,
                sources=["upload", "webcam", "clipboard"],
                elem_id="input-image",
            )
            c["label"] = gr.File(
                label="ground-truth label map (PNG of trainIds, 255 = ignore; optional)",
                file_types=[".png"],
                type="filepath",
                elem_id="label-file",
            )
            c["button"] = gr.Button("Segment", variant="primary", elem_id="segment-button")
            rows, labels = examples()
            if rows:
                c["examples"] = gr.Examples(
                    rows, [c["image"], c["label"]], example_labels=labels, label="examples"
                )
        with gr.Column(scale=2):
            c["overlay"] = plots.shown_image("segmentation", "overlay")
            with gr.Row():
                c["opacity"] = gr.Slider(0, 1, value=0.55, step=0.05, label="opacity", elem_id="opacity")
                c["outline"] = gr.Checkbox(False, label="outline mode", elem_id="outline")
            c["legend"] = gr.HTML(elem_id="legend")
            classes = ctx.store.model(ctx.checkpoint).meta.classes
            c["hidden"] = gr.CheckboxGroup(list(classes), label="hide classes", elem_id="hidden-classes")
    c["summary"] = gr.Markdown(elem_id="segment-summary")
    with gr.Row():
        c["confidence"] = plots.shown_image("confidence (max softmax, cividis 0..1)", "confidence-map")
        c["entropy"] = plots.shown_image("entropy (magma, 0..log K nats)", "entropy-map")
        c["errors"] = plots.shown_image("errors vs ground truth (vermillion; black = ignore)", "error-map")
    c["iou"] = gr.Dataframe(
        headers=["class", "IoU %"],
        label="per-class IoU (needs a ground-truth label map)",
        interactive=False,
        elem_id="iou-table",
    )
    return c


def view(seg: Components) -> list:
    """The overlay's display controls, which every redraw of it reads."""
    return [seg["opacity"], seg["outline"], seg["hidden"]]


def wire(ctx: Context, shared: dict[str, Components]) -> None:
    """Segment (button, example), a new upload, the display controls, and a new model: each new
    image or model is followed by the page's refreshers (ctx.new_image, ctx.new_model)."""
    seg, state = shared["segment"], ctx.state
    seg_inputs = [state, seg["image"], seg["label"], ctx.models["checkpoint"], *view(seg)]
    seg_outputs = [state, seg["overlay"], seg["legend"], seg["confidence"], seg["entropy"], seg["errors"],
                   seg["iou"], seg["summary"], shared["attention"]["image"]]  # fmt: skip
    stale = ctx.new_image  # unqueued: they run at once, before a next click
    run_segment = partial(segment, store=ctx.store, max_side=ctx.max_side)
    # progress and errors on the Segment tab's own views only: an error pill over the Attention
    # tab's image would block its clicks, and the image there is still the last good one
    seg_queue = {**MODEL_QUEUE, "show_progress_on": seg_outputs[1:-1]}
    seg["button"].click(run_segment, seg_inputs, seg_outputs, api_visibility="private", **seg_queue).success(
        *stale, api_visibility="private", queue=False
    )
    if "examples" in seg:
        seg["examples"].load_input_event.then(
            run_segment, seg_inputs, seg_outputs, api_visibility="private", **seg_queue
        ).success(*stale, api_visibility="private", queue=False)
    # a label map belongs to one image: a new upload drops it (else IoU against the wrong truth)
    seg["image"].upload(lambda: None, None, seg["label"], api_visibility="private", queue=False)
    for control in view(seg):
        control.change(
            redraw, [state, *view(seg)], [seg["overlay"], seg["legend"]], api_visibility="private", **CLICK
        )
    wire_models(ctx, shared, seg_inputs, seg_outputs)


def wire_models(ctx: Context, shared: dict[str, Components], seg_inputs: list, seg_outputs: list) -> None:
    """A new model (menu or uploaded file) segments the session's image again."""
    models, state = ctx.models, ctx.state
    options = {"store": ctx.store, "max_side": ctx.max_side}
    rerun = partial(resegment, **options)
    seg_queue = {**MODEL_QUEUE, "show_progress_on": seg_outputs[1:-1]}
    model_outputs = [models["card"], shared["segment"]["hidden"], shared["attention"]["block"]]
    model_outputs.append(models["size"])
    models["checkpoint"].input(
        partial(choose_model, **options),
        [state, models["checkpoint"]],
        [state, *model_outputs],
        api_visibility="private",
        **MODEL_QUEUE,
    ).then(rerun, seg_inputs, seg_outputs, api_visibility="private", **seg_queue).then(
        *ctx.new_image, api_visibility="private", queue=False
    ).then(*ctx.new_model, api_visibility="private", queue=False)
    models["upload"].upload(
        partial(upload_checkpoint, **options),
        [state, models["upload"]],
        [state, models["checkpoint"], *model_outputs],
        api_visibility="private",
        **MODEL_QUEUE,
    ).success(rerun, seg_inputs, seg_outputs, api_visibility="private", **seg_queue).then(
        *ctx.new_image, api_visibility="private", queue=False
    ).then(*ctx.new_model, api_visibility="private", queue=False)


TAB = Tab("Segment", "segment", build, wire)

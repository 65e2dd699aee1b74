"""Stage features tab: Stage1..Stage5 and the AFNB/APNB outputs of the segmented image, reduced to
one image per map (ann.analysis.features), under one normalisation; cosine similarity from a clicked pixel;
a second model side by side (paper Fig. 7: the ImageNet backbone before vs after training)."""

import hashlib
from functools import partial

import gradio as gr
import numpy as np
import torch

from ann.analysis import features
from ann.analysis.similarity import stage_alignment
from app.errors import UserError
from app.plots import display_size, mark_point, resize, unit_colors
from app.session import MODEL_QUEUE, STATE_TTL_S, ModelStore, Session, require, returns_freed_memory
from app.tab import Components, Context, Tab

IMAGENET = "EfficientNet-Lite0 with ImageNet weights (before segmentation training)"
NO_COMPARISON = "none"
REDUCTION_LABELS = {
    "mean over channels": "mean",
    "max over channels": "max",
    "PCA to RGB (3 principal components)": "pca",
}
_imagenet = {}  # output stride -> the ImageNet backbone (and its normalisation), loaded on first use


def imagenet_features(image: np.ndarray, output_stride: int) -> dict[str, torch.Tensor]:
    """At model A's output stride, so that both models' Stage4/Stage5 maps have the same size."""
    if output_stride not in _imagenet:
        _imagenet[output_stride] = features.imagenet_backbone(output_stride)
    return features.imagenet_features(image, *_imagenet[output_stride])


def image_key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest() + str(image.shape)


def comparison_features(
    store: ModelStore, name: str, image: np.ndarray, cache: dict | None, output_stride: int = 8
):
    """Features of the second model on the same image (the ImageNet backbone at `output_stride`);
    reused while model and image stay the same."""
    key = (name, image_key(image), output_stride)
    if cache and cache.get("key") == key:
        return cache["features"], cache
    try:
        if name == IMAGENET:
            found = imagenet_features(image, output_stride)
        else:
            explorer = store.get(name)
            result = explorer.run(image)
            found = features.named_features(explorer.stages, result.head, explorer.model.config)
    except (ValueError, FileNotFoundError) as error:
        raise UserError(f"cannot run the comparison model {name!r}: {error}") from error
    found = {k: v.detach() for k, v in found.items()}
    return found, {"key": key, "features": found}


def feature_groups(session: Session, compare: str, cache: dict | None, store: ModelStore):
    """{"": maps} for the session's model alone, {"A": ..., "B": ...} with a second model."""
    explorer = session.explorer
    own = features.named_features(explorer.stages, explorer.result.head, explorer.model.config)
    if not compare or compare == NO_COMPARISON:
        return {"": own}, cache
    stride = explorer.model.config.output_stride
    other, cache = comparison_features(store, compare, session.image, cache, stride)
    return {"A": own, "B": other}, cache


def caption(label: str, name: str, feature: torch.Tensor, value_range: tuple[float, float] | None) -> str:
    C, h, w = feature.shape[-3:]
    prefix = f"{label}: " if label else ""
    scale = "" if value_range is None else f" · range [{value_range[0]:.3g}, {value_range[1]:.3g}]"
    return f"{prefix}{name} · {C} ch · {h}x{w}{scale}"


def alignment_line(groups: dict[str, dict[str, torch.Tensor]]) -> str:
    """Linear CKA of A's and B's maps at the same places of this image: Fig. 7 in numbers."""
    rows = stage_alignment([(groups["A"], groups["B"])])
    values = " · ".join(f"{name} {row['cka']:.2f}" for name, row in rows.items())
    return (
        f"Linear CKA of A and B at the same places of this image (1: the same features up to rotation "
        f"and scale; python -m ann.stage_similarity over many images): {values}"
    )


@returns_freed_memory  # large, image-sized buffers: see app.session
def stage_features(
    session: Session | None,
    reduction: str,
    shared: bool,
    cmap: str,
    compare: str,
    cache: dict | None,
    store: ModelStore,
):
    """Galleries of the current model's maps and, if chosen, the second model's maps."""
    session = require(session)
    method = REDUCTION_LABELS.get(reduction, reduction)
    if method not in features.REDUCTIONS:
        raise UserError(f"unknown reduction {reduction!r}; valid: {', '.join(REDUCTION_LABELS)}")
    groups, cache = feature_groups(session, compare, cache, store)
    ranges, units = features.reduced_gallery(groups, method, shared)  # python -m ann.figure draws these
    size = display_size(session.image.shape[:2])
    galleries = {"": [], "A": [], "B": []}
    for label, name in units:
        rgb = resize(unit_colors(units[label, name], cmap), size)
        text = caption(label, name, groups[label][name], None if shared else ranges[label, name])
        galleries[label].append((rgb, text))
    if shared and ranges:
        low, high = next(iter(ranges.values()))
        scope = f"one range shared by all {len(units)} maps, [{low:.3g}, {high:.3g}]"
    else:
        scope = "each map scaled to its own range (below: the gallery cuts long captions)"
    status = f"{reduction}; {scope}, from 1st-99th percentiles. Model A: {session.checkpoint}"
    if "B" in groups:
        status += f"; model B: {compare}.\n\n{alignment_line(groups)}"
    if not shared:
        listed = (
            f"{label} {name} [{low:.3g}, {high:.3g}]".strip() for (label, name), (low, high) in ranges.items()
        )
        status += ".\n\nRanges: " + " · ".join(listed)
    return galleries[""] or galleries["A"], galleries["B"], status, cache


def cosine(
    session: Session | None,
    x: float | None,
    y: float | None,
    compare: str,
    cache: dict | None,
    cmap: str,
    store: ModelStore,
):
    """Cosine similarity of every position of every map to the clicked pixel (x right, y down)."""
    session = require(session)
    H, W = session.image.shape[:2]
    if x is None or y is None or not (0 <= x < W and 0 <= y < H):
        raise UserError(f"click the image, or give a pixel inside it (x in 0..{W - 1}, y in 0..{H - 1})")
    point = (int(y), int(x))
    groups, cache = feature_groups(session, compare, cache, store)
    size = display_size((H, W))
    marker = (point[0] * size[0] / H, point[1] * size[1] / W)
    galleries = {"": [], "A": [], "B": []}
    for label, found in groups.items():
        # the ImageNet backbone has no upsampling convention of its own: its cells tile the image
        if label == "B" and compare == IMAGENET:
            align = False
        else:
            align = (session.explorer.model if label != "B" else store.model(compare)).config.align_corners
        for name, (similarity, cell) in features.cosine_maps(found, point, (H, W), align).items():
            rgb = mark_point(resize(unit_colors((similarity + 1) / 2, cmap), size), marker)
            prefix = f"{label}: " if label else ""
            galleries[label].append((rgb, f"{prefix}{name} · cell (row, col) {cell}"))
    status = (
        f"cosine similarity to pixel (x={int(x)}, y={int(y)}) of the {W}x{H} image; "
        f"{cmap}: darkest -1, brightest +1"
    )
    return galleries[""] or galleries["A"], galleries["B"], status, cache


def pick_point(event: gr.SelectData):
    """A click on the image -> (x, y) in image pixels."""
    return event.index[0], event.index[1]


def show_image(session: Session | None):
    return None if session is None else session.image


def cleared(session: Session | None):
    """After a new image or model: the new image to click on, the old galleries and status gone.
    (image, gallery A, gallery B, status)"""
    return show_image(session), None, None, ""


def with_store(handler, store: ModelStore):
    """The handler with the store bound, under its own name and docstring: gradio's MCP server
    names and describes each tool by its function (a bare partial would be the tool "partial")."""
    bound = partial(handler, store=store)
    bound.__name__, bound.__doc__ = handler.__name__, handler.__doc__
    return bound


def build(ctx: Context) -> Components:
    """The tab's UI and its listeners (named endpoints, for clients without a browser session)."""
    state, store = ctx.state, ctx.store
    gr.Markdown(
        "Feature maps of the segmented image: **Stage1-Stage5** of the backbone and the outputs of "
        "the **AFNB** (fusion) and **APNB** (context) blocks. Each map is reduced to one image; with "
        "*shared normalisation* one value range (the envelope of every map's 1st-99th percentile) "
        "serves the whole gallery, both models included, so colours compare across stages. Click "
        "the image for the cosine similarity of every position to that pixel."
    )
    cache = gr.State(None, time_to_live=STATE_TTL_S)  # the second model's maps of this image
    with gr.Row():
        reduction = gr.Radio(list(REDUCTION_LABELS), value="mean over channels", label="channel reduction")
        shared = gr.Checkbox(value=True, label="shared normalisation")
        cmap = gr.Dropdown(["viridis", "cividis", "magma"], value="viridis", label="colormap")
    compare = gr.Dropdown(
        [NO_COMPARISON, IMAGENET, *store.names()],
        value=NO_COMPARISON,
        allow_custom_value=True,  # checkpoints uploaded after start-up, by name
        label="second model, side by side (Fig. 7: ImageNet backbone vs trained; or any checkpoint)",
    )
    show = gr.Button("Show feature maps", variant="primary")
    status = gr.Markdown()
    with gr.Row():
        first = gr.Gallery(
            label="model A (this session's model)",
            columns=4,
            height="auto",
            format="png",
            object_fit="contain",
        )
        second = gr.Gallery(label="model B", columns=4, height="auto", format="png", object_fit="contain")
    with gr.Row():
        image = gr.Image(
            label="click a pixel", interactive=False, type="numpy", height=320, elem_id="features-image"
        )
        with gr.Column():
            x = gr.Number(label="x (pixels, to the right)", precision=0)
            y = gr.Number(label="y (pixels, down)", precision=0)
            similar = gr.Button("Cosine similarity at (x, y)")
    show.click(
        with_store(stage_features, store),
        [state, reduction, shared, cmap, compare, cache],
        [first, second, status, cache],
        api_name="stage_features",
        **MODEL_QUEUE,
    ).then(show_image, state, image, api_visibility="private")
    inputs = [state, x, y, compare, cache, cmap]
    outputs = [first, second, status, cache]
    run_cosine = with_store(cosine, store)
    similar.click(run_cosine, inputs, outputs, api_name="cosine", **MODEL_QUEUE)
    image.select(pick_point, None, [x, y], api_visibility="private").then(
        run_cosine, inputs, outputs, api_visibility="private", **MODEL_QUEUE
    )
    return {"image": image, "first": first, "second": second, "status": status}


def new_image(tab: Components):
    return cleared, [tab[k] for k in ("image", "first", "second", "status")]


TAB = Tab("Stage features", "features", build, new_image=new_image)

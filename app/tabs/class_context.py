"""Class context tab (issues 16, 19): which classes a trained model's APNB/AFNB attention lands on,
by class, over SynthCity images or the current image (ann.analysis.context).

Row c of the heat map is where the attention of the pixels of class c goes, split by the classes
its anchors are made of (Sec. 3.2, Eq. 8-10 for APNB; Sec. 3.3, Eq. 14-16 for AFNB); each row
sums to 1. Over a split the model runs with its trained sampling, one forward pass per image, and
the results are kept per (checkpoint, split, count, size, labels), so a second view (another
block, the same data again) is instant. The current image needs no model run: its attention is
the one recorded with its segmentation, under the session's sampling.
"""

import time
from functools import partial

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ann.analysis.context import ClassContext, ContextResult, add_attention, attention_blocks, class_context
from ann.data.labels import CITYSCAPES_CLASSES
from ann.models.sampling import describe
from app.errors import UserError
from app.session import MODEL_QUEUE, ModelStore, Session, require, returns_freed_memory
from app.tab import Components, Context, Tab
from app.tabs import SPLITS, Recent, counted, split_size, synthcity_split

DATA = {"synthcity": "SynthCity images", "image": "the current image (Segment tab)"}
LABELS = {
    "": "ground truth where there is one, else the prediction",
    "gt": "ground truth",
    "prediction": "the model's prediction",
}
BLOCKS = {"context": "context block (APNB, or NB)", "fusion": "fusion block (AFNB, or FNB)"}
DEFAULT_COUNT = 20  # about 10 s at the shipped model's 512x256 on this 2-core CPU
COLUMNS = ["class", "pixels", "own class %", "effective anchors", "entropy (nats)", "unassigned %",
           "attends most to"]  # fmt: skip
RESULTS = Recent()  # (sha256, split, count, size, labels) -> (results by kind, seconds)


def label_source(labels: str, classes, data: str, session: Session | None) -> str:
    """`gt` or `prediction`: the asked one, or by default the ground truth where there is one in
    the model's classes (SynthCity's are Cityscapes'; the image's label map, if given)."""
    if labels not in LABELS:
        raise UserError(f"unknown label source {labels!r}; valid: gt, prediction (empty: the default)")
    has_truth = tuple(classes) == CITYSCAPES_CLASSES if data == "synthcity" else session.target is not None
    if labels == "gt" and not has_truth:
        if data == "synthcity":
            raise UserError("SynthCity's ground truth is in Cityscapes classes, not this model's: use "
                            "labels = prediction")  # fmt: skip
        raise UserError("The current image has no label map: give one on the Segment tab, or use labels = "
                        "prediction")  # fmt: skip
    return labels or ("gt" if has_truth else "prediction")


@returns_freed_memory
def split_context(
    store: ModelStore, name: str, split: str, count: int, labels: str, max_side: int | None, progress=None
) -> tuple[dict[str, ContextResult], dict]:
    """Every attention block's class context over the first `count` images of a SynthCity split:
    (results by kind, what was computed), from RESULTS when it was computed before."""
    model = store.model(name)
    source = label_source(labels, model.meta.classes, "synthcity", None)
    size = split_size(model.meta, max_side)
    key = (model.meta.sha256, split, int(count), size, source)
    found = RESULTS.get(key)
    if found is None:
        pairs, total = synthcity_split(model.meta, max_side, split, count)
        start = time.perf_counter()
        with store.get(name).lock:  # the model is shared: its sampling stays the trained one meanwhile
            results = class_context(model, counted(pairs, total, progress, "class context"), labels=source)
        found = results, time.perf_counter() - start
        RESULTS.put(key, found)
    results, seconds = found
    about = {"checkpoint": name, "data": "synthcity", "split": split, "labels": source, "size": list(size),
             "sampling": "trained", "seconds": round(seconds, 2)}  # fmt: skip
    return results, about


def image_context(session: Session, labels: str) -> tuple[dict[str, ContextResult], dict]:
    """Class context of the session's image, from the attention recorded with its segmentation."""
    explorer = session.explorer
    source = label_source(labels, explorer.meta.classes, "image", session)
    kinds = blocks_of(explorer.model)
    truth = session.target if source == "gt" else session.result.labels
    results = {}
    for kind in kinds.values():
        context = ClassContext(explorer.meta.classes, kind)
        add_attention(context, explorer.attention(kind), truth, explorer.model.config.align_corners)
        results[kind] = context.result()
    sampling = "; ".join(
        f"{kind.upper()} {describe(explorer.sampling[name])}" for name, kind in kinds.items()
    )
    about = {"checkpoint": session.checkpoint, "data": "image", "image": session.image_name, "labels": source,
             "size": list(session.result.size), "sampling": sampling, "seconds": 0.0}  # fmt: skip
    return results, about


def blocks_of(model) -> dict[str, str]:
    try:
        return attention_blocks(model)
    except ValueError as error:  # a model without attention (the FCN baseline)
        raise UserError(str(error)) from error


def pick(results: dict[str, ContextResult], model, block: str) -> ContextResult:
    """The result of `block`: "context" or "fusion", or a kind (apnb, afnb, nb, fnb); empty: context."""
    kinds = blocks_of(model)
    kind = kinds.get(block or "context", block if block in results else None)
    if kind is None:
        have = ", ".join(f"{name} ({kind})" for name, kind in kinds.items())
        raise UserError(f"no attention block {block!r} in this model; it has {have}")
    return results[kind]


def heatmap(result: ContextResult) -> go.Figure:
    """The class-to-class matrix; hover: query class and its pixels, anchors' class, share, mass."""
    classes, pixels = result.classes, result.pixels
    mass = pixels[:, None] * (1 - result.unassigned[:, None]) * result.matrix  # attention mass in pixels
    customdata = np.stack([np.broadcast_to(pixels[:, None], mass.shape), np.nan_to_num(mass)], -1)
    figure = go.Figure(
        go.Heatmap(
            z=result.matrix,
            x=classes,
            y=classes,
            customdata=customdata,
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            colorbar={"tickformat": ".0%", "title": {"text": "share"}},
            hovertemplate="query pixels: %{y} (%{customdata[0]:,} px)<br>anchors' class: %{x}<br>"
            "share: %{z:.1%} (%{customdata[1]:,.0f} px of attention)<extra></extra>",
        )
    )
    title = f"{result.block.upper()}: where each class's attention lands ({result.images} images)"
    figure.update_layout(
        title={"text": title, "font": {"size": 14}}, height=560,
        margin={"l": 110, "r": 10, "t": 40, "b": 110},
        xaxis={"title": "class of the anchors' pixels", "tickangle": -60},
        yaxis={"title": "class of the query pixel", "autorange": "reversed"},
    )  # fmt: skip
    return figure


def table(result: ContextResult) -> pd.DataFrame:
    """One row per class with pixels: its numbers, and the two other classes it attends to most."""
    rows = []
    for k, name in enumerate(result.classes):
        if name in result.absent:
            continue
        others = [j for j in np.argsort(-result.matrix[k], kind="stable") if j != k][:2]
        most = ", ".join(f"{result.classes[j]} {100 * result.matrix[k, j]:.0f}%" for j in others)
        rows.append([name, int(result.pixels[k]), round(100 * float(result.own_share[k]), 1),
                     round(float(result.effective_anchors[k]), 1), round(float(result.entropy[k]), 3),
                     round(100 * float(result.unassigned[k]), 1), most])  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def summary_text(result: ContextResult, about: dict) -> str:
    if about["data"] == "synthcity":
        data = f"the first {result.images} SynthCity {about['split']} images"
    else:
        data = f"the current image ({about['image']})"
    H, W = about["size"]
    labels = "ground-truth" if about["labels"] == "gt" else "predicted"
    lines = [
        f"**{result.block.upper()}** over {data}, {W}x{H} px, {labels} labels, "
        f"sampling: {about['sampling']}. "
        f"Uniform attention: log S = {result.uniform_entropy:.3f} nats, "
        f"S = {np.exp(result.uniform_entropy):.0f} effective anchors.",
    ]
    if result.absent:
        lines.append(f"No pixels (no row): {', '.join(result.absent)}.")
    if about["data"] == "synthcity":
        lines.append(f"Computed in {about['seconds']:.1f} s; kept, so a second view is instant.")
    return "\n\n".join(lines)


def context(
    store: ModelStore,
    checkpoint: str,
    data: str,
    split: str,
    count: int,
    labels: str,
    session: Session | None,
    max_side: int | None,
    progress=None,
) -> tuple[dict[str, ContextResult], dict, object]:
    """(results by kind, what was computed, the model) of the asked data."""
    if data == "image":
        session = require(session)
        return (*image_context(session, labels), session.explorer.model)
    if data != "synthcity":
        raise UserError(f"unknown data {data!r}; valid: {', '.join(DATA)}")
    try:
        blocks_of(store.model(checkpoint))  # a model without attention is refused before any image
    except ValueError as error:  # an unknown or unreadable checkpoint
        raise UserError(str(error)) from error
    results, about = split_context(store, checkpoint, split, count, labels, max_side, progress)
    return results, about, store.model(checkpoint)


def show(
    session: Session | None,
    checkpoint: str,
    data: str,
    split: str,
    count: int,
    labels: str,
    block: str,
    *,
    store: ModelStore,
    max_side: int | None = None,
    progress=gr.Progress(),  # noqa: B008 (gradio injects the tracker through this default)
):
    """The heat map, the per-class table and the summary of one block."""
    results, about, model = context(
        store, checkpoint, data, split, count, labels, session, max_side, progress
    )
    result = pick(results, model, block)
    if session is not None:  # the Export tab writes the matrix on screen too
        session.context = result
    return heatmap(result), table(result), summary_text(result, about)


def build(ctx: Context) -> Components:
    """The tab's UI and its (private) listeners; the API's /class_context (app/api.py) calls the
    same functions."""
    state, checkpoint, store, max_side = ctx.state, ctx.models["checkpoint"], ctx.store, ctx.max_side
    gr.Markdown(
        "**Where the attention lands, by class.** Row c: of all the attention that pixels of class c "
        "pay, the share that lands on anchors made of each class (an anchor's composition: the "
        "labelled pixels of its pooled region). Over SynthCity images the model runs with its trained "
        "sampling; the current image shows the attention of its segmentation."
    )
    c = {}
    with gr.Row():
        c["data"] = gr.Radio([(label, key) for key, label in DATA.items()], value="synthcity", label="data",
                             elem_id="context-data")  # fmt: skip
        c["split"] = gr.Radio(list(SPLITS), value="test", label="SynthCity split", elem_id="context-split")
        c["count"] = gr.Slider(1, 100, value=DEFAULT_COUNT, step=1, label="SynthCity images",
                               elem_id="context-count")  # fmt: skip
    with gr.Row():
        c["labels"] = gr.Radio([(label, key) for key, label in LABELS.items()], value="", label="labels",
                               elem_id="context-labels")  # fmt: skip
        c["block"] = gr.Radio([(label, key) for key, label in BLOCKS.items()], value="context", label="block",
                              elem_id="context-block")  # fmt: skip
    c["button"] = gr.Button("Compute class context", variant="primary", elem_id="context-button")
    c["summary"] = gr.Markdown(elem_id="context-summary")
    c["heatmap"] = gr.Plot(label="class-to-class attention", elem_id="context-heatmap")
    c["table"] = gr.Dataframe(headers=COLUMNS, label="per class", interactive=False, elem_id="context-table")
    run = partial(show, store=store, max_side=max_side)
    inputs = [state, checkpoint, c["data"], c["split"], c["count"], c["labels"], c["block"]]
    outputs = [c["heatmap"], c["table"], c["summary"]]
    c["button"].click(run, inputs, outputs, api_visibility="private", **MODEL_QUEUE)
    # another block of the same data comes from the kept results
    c["block"].input(run, inputs, outputs, api_visibility="private", **MODEL_QUEUE)
    return c


TAB = Tab("Class context", "context", build)

"""APNB vs NB tab (issue 19): the paper's efficiency claim (Sec. 3.2, Eq. 13; Table 1) on the
loaded weights (ann.analysis.nb_compare).

The same trained blocks run with their sampling and with every position an anchor (the NB of
Eq. 1-4; FNB for AFNB), on the current image's cached backbone stages: per block the cosine
similarity of the two context vectors O at every position, the pixels whose class changes, each
side's mIoU with a label map, GMACs and head time. Over SynthCity images: the mIoU of every Table 7
sampling against NB at inference, and how close each one's context vectors come to NB's; kept
per (checkpoint, split, count, size), so a second view is instant.
"""

import time
from functools import partial

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ann.analysis.nb_compare import NB_OF, ImageComparison, SplitComparison, compare_image, compare_split
from ann.data.labels import CITYSCAPES_CLASSES
from ann.models.sampling import TABLE7, SamplingConfig, describe
from app import plots
from app.errors import UserError
from app.session import MODEL_QUEUE, ModelStore, Session, require, returns_freed_memory
from app.tab import Components, Context, Tab
from app.tabs import SPLITS, Recent, counted, split_size, synthcity_split
from app.tabs.sampling import TABLE7_METHODS, check_fits, parse_sizes

REPEATS = 3  # head runs timed per side (median)
TRAINED = ""  # the method menu's "trained sampling"
DEFAULT_COUNT = 20  # about 20 s at the shipped model's 512x256 on this 2-core CPU (10 head runs an image)
LOWEST = 0.999  # a cosine map's colours span at least [0.999, 1]: trained blocks sit close to 1
GAP = 4  # white pixels between the blocks' maps in the API's picture
BARS = {"trained": "#0072B2", "other": "#56B4E9"}  # Okabe-Ito blues: the trained sampling darker
RESULTS = Recent()  # (sha256, split, count, size) -> (SplitComparison, seconds)


def sampled_side(session: Session, method: str, sizes: str, seed: int) -> SamplingConfig | None:
    """The sampling of the compared side: None (each block's trained one) for an empty method; a
    Table 7 method with `sizes` (empty: the trained sizes), refused when it does not fit."""
    if not method:
        if str(sizes or "").strip():
            raise UserError("sizes go with a method (e.g. pyramid_max and 1,2,3,6); no method: the trained")
        return None
    if method not in TABLE7_METHODS:
        raise UserError(f"unknown sampling method {method!r}; valid: {', '.join(TABLE7_METHODS)}")
    trained = session.explorer.model.config.sampling.sizes
    try:
        config = SamplingConfig(method, parse_sizes(sizes) if str(sizes).strip() else trained, int(seed or 0))
    except ValueError as error:
        raise UserError(str(error)) from error
    check_fits(config, session.explorer.stages[-1].shape[-2:])
    return config


@returns_freed_memory  # NB's N x N attention is the largest buffer of the head
def compare(session: Session, method: str = TRAINED, sizes: str = "", seed: int = 0) -> ImageComparison:
    """The session's image through the compared blocks, sampled and as NB (its label map, if any)."""
    config = sampled_side(session, method, sizes, seed)
    try:
        return compare_image(session.explorer, label=session.target, sampling=config, repeats=REPEATS)
    except ValueError as error:  # a model without APNB or AFNB
        raise UserError(str(error)) from error


def cosine_picture(cosine_image: np.ndarray) -> tuple[np.ndarray, float]:
    """A block's cosine map at image size in viridis from its lowest value (at most LOWEST) to 1."""
    low = min(float(cosine_image.min()), LOWEST)
    return plots.heatmap(cosine_image, "viridis", low, 1.0), low


def cosine_gallery(comparison: ImageComparison) -> list[tuple[np.ndarray, str]]:
    gallery = []
    for kind, block in comparison.blocks.items():
        picture, low = cosine_picture(block.cosine_image)
        caption = (f"cos({kind.upper()}, {NB_OF[kind].upper()}): mean {block.cosine.mean():.4f}; "
                   f"colours {low:.4f} (dark) to 1 (bright)")  # fmt: skip
        gallery.append((picture, caption))
    return gallery


def cosine_row(comparison: ImageComparison) -> np.ndarray:
    """The blocks' cosine maps side by side (the API's one picture), each on its own range."""
    pictures = [picture for picture, _ in cosine_gallery(comparison)]
    gap = np.full((pictures[0].shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([part for picture in pictures for part in (gap, picture)][1:], axis=1)


def side_table(comparison: ImageComparison) -> pd.DataFrame:
    """One row per side: each block's S and GMACs, the head time, the mIoU with a label map."""
    rows = []
    miou = comparison.miou
    for side in ("sampled", "nb"):
        kinds = "/".join(k.upper() if side == "sampled" else NB_OF[k].upper() for k in comparison.blocks)
        row = {"side": kinds + (" (every position an anchor)" if side == "nb" else "")}
        for block in comparison.blocks.values():
            S = block.sampling.num_anchors if side == "sampled" else block.cosine.size
            row[f"{block.name} S"], row[f"{block.name} GMACs"] = int(S), round(block.gmacs[side], 4)
        row["head ms"] = round(comparison.time[side]["wall_ms"], 1)
        row["head CPU ms"] = round(comparison.time[side]["cpu_ms"], 1)
        row["mIoU %"] = None if miou is None else round(100 * miou[side], 2)
        rows.append(row)
    return pd.DataFrame(rows)


def image_text(comparison: ImageComparison) -> str:
    blocks = comparison.blocks.values()
    sampled = "; ".join(f"{b.kind.upper()} {describe(b.sampling)}" for b in blocks)
    cosines = ", ".join(
        f"{b.kind.upper()} mean **{b.cosine.mean():.4f}** (min {b.cosine.min():.4f})" for b in blocks
    )
    lines = [
        f"Sampled side: {sampled}. Cosine of the context vectors O (Eq. 4, 10, 16) to NB's: {cosines}.",
        f"Class changed at **{int(comparison.changed.sum())}** of {comparison.changed.size} pixels "
        f"({100 * comparison.changed_share:.2f}%).",
    ]
    if comparison.miou is None:
        lines.append("No label map: give one on the Segment tab for each side's mIoU.")
    else:
        miou = comparison.miou
        lines.append(f"mIoU on this image: sampled {100 * miou['sampled']:.2f}, NB {100 * miou['nb']:.2f}: "
                     f"change **{100 * comparison.miou_change:+.2f}** points (NB - sampled).")  # fmt: skip
    lines.append(f"Head time: median of {REPEATS} runs, {comparison.timed_on}.")
    return "\n\n".join(lines)


def image_views(session: Session | None, method: str = TRAINED, sizes: str = "", seed: int = 0):
    """(cosine gallery, changed pixels, table of the sides, summary) of the session's image."""
    session = require(session)
    comparison = compare(session, method, sizes, seed)
    changed = plots.changed_picture(session.image, comparison.labels["sampled"], comparison.labels["nb"])
    return cosine_gallery(comparison), changed, side_table(comparison), image_text(comparison)


def cleared():
    """Empty image views: after a new image or model they describe the previous one."""
    return None, None, None, ""


@returns_freed_memory
def split_comparison(
    store: ModelStore, name: str, split: str, count: int, max_side: int | None, progress=None
) -> tuple[SplitComparison, dict]:
    """Every Table 7 sampling, the trained one and NB at inference over the first `count` images of
    a SynthCity split: (the comparison, what was computed), from RESULTS when computed before."""
    try:
        model = store.model(name)
    except ValueError as error:
        raise UserError(str(error)) from error
    if tuple(model.meta.classes) != CITYSCAPES_CLASSES:
        raise UserError("SynthCity's ground truth is in Cityscapes classes, not this model's: no mIoU")
    size = split_size(model.meta, max_side)
    key = (model.meta.sha256, split, int(count), size)
    found = RESULTS.get(key)
    if found is None:
        pairs, total = synthcity_split(model.meta, max_side, split, count)
        start = time.perf_counter()
        try:
            with store.get(name).lock:  # the model is shared: no other sampling switches meanwhile
                result = compare_split(model, counted(pairs, total, progress, "APNB vs NB"), TABLE7)
        except ValueError as error:  # a model without APNB or AFNB
            raise UserError(str(error)) from error
        found = result, time.perf_counter() - start
        RESULTS.put(key, found)
    result, seconds = found
    about = {"checkpoint": name, "data": "synthcity", "split": split, "size": list(size),
             "seconds": round(seconds, 2)}  # fmt: skip
    return result, about


def split_chart(split: SplitComparison) -> go.Figure:
    """mIoU of each sampling as a bar (the trained one darker), NB at inference as a dashed line;
    above each bar its mean cosine to NB's context vectors, per block."""
    rows = split.rows[:-1]
    names = [describe(row.sampling) + (" [trained]" if row.trained else "") for row in rows]
    cosines = ["<br>".join(f"{kind} {value:.3f}" for kind, value in row.cosine.items()) for row in rows]
    figure = go.Figure(
        go.Bar(
            x=names,
            y=[100 * row.miou for row in rows],
            marker_color=[BARS["trained" if row.trained else "other"] for row in rows],
            text=cosines,
            textposition="outside",
            customdata=[100 * row.changed_share for row in rows],
            hovertemplate="%{x}<br>mIoU %{y:.2f}<br>mean cosine to NB:<br>%{text}<br>"
            "class differs from NB's at %{customdata:.2f}% of pixels<extra></extra>",
        )
    )
    nb = 100 * split.nb.miou
    figure.add_hline(y=nb, line_dash="dash", annotation_text=f"NB at inference: {nb:.2f}")
    title = f"{split.images} images; above each bar: mean cosine of O to NB's"
    figure.update_layout(
        title={"text": title, "font": {"size": 13}},
        yaxis_title="mIoU (%)", height=460, margin={"l": 50, "r": 10, "t": 40, "b": 140},
    )  # fmt: skip
    return figure


def split_table(split: SplitComparison) -> pd.DataFrame:
    rows = []
    for row in split.rows:
        name = (
            "NB at inference (every position)"
            if row.sampling.method == "identity"
            else describe(row.sampling)
        )
        cells = {"sampling": name + (" [trained]" if row.trained else ""), "mIoU %": round(100 * row.miou, 2)}
        cells.update({f"cos {kind.upper()}": round(value, 4) for kind, value in row.cosine.items()})
        rows.append({**cells, "class differs from NB %": round(100 * row.changed_share, 2)})
    return pd.DataFrame(rows)


def split_text(split: SplitComparison, about: dict) -> str:
    H, W = about["size"]
    text = (f"The first {split.images} SynthCity {about['split']} images at {W}x{H} px, computed in "
            f"{about['seconds']:.1f} s (kept: a second view is instant). NB's mIoU: "
            f"**{100 * split.nb.miou:.2f}**.")  # fmt: skip
    skipped = [f"{name}: {why}" for name, why in split.skipped.items()]
    return text + ("\n\nSkipped (does not fit the feature map): " + "; ".join(skipped) if skipped else "")


def split_views(
    checkpoint: str,
    split: str,
    count: int,
    *,
    store: ModelStore,
    max_side: int | None = None,
    progress=gr.Progress(),  # noqa: B008 (gradio injects the tracker through this default)
):
    """(mIoU chart, table, summary) of the split comparison."""
    result, about = split_comparison(store, checkpoint, split, count, max_side, progress)
    return split_chart(result), split_table(result), split_text(result, about)


def build(ctx: Context) -> Components:
    """The tab's UI and its (private) listeners; the API's /nb_compare and /nb_compare_split
    (app/api.py) call the same functions."""
    state, checkpoint, store, max_side = ctx.state, ctx.models["checkpoint"], ctx.store, ctx.max_side
    gr.Markdown(
        "**APNB against NB on the same weights.** The trained blocks run with their sampled anchors and "
        "with every position an anchor (NB, Eq. 1-4; FNB for AFNB) on the current image's cached "
        "backbone stages. Cosine maps: bright = the same context vector as NB's."
    )
    c = {}
    with gr.Row():
        c["method"] = gr.Dropdown([("trained sampling", TRAINED), *((m, m) for m in TABLE7_METHODS)],
                                  value=TRAINED, label="sampled side", elem_id="nb-method")  # fmt: skip
        c["sizes"] = gr.Textbox("", label="sizes (empty: the trained ones)", elem_id="nb-sizes")
        c["seed"] = gr.Number(0, label="seed (random methods)", precision=0, elem_id="nb-seed")
    c["button"] = gr.Button("Compare with NB on the current image", variant="primary", elem_id="nb-button")
    c["summary"] = gr.Markdown(elem_id="nb-summary")
    with gr.Row():
        c["cosine"] = gr.Gallery(label="cosine similarity of O to NB's, per block", columns=2, height="auto",
                                 format="png", object_fit="contain", elem_id="nb-cosine")  # fmt: skip
        c["changed"] = gr.Image(label="pixels whose class differs from NB's (yellow)", interactive=False,
                                format="png", elem_id="nb-changed")  # fmt: skip
    headers = ["side", "fusion S", "fusion GMACs", "context S", "context GMACs", "head ms", "head CPU ms",
               "mIoU %"]  # fmt: skip
    c["table"] = gr.Dataframe(headers=headers, label="each side", interactive=False, elem_id="nb-table")
    inputs = [state, c["method"], c["sizes"], c["seed"]]
    outputs = [c["cosine"], c["changed"], c["table"], c["summary"]]
    c["button"].click(image_views, inputs, outputs, api_visibility="private", **MODEL_QUEUE)
    gr.Markdown("### Over SynthCity images: every Table 7 sampling against NB at inference")
    with gr.Row():
        c["split"] = gr.Radio(list(SPLITS), value="test", label="SynthCity split", elem_id="nb-split")
        c["count"] = gr.Slider(1, 100, value=DEFAULT_COUNT, step=1, label="images", elem_id="nb-count")
    c["split_button"] = gr.Button("Compare over the split", elem_id="nb-split-button")
    c["split_summary"] = gr.Markdown(elem_id="nb-split-summary")
    c["chart"] = gr.Plot(label="mIoU per sampling", elem_id="nb-chart")
    headers = ["sampling", "mIoU %", "cos AFNB", "cos APNB", "class differs from NB %"]  # the full ANN's
    c["split_table"] = gr.Dataframe(headers=headers, label="per sampling", interactive=False,
                                    elem_id="nb-split-table")  # fmt: skip
    c["split_button"].click(
        partial(split_views, store=store, max_side=max_side),
        [checkpoint, c["split"], c["count"]],
        [c["chart"], c["split_table"], c["split_summary"]],
        api_visibility="private",
        **MODEL_QUEUE,
    )
    return c


def new_image(tab: Components):
    return lambda session: cleared(), [tab[k] for k in ("cosine", "changed", "table", "summary")]


TAB = Tab("APNB vs NB", "nb", build, new_image=new_image)

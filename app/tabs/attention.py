"""Attention tab: a pixel's weights over the S anchors, and the reverse view of one anchor.

Everything shown comes from the attention recorded in the forward pass that produced the current
segmentation (Explorer.result); no model work happens here, so a click costs only drawing.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from ann.analysis.explore import anchor_at, attention_entropy
from app import plots
from app.errors import UserError
from app.session import Session, require
from app.tab import CLICK, Components, Context, Tab

BLOCK_LABELS = {
    "apnb": "APNB (context: Stage5 features over their own pyramid anchors)",
    "afnb": "AFNB (fusion: Stage5 queries over Stage4 anchors)",
    "nb": "NB (context, every position is an anchor)",
    "fnb": "FNB (fusion, every position is an anchor)",
}


def block_choices(config) -> list[tuple[str, str]]:
    """(label, key) of the attention blocks a network has: context (APNB/NB) first, then fusion."""
    kinds = [config.context, config.fusion]
    return [(BLOCK_LABELS[kind], kind) for kind in kinds if kind in BLOCK_LABELS]


def block_update(config):
    choices = block_choices(config)
    return gr.update(choices=choices, value=choices[0][1] if choices else None)


def block_choice(session: Session, block: str | None) -> str:
    """The recorded block named by `block` (a key or a label); the first recorded one if empty."""
    recorded = session.explorer.blocks()
    if not recorded:
        raise UserError("This model has no attention block (baseline or common-fusion variant).")
    for key in recorded:
        if block in (key, BLOCK_LABELS.get(key)):
            return key
    if block:
        raise UserError(f"No {block!r} attention in this model; it has {', '.join(recorded)}.")
    return recorded[0]


def attention(session: Session | None, x: float, y: float, block: str):
    """Panels per pyramid level, sorted weight chart, entropy, and the anchor choices of pixel (x, y)."""
    session = require(session)
    if x is None or y is None:
        raise UserError("Give x and y (pixels) or click the image.")
    key = block_choice(session, block)
    try:
        weights, geometry = session.explorer.attention_at(float(x), float(y), key)
        row, col = session.explorer.feature_cell(float(x), float(y), key)
    except ValueError as error:
        raise UserError(str(error)) from error
    panels, layout = plots.level_panels(session.image, weights, geometry, (float(x), float(y)))
    entropy, effective = attention_entropy(weights)
    S = len(weights)
    top = int(np.argmax(weights))
    session.selection = {"x": float(x), "y": float(y), "block": key, "layout": layout, "anchor": top}
    summary = (
        f"**{key.upper()}**, pixel (x={x:.0f}, y={y:.0f}) = feature cell (row {row}, col {col}) of "
        f"{geometry.feature_hw[0]}x{geometry.feature_hw[1]}. S = {S} anchors; entropy "
        f"**{entropy:.3f}** nats (uniform: {np.log(S):.3f}); effective number of anchors "
        f"exp(entropy) = **{effective:.1f}** of {S}. Strongest: {plots.anchor_label(geometry, top)} "
        f"({weights[top]:.4f})."
    )
    choices = [
        (f"{plots.anchor_label(geometry, int(i))}: {weights[i]:.4f}", int(i)) for i in np.argsort(-weights)
    ]
    chart = plots.weights_chart(weights, geometry, top)
    return session, panels, chart, summary, gr.update(choices=choices, value=top)


def refresh(session: Session | None, block: str | None = None):
    """The last clicked pixel again: after the sampling (and so the anchors) changed, or seen
    through the other block (AFNB <-> APNB) when `block` is given."""
    if session is None or session.result is None or "x" not in session.selection:
        return session, *([gr.skip()] * 4)
    selection = session.selection
    return attention(session, selection["x"], selection["y"], block or selection["block"])


def cleared(session: Session | None = None):
    """Empty views of the last image: after a new image or model they describe something else.
    (panels, chart, summary, anchor menu, anchor map, anchor summary, x, y)"""
    return None, None, "", gr.update(choices=[], value=None), None, "", None, None


def pick_pixel(session: Session | None, block: str, event: gr.SelectData):
    """Image click -> (x, y) and the attention there (browser only; the API uses /attention)."""
    x, y = plots.clicked_pixel(event.index, require(session).image.shape[:2])
    return x, y, *attention(session, x, y, block)


def anchor(session: Session | None, index: int, block: str):
    """Which pixels attend to anchor `index` (of the block's S anchors), over the image."""
    session = require(session)
    if index is None:
        raise UserError("Pick an anchor: from the list, the chart's rank, or a cell of a level panel.")
    try:
        index = int(index)
    except (TypeError, ValueError) as error:
        raise UserError(f"an anchor is a whole number 0..S-1, got {index!r}") from error
    key = block_choice(session, block)
    try:
        amap = session.explorer.anchor_map(index, key)
    except ValueError as error:
        raise UserError(str(error)) from error
    geometry = session.explorer.attention(key).anchors
    box = geometry.to_pixels(session.image.shape[:2])[index].numpy()
    picture = plots.anchor_picture(session.image, amap, box)
    session.selection = {**session.selection, "block": key, "anchor": index}
    summary = (
        f"**{key.upper()}** anchor {plots.anchor_label(geometry, index)} (white box): "
        f"attention every pixel pays to it, min {amap.min():.4f}, mean {amap.mean():.4f}, "
        f"max {amap.max():.4f} (viridis, scaled to this range)."
    )
    return session, picture, summary


def pick_anchor(session: Session | None, block: str, event: gr.SelectData):
    """Click in a level panel -> the anchor whose bin holds that point, and its reverse view."""
    session = require(session)
    layout = session.selection.get("layout") or []
    px, py = event.index[0], event.index[1]
    for panel in layout:
        if panel["x0"] <= px < panel["x0"] + panel["w"] and panel["y0"] <= py < panel["y0"] + panel["h"]:
            key = block_choice(session, block)
            geometry = session.explorer.attention(key).anchors
            h, w = geometry.feature_hw
            fx = (px - panel["x0"]) * w / panel["w"]
            fy = (py - panel["y0"]) * h / panel["h"]
            index = anchor_at(geometry, panel["level"], fx, fy)
            return gr.update(value=index), *anchor(session, index, block)
    raise UserError("Click inside one of the level panels.")


def build(ctx: Context) -> Components:
    c = {}
    gr.Markdown(
        "Click a pixel: its attention over the S anchors of the block, drawn back on the image, "
        "one panel per pyramid level (exact adaptive-pooling bins; colours normalised per level). "
        "Click a cell of a panel, or pick an anchor below, for the reverse view."
    )
    with gr.Row():
        c["image"] = gr.Image(
            label="click a pixel",
            interactive=False,
            format="jpeg",
            elem_id="attention-image",
            buttons=[],  # gradio's corner buttons would cover pixels of the image that must be clickable
        )
        with gr.Column():
            choices = block_choices(ctx.store.model(ctx.checkpoint).config)
            c["block"] = gr.Radio(
                choices,
                value=choices[0][1] if choices else None,
                label="block",
                elem_id="attention-block",
            )
            with gr.Row():
                c["x"] = gr.Number(label="x (pixels, to the right)", precision=0, elem_id="attention-x")
                c["y"] = gr.Number(label="y (pixels, down)", precision=0, elem_id="attention-y")
            c["button"] = gr.Button("Show attention at (x, y)", elem_id="attention-button")
            c["summary"] = gr.Markdown(elem_id="attention-summary")
    c["panels"] = plots.shown_image("attention per pyramid level (click a cell)", "attention-panels")
    c["chart"] = gr.Plot(label="sorted weights", elem_id="attention-chart")
    with gr.Row():
        c["anchor"] = gr.Dropdown(
            [], label="anchor (sorted by weight)", elem_id="anchor-choice", scale=3, allow_custom_value=True
        )
        c["anchor_button"] = gr.Button("Show who attends to it", elem_id="anchor-button", scale=1)
    c["anchor_summary"] = gr.Markdown(elem_id="anchor-summary")
    c["anchor_map"] = plots.shown_image("pixels attending to the anchor", "anchor-map")
    return c


def wire(ctx: Context, shared: dict[str, Components]) -> None:
    att, state = shared["attention"], ctx.state
    outputs = attention_outputs(state, att)
    pixel_inputs = [state, att["x"], att["y"], att["block"]]
    att["button"].click(attention, pixel_inputs, outputs, api_visibility="private", **CLICK)
    pixel_outputs = [att["x"], att["y"], *outputs]
    att["image"].select(pick_pixel, [state, att["block"]], pixel_outputs, api_visibility="private", **CLICK)
    att["block"].input(refresh, [state, att["block"]], outputs, api_visibility="private", **CLICK).then(
        *anchor_view_cleared(att), api_visibility="private"
    )  # the same pixel, the other block
    anchor_inputs = [state, att["anchor"], att["block"]]
    anchor_outputs = [state, att["anchor_map"], att["anchor_summary"]]
    att["anchor_button"].click(anchor, anchor_inputs, anchor_outputs, api_visibility="private", **CLICK)
    # picking from the list shows it at once; a typed number waits for the button (not both)
    att["anchor"].select(anchor, anchor_inputs, anchor_outputs, api_visibility="private", **CLICK)
    picked = [att["anchor"], *anchor_outputs]
    att["panels"].select(pick_anchor, [state, att["block"]], picked, api_visibility="private", **CLICK)


def anchor_view_cleared(att: Components) -> tuple:
    """(fn, inputs, outputs) emptying the reverse (anchor) view, once its anchors have changed."""
    return (lambda: (None, ""), None, [att["anchor_map"], att["anchor_summary"]])


def attention_outputs(state, att: Components) -> list:
    return [state, att["panels"], att["chart"], att["summary"], att["anchor"]]


def new_image(att: Components):
    views = ["panels", "chart", "summary", "anchor", "anchor_map", "anchor_summary", "x", "y"]
    return cleared, [att[k] for k in views]


TAB = Tab("Attention", "attention", build, wire, new_image=new_image)

"""Export handler: the overlay and panels as PNG, the label map as lossless PNG, the attention as
.npz and the settings (checkpoint sha256, sampling, coordinates) as JSON; the attention panels, the
sorted-weights chart and the Class context tab's matrix also as SVG (matplotlib, text kept as text)
and as standalone HTML (the plotly figures the page shows, plotly.js embedded: no network needed
to open them)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from ann.analysis import attention_plots
from ann.analysis.context_plots import plot_matrix
from ann.analysis.panels import level_pictures
from app import plots
from app.files import KEPT_EXPORTS, fresh_folder
from app.session import Session, require
from app.tab import Components, Context, Tab
from app.tabs.attention import block_choice
from app.tabs.segment import view


def export(session: Session | None, opacity: float, outline: bool, hidden: list[str]) -> list[str]:
    """Files of the current view, written to a fresh temporary folder."""
    session = require(session)
    folder = fresh_folder("export", keep=KEPT_EXPORTS)
    result = session.result
    files = []

    def save_png(name: str, array: np.ndarray) -> None:
        Image.fromarray(array).save(folder / name, format="PNG")  # lossless
        files.append(str(folder / name))

    save_png("overlay.png", plots.render(session, opacity, outline, hidden)[0])
    save_png("labels.png", result.labels.astype(np.uint8))  # class ids; 255 would be ignore
    save_png("confidence.png", plots.heatmap(result.confidence, "cividis", 0.0, 1.0))
    selection = session.selection
    if "x" in selection:
        key = block_choice(session, selection["block"])
        weights, geometry = session.explorer.attention_at(selection["x"], selection["y"], key)
        point = (selection["x"], selection["y"])
        save_png("panels.png", plots.level_panels(session.image, weights, geometry, point)[0])
        pictures = level_pictures(session.image, weights, geometry, point)
        files += attention_figures(folder, pictures, weights, geometry)
    if "anchor" in selection:
        key = block_choice(session, selection["block"])
        amap = session.explorer.anchor_map(selection["anchor"], key)
        box = session.explorer.attention(key).anchors.to_pixels(session.image.shape[:2])[selection["anchor"]]
        save_png("anchor.png", plots.anchor_picture(session.image, amap, box.numpy()))
    if session.context is not None:
        files += context_figures(folder, session.context)
    np.savez_compressed(folder / "attention.npz", **attention_arrays(session))
    files.append(str(folder / "attention.npz"))
    (folder / "settings.json").write_text(json.dumps(settings(session, opacity, outline, hidden), indent=2))
    files.append(str(folder / "settings.json"))
    return files


def attention_figures(folder: Path, pictures: list, weights: np.ndarray, geometry) -> list[str]:
    """panels.svg, chart.svg and chart.html of one pixel's attention (the strongest anchor outlined,
    as on the page)."""
    top = int(np.argmax(weights))
    attention_plots.plot_panels(pictures, folder / "panels.svg")
    attention_plots.plot_weights(weights, geometry, folder / "chart.svg", selected=top)
    write_html(plots.weights_chart(weights, geometry, top), folder / "chart.html")
    return [str(folder / name) for name in ("panels.svg", "chart.svg", "chart.html")]


def context_figures(folder: Path, result) -> list[str]:
    """context.svg and context.html: the class-to-class matrix the Class context tab shows."""
    from app.tabs.class_context import heatmap

    with attention_plots.svg_options():
        plot_matrix([result], folder / "context.svg")
    write_html(heatmap(result), folder / "context.html")
    return [str(folder / "context.svg"), str(folder / "context.html")]


def write_html(figure, path: Path) -> None:
    # plotly.js inside the file (~4.7 MB): it opens offline, and years later, as it did here
    path.write_text(figure.to_html(include_plotlyjs=True, full_html=True), encoding="utf-8")


def attention_arrays(session: Session) -> dict[str, np.ndarray]:
    """Full attention of every recorded block, (N, S), with anchor geometry, plus the selection."""
    arrays = {}
    for key in session.explorer.blocks():
        attention = session.explorer.attention(key)
        arrays[f"{key}_weights"] = attention.weights[0].float().numpy()  # (N, S)
        arrays[f"{key}_query_hw"] = np.array(attention.query_hw)
        arrays[f"{key}_anchor_level"] = attention.anchors.level.numpy()
        arrays[f"{key}_anchor_boxes"] = attention.anchors.boxes.numpy()  # y0 x0 y1 x1, feature cells
        arrays[f"{key}_anchor_boxes_pixels"] = attention.anchors.to_pixels(session.image.shape[:2]).numpy()
    selection = session.selection
    if "x" in selection:
        weights, _ = session.explorer.attention_at(selection["x"], selection["y"], selection["block"])
        arrays["selected_weights"] = weights
        arrays["selected_xy"] = np.array([selection["x"], selection["y"]])
    return arrays


def settings(session: Session, opacity: float, outline: bool, hidden: list[str]) -> dict:
    explorer = session.explorer
    selection = {k: v for k, v in session.selection.items() if k != "layout"}
    return {
        "checkpoint": session.checkpoint,
        "checkpoint_sha256": explorer.meta.sha256,
        "image": session.image_name,
        "image_size_wh": [int(session.image.shape[1]), int(session.image.shape[0])],
        "sampling": {name: asdict(config) for name, config in explorer.sampling.items()},
        "training_sampling": {name: asdict(config) for name, config in explorer.training_sampling().items()},
        "differs_from_training": explorer.differences(),
        "selection": selection,
        "view": {"opacity": opacity, "outline": outline, "hidden_classes": list(hidden or [])},
    }


def build(ctx: Context) -> Components:
    return {
        "button": gr.Button("Export current view", elem_id="export-button"),
        "files": gr.File(label="files", file_count="multiple", elem_id="export-files"),
    }


def wire(ctx: Context, shared: dict[str, Components]) -> None:
    """The view on screen: the Segment tab's display controls decide the overlay."""
    tab = shared["export"]
    tab["button"].click(export, [ctx.state, *view(shared["segment"])], tab["files"], api_visibility="private")


TAB = Tab("Export", "export", build, wire)

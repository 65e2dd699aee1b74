"""The app's Blocks, built in one function. The browser's listeners keep their session in a
gr.State; the programmatic API (app/api.py: segment, attention, anchor, sampling, export, models,
class context, APNB vs NB) is a set of stateless `gr.api` endpoints that call the same handlers,
so the browser-only listeners of those actions are private. The older tabs' own listeners (stage
features, explain, efficiency) stay named endpoints: for a client without a browser session they
use its latest API result (app.session.current). docs/app.md lists the API."""

from __future__ import annotations

from functools import partial

import gradio as gr

from app import attention, export, links, sampling, segment
from app.api import Api
from app.files import GRADIO_CACHE
from app.images import EXAMPLES, UploadedImage, examples
from app.session import MODEL_QUEUE, STATE_TTL_S, ModelStore, Session
from app.tabs.class_context import class_context_tab
from app.tabs.efficiency import efficiency_tab
from app.tabs.explain import explain_tab
from app.tabs.explain import show_image as explain_image
from app.tabs.features import cleared as features_cleared
from app.tabs.features import features_tab
from app.tabs.nb_compare import cleared as nb_cleared
from app.tabs.nb_compare import nb_compare_tab

CLICK = {"trigger_mode": "always_last"}
# display images as JPEG: PNG encoding of an 800x500 panel costs 50-250 ms on this CPU, JPEG 3 ms;
# the exported label map stays lossless PNG (export.py)


def launch_options(host: str = "127.0.0.1", port: int = 7860, mcp: bool = False) -> dict:
    """demo.launch arguments: loopback by default, no share link, serve only app/examples; with
    `mcp`, Gradio's MCP server at /gradio_api/mcp/ too (the public endpoints as tools)."""
    return {
        "server_name": host,
        "server_port": port,
        "share": False,
        "allowed_paths": [str(EXAMPLES.resolve())],
        "max_file_size": "400mb",  # the authors' Cityscapes ResNet-101 .pth is 272 MB (fp32)
        "footer_links": ["api"],
        "mcp_server": mcp,
    }


def warm_up(store: ModelStore, name: str) -> None:
    """First-call costs (model load, oneDNN kernels, plotly validators) paid before the first user."""
    import numpy as np

    from app import plots

    explorer = store.get(name)
    explorer.run(np.zeros((64, 96, 3), np.uint8))
    if explorer.blocks():
        weights, geometry = explorer.attention_at(10, 10, explorer.blocks()[-1])
        plots.weights_chart(weights, geometry).to_json()


def release(session: Session | None) -> None:
    """gr.State delete_callback: drop the cached stages and maps at once."""
    if session is not None:
        session.explorer.stages = None
        session.explorer.result = None


def build_demo(
    store: ModelStore, default_checkpoint: str | None = None, max_side: int | None = None
) -> gr.Blocks:
    """The app. `max_side` fixes the processing size (--max-side); None: each model's training scale."""
    default_checkpoint = default_checkpoint or store.default()
    with gr.Blocks(title="ANN explorer", analytics_enabled=False, delete_cache=GRADIO_CACHE) as demo:
        state = gr.State(None, time_to_live=STATE_TTL_S, delete_callback=release)
        gr.Markdown(
            "# Asymmetric Non-local Neural Networks: explorer\n"
            "Segment an image, click a pixel to see its APNB/AFNB attention, switch the sampling."
        )
        meta = store.model(default_checkpoint).meta
        size = gr.Markdown(segment.size_text(meta, max_side), elem_id="processing-size")
        models = {**model_row(store, default_checkpoint, max_side), "size": size}
        share = links.share_row()
        with gr.Tabs(elem_id="tabs") as tabs:
            with gr.Tab("Segment", id="segment", elem_id="tab-segment"):
                seg = segment_tab(meta.classes)
            with gr.Tab("Attention", id="attention", elem_id="tab-attention"):
                att = attention_tab(store.model(default_checkpoint).config)
            with gr.Tab("Sampling", id="sampling", elem_id="tab-sampling"):
                smp = sampling_tab()
            with gr.Tab("Stage features", id="features", elem_id="tab-features"):
                feat = features_tab(state, store)
            with gr.Tab("Explain", id="explain", elem_id="tab-explain") as explain:
                explain_inputs, shown = explain_tab(state, store)
            # opening the tab shows the session's segmented image: no extra button press
            explain.select(explain_image, explain_inputs, shown, api_visibility="private", queue=False)
            with gr.Tab("Efficiency", id="efficiency", elem_id="tab-efficiency"):
                efficiency_tab()
            with gr.Tab("Class context", id="context", elem_id="tab-context"):
                class_context_tab(state, models["checkpoint"], store, max_side)
            with gr.Tab("APNB vs NB", id="nb", elem_id="tab-nb"):
                nb = nb_compare_tab(state, models["checkpoint"], store, max_side)
            with gr.Tab("Export", id="export", elem_id="tab-export"):
                export_button = gr.Button("Export current view", elem_id="export-button")
                export_files = gr.File(label="files", file_count="multiple", elem_id="export-files")
        Api(store, default_checkpoint, max_side).register()  # first: the private listeners take other names
        wire(store, max_side, state, models, seg, att, smp, feat, nb, export_button, export_files)
        links.wire(demo, store, max_side, state, tabs, share, models, seg, att, smp)
    return demo


def model_row(store: ModelStore, default_checkpoint: str, max_side: int | None) -> dict:
    checkpoint = gr.Dropdown(
        store.names(), value=default_checkpoint, label="checkpoint", elem_id="checkpoint"
    )
    with gr.Accordion("Model card; load another checkpoint file", open=False, elem_id="model-card-accordion"):
        card = gr.Markdown(segment.model_card(store, default_checkpoint, max_side), elem_id="model-card")
        upload = gr.File(
            label="load a checkpoint file (.safetensors, or the authors' .pth)",
            file_types=[".safetensors", ".pth", ".pt"],
            type="filepath",
            height=120,
            elem_id="checkpoint-file",
        )
    return {"checkpoint": checkpoint, "upload": upload, "card": card}


def segment_tab(classes: list[str]) -> dict:
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
            c["overlay"] = gr.Image(label="segmentation", interactive=False, format="jpeg", elem_id="overlay")
            with gr.Row():
                c["opacity"] = gr.Slider(0, 1, value=0.55, step=0.05, label="opacity", elem_id="opacity")
                c["outline"] = gr.Checkbox(False, label="outline mode", elem_id="outline")
            c["legend"] = gr.HTML(elem_id="legend")
            c["hidden"] = gr.CheckboxGroup(list(classes), label="hide classes", elem_id="hidden-classes")
    c["summary"] = gr.Markdown(elem_id="segment-summary")
    with gr.Row():
        c["confidence"] = gr.Image(
            label="confidence (max softmax, cividis 0..1)",
            interactive=False,
            format="jpeg",
            elem_id="confidence-map",
        )
        c["entropy"] = gr.Image(
            label="entropy (magma, 0..log K nats)", interactive=False, format="jpeg", elem_id="entropy-map"
        )
        c["errors"] = gr.Image(
            label="errors vs ground truth (vermillion; black = ignore)",
            interactive=False,
            format="jpeg",
            elem_id="error-map",
        )
    c["iou"] = gr.Dataframe(
        headers=["class", "IoU %"],
        label="per-class IoU (needs a ground-truth label map)",
        interactive=False,
        elem_id="iou-table",
    )
    return c


def attention_tab(config) -> dict:
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
            choices = attention.block_choices(config)
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
    c["panels"] = gr.Image(
        label="attention per pyramid level (click a cell)",
        interactive=False,
        format="jpeg",
        elem_id="attention-panels",
    )
    c["chart"] = gr.Plot(label="sorted weights", elem_id="attention-chart")
    with gr.Row():
        c["anchor"] = gr.Dropdown(
            [], label="anchor (sorted by weight)", elem_id="anchor-choice", scale=3, allow_custom_value=True
        )
        c["anchor_button"] = gr.Button("Show who attends to it", elem_id="anchor-button", scale=1)
    c["anchor_summary"] = gr.Markdown(elem_id="anchor-summary")
    c["anchor_map"] = gr.Image(
        label="pixels attending to the anchor", interactive=False, format="jpeg", elem_id="anchor-map"
    )
    return c


def sampling_tab() -> dict:
    c = {}
    gr.Markdown(
        "Switch how AFNB and APNB sample their anchors (Table 7) on the loaded weights. Only the head "
        "is recomputed; the backbone features of the image are cached."
    )
    with gr.Row():
        c["preset"] = gr.Radio(
            list(sampling.PRESETS), value="1,3,6,8", label="pyramid sizes preset", elem_id="sampling-preset"
        )
        c["sizes"] = gr.Textbox(
            "1,3,6,8", label="sizes (one n for random/max/average)", elem_id="sampling-sizes"
        )
        c["method"] = gr.Dropdown(
            list(sampling.TABLE7_METHODS), value="pyramid_average", label="method", elem_id="sampling-method"
        )
        c["seed"] = gr.Number(0, label="seed (random methods)", precision=0, elem_id="sampling-seed")
    with gr.Row():
        c["apply"] = gr.Button("Apply sampling", variant="primary", elem_id="sampling-apply")
        c["reset"] = gr.Button("Back to training sampling", elem_id="sampling-reset")
    c["summary"] = gr.Markdown(elem_id="sampling-summary")
    with gr.Row():
        c["changed"] = gr.Image(
            label="pixels whose class changed from the previous sampling (yellow)",
            interactive=False,
            format="jpeg",
            elem_id="sampling-changed",
        )
        c["area"] = gr.Plot(label="per-class area change", elem_id="sampling-area")
    return c


def wire(store, max_side, state, models, seg, att, smp, feat, nb, export_button, export_files) -> None:
    """All listeners; model work in one concurrency group, clicks always_last."""
    view = [seg["opacity"], seg["outline"], seg["hidden"]]
    wire_segment(store, max_side, state, models, seg, att, smp, feat, nb, view)
    wire_attention(state, att)
    wire_sampling(state, seg, att, smp, view)
    export_button.click(export.export, [state, *view], export_files, api_visibility="private")


def wire_segment(store, max_side, state, models, seg, att, smp, feat, nb, view) -> None:
    seg_inputs = [state, seg["image"], seg["label"], models["checkpoint"], *view]
    seg_outputs = [state, seg["overlay"], seg["legend"], seg["confidence"], seg["entropy"], seg["errors"],
                   seg["iou"], seg["summary"], att["image"]]  # fmt: skip
    stale, trained = refreshers(state, att, smp, feat, nb)  # unqueued: they run at once, before a next click
    run_segment = partial(segment.segment, store=store, max_side=max_side)
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
    for control in view:
        control.change(
            segment.redraw, [state, *view], [seg["overlay"], seg["legend"]], api_visibility="private", **CLICK
        )
    # a new model segments the session's image again
    rerun = partial(segment.resegment, store=store, max_side=max_side)
    model_outputs = [models["card"], seg["hidden"], att["block"], models["size"]]
    models["checkpoint"].input(
        partial(segment.choose_model, store=store, max_side=max_side),
        [state, models["checkpoint"]],
        [state, *model_outputs],
        api_visibility="private",
        **MODEL_QUEUE,
    ).then(rerun, seg_inputs, seg_outputs, api_visibility="private", **seg_queue).then(
        *stale, api_visibility="private", queue=False
    ).then(*trained, api_visibility="private", queue=False)
    models["upload"].upload(
        partial(segment.upload_checkpoint, store=store, max_side=max_side),
        [state, models["upload"]],
        [state, models["checkpoint"], *model_outputs],
        api_visibility="private",
        **MODEL_QUEUE,
    ).success(rerun, seg_inputs, seg_outputs, api_visibility="private", **seg_queue).then(
        *stale, api_visibility="private", queue=False
    ).then(*trained, api_visibility="private", queue=False)


def refreshers(state, att, smp, feat, nb) -> tuple[tuple, tuple]:
    """(fn, inputs, outputs) that empty the views of the previous image or model once a new one
    is in (the stage features' clickable image becomes the new one), and that set the sampling
    controls to a new model's training sampling."""
    views = ["panels", "chart", "summary", "anchor", "anchor_map", "anchor_summary", "x", "y"]
    outputs = [att[k] for k in views] + [smp["changed"], smp["area"], smp["summary"]]
    outputs += [feat[k] for k in ("image", "first", "second", "status")]
    outputs += [nb[k] for k in ("cosine", "changed", "table", "summary")]
    stale = (
        lambda session: (*attention.cleared(), *features_cleared(session), *nb_cleared()),
        state,
        outputs,
    )
    trained = (sampling.trained_controls, state, [smp[k] for k in ("preset", "sizes", "method", "summary")])
    return stale, trained


def wire_attention(state, att) -> None:
    outputs = attention_outputs(state, att)
    pixel_inputs = [state, att["x"], att["y"], att["block"]]
    att["button"].click(attention.attention, pixel_inputs, outputs, api_visibility="private", **CLICK)
    pixel_outputs = [att["x"], att["y"], *outputs]
    att["image"].select(
        attention.pick_pixel, [state, att["block"]], pixel_outputs, api_visibility="private", **CLICK
    )
    att["block"].input(
        attention.refresh, [state, att["block"]], outputs, api_visibility="private", **CLICK
    ).then(*anchor_view_cleared(att), api_visibility="private")  # the same pixel, the other block
    anchor_inputs = [state, att["anchor"], att["block"]]
    anchor_outputs = [state, att["anchor_map"], att["anchor_summary"]]
    att["anchor_button"].click(
        attention.anchor, anchor_inputs, anchor_outputs, api_visibility="private", **CLICK
    )
    # picking from the list shows it at once; a typed number waits for the button (not both)
    att["anchor"].select(attention.anchor, anchor_inputs, anchor_outputs, api_visibility="private", **CLICK)
    picked = [att["anchor"], *anchor_outputs]
    att["panels"].select(
        attention.pick_anchor, [state, att["block"]], picked, api_visibility="private", **CLICK
    )


def anchor_view_cleared(att) -> tuple:
    """(fn, inputs, outputs) emptying the reverse (anchor) view, once its anchors have changed."""
    return (lambda: (None, ""), None, [att["anchor_map"], att["anchor_summary"]])


def attention_outputs(state, att) -> list:
    return [state, att["panels"], att["chart"], att["summary"], att["anchor"]]


def wire_sampling(state, seg, att, smp, view) -> None:
    smp["preset"].input(
        lambda preset: preset, smp["preset"], smp["sizes"], api_visibility="private", queue=False
    )
    smp["method"].input(  # single-level methods take one n: pre-fill it
        sampling.suggest_sizes,
        [smp["method"], smp["sizes"]],
        smp["sizes"],
        api_visibility="private",
        queue=False,
    )
    outputs = [
        state,
        seg["overlay"],
        seg["legend"],
        smp["changed"],
        smp["area"],
        smp["summary"],
        att["image"],
    ]
    refresh = (attention.refresh, state, attention_outputs(state, att))  # the last click, new anchors
    cleared = anchor_view_cleared(att)  # the anchor picked before may not exist any more
    smp["apply"].click(
        sampling.set_sampling,
        [state, smp["method"], smp["sizes"], smp["seed"], *view],
        outputs,
        api_visibility="private",
        **MODEL_QUEUE,
    ).success(*refresh, api_visibility="private").then(*cleared, api_visibility="private", queue=False)
    smp["reset"].click(
        sampling.reset_sampling, [state, *view], outputs, api_visibility="private", **MODEL_QUEUE
    ).success(*refresh, api_visibility="private").then(*cleared, api_visibility="private", queue=False)

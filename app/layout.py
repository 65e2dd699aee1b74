"""The app's Blocks, built in one function. The browser's listeners keep their session in a
gr.State; the programmatic API (app/api.py: segment, attention, anchor, sampling, export, models,
class context, APNB vs NB) is a set of stateless `gr.api` endpoints that call the same handlers,
so the browser-only listeners of those actions are private. The older tabs' own listeners (stage
features, explain, efficiency) stay named endpoints: for a client without a browser session they
use its latest API result (app.session.current). docs/app.md lists the API."""

from __future__ import annotations

import gradio as gr

from app import links, models
from app.api import Api
from app.files import GRADIO_CACHE
from app.images import EXAMPLES
from app.session import STATE_TTL_S, ModelStore, Session
from app.tab import Components, Context
from app.tabs import (
    attention,
    class_context,
    efficiency,
    explain,
    export,
    features,
    nb_compare,
    sampling,
    segment,
)

# the page's tabs, in order; also the order in which a new image or model refreshes their views
TABS = [tab.TAB for tab in (segment, attention, sampling, features, explain, efficiency, class_context,
                            nb_compare, export)]  # fmt: skip


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
        ctx = Context(state, store, max_side, default_checkpoint)
        meta = store.model(default_checkpoint).meta
        size = gr.Markdown(models.size_text(meta, max_side), elem_id="processing-size")
        ctx.models = {**models.build(ctx), "size": size}
        share = links.share_row()
        with gr.Tabs(elem_id="tabs") as tabs:
            shared = build_tabs(ctx)
        Api(store, default_checkpoint, max_side).register()  # first: the private listeners take other names
        ctx.new_image, ctx.new_model = refreshers(state, shared)
        for tab in TABS:
            tab.wire(ctx, shared)
        links.wire(demo, ctx, tabs, share, shared)
    return demo


def build_tabs(ctx: Context) -> dict[str, Components]:
    """Each tab inside its gr.Tab; every tab's components by tab id."""
    shared = {}
    for tab in TABS:
        with gr.Tab(tab.label, id=tab.id, elem_id=f"tab-{tab.id}") as page:
            shared[tab.id] = tab.build(ctx)
        if tab.opened is not None:
            page.select(*tab.opened(ctx, shared[tab.id]), api_visibility="private", queue=False)
    return shared


def refreshers(state, shared: dict[str, Components]) -> tuple[tuple, tuple]:
    """(fn, inputs, outputs) that empty the views of the previous image or model once a new one
    is in (the stage features' clickable image becomes the new one), and that set the controls
    of the tabs that follow the model (the sampling's) to a new model's; in TABS order."""
    return combined(state, shared, "new_image"), combined(state, shared, "new_model")


def combined(state, shared: dict[str, Components], event: str) -> tuple:
    parts = [getattr(tab, event)(shared[tab.id]) for tab in TABS if getattr(tab, event) is not None]
    outputs = [output for _, views in parts for output in views]
    return (lambda session: tuple(value for fn, _ in parts for value in fn(session)), state, outputs)

"""The one interface every app tab has (docs/architecture.md, "Where to add: an app tab").

A tab is a module in app/tabs/ that defines `TAB = Tab(...)`; app/layout.py lists the tabs in
page order, builds each inside its `gr.Tab` and wires them. The order of that list is also the
order in which the views of a new image or model are refreshed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr

from app.session import ModelStore

CLICK = {"trigger_mode": "always_last"}  # a click's views: only the last of quick clicks is drawn
Components = dict[str, gr.components.Component]
# the tabs display images as JPEG: PNG encoding of an 800x500 panel costs 50-250 ms on this CPU,
# JPEG 3 ms; the exported label map stays lossless PNG (app/tabs/export.py)
# (fn, outputs): fn(session) -> one value per output
Refresh = tuple[Callable, list]


@dataclass
class Context:
    """What a tab may read while it is built and wired."""

    state: gr.State  # the browser session's app.session.Session
    store: ModelStore
    max_side: int | None  # --max-side; None: each model's training scale
    checkpoint: str  # the model the page opens with
    models: Components = field(default_factory=dict)  # the model row (app/models.py)
    # (fn, inputs, outputs) that layout.py composes from every tab's `new_image` / `new_model`,
    # for the listeners that bring a new image or model in (the Segment tab's)
    new_image: tuple = ()
    new_model: tuple = ()


def no_listeners(ctx: Context, shared: dict[str, Components]) -> None:
    """A tab whose listeners are all registered by its `build`."""


@dataclass(frozen=True)
class Tab:
    """`build(ctx)` makes the UI inside the caller's `with gr.Tab(...)` and returns its
    components by name; it may register the listeners that read only this tab (the analysis
    tabs' named endpoints are registered there, before app/api.py's). `wire(ctx, shared)`
    registers the rest once every tab is built and the API's endpoints are named; `shared` holds
    every tab's components by tab id. `new_image(components)` / `new_model(components)`: the
    (fn, outputs) that refresh this tab when a new image / a new model is in. `opened`: the
    (fn, inputs, outputs) run when the tab is selected."""

    label: str
    id: str  # the gr.Tab id; its elem_id is tab-<id>
    build: Callable[[Context], Components]
    wire: Callable[[Context, dict[str, Components]], None] = no_listeners
    new_image: Callable[[Components], Refresh] | None = None
    new_model: Callable[[Components], Refresh] | None = None
    opened: Callable[[Context, Components], tuple] | None = None

"""Views to share and cite (issue 19 item 3): the state of a view in the page's URL query, so that
a copied link reopens the same view on the same server.

    ?checkpoint=full.safetensors&example=synthcity_000004&x=120&y=64&block=apnb
     &sampling=pyramid_average:1,4,8,12&seed=0

`example` names a bundled example (app/examples, recognised by content: Gradio hands examples over
as cached copies); an uploaded image is named by its sha256 (`image=`) and a copy of it is kept on
the server, the latest KEPT_IMAGES of them. `sampling` (method:sizes, `seed` for random methods)
is there only when it differs from the model's training sampling. Opening such a link segments
the image with that checkpoint, applies the sampling and shows the pixel's attention
(`restore`); after each change of the view the page's address is rewritten (`link` +
REPLACE_URL), so the address bar always holds the link of what is on screen.
"""

from __future__ import annotations

import shutil
import threading
from collections import OrderedDict
from functools import cache
from pathlib import Path
from urllib.parse import urlencode

import gradio as gr
import numpy as np

from ann.checkpoint import file_sha256
from app.errors import UserError
from app.files import fresh_folder
from app.images import examples
from app.models import choose_model
from app.session import ModelStore, Session
from app.tab import Components, Context
from app.tabs import attention, sampling
from app.tabs.segment import segment, segment_views

KEPT_IMAGES = 64  # uploaded images kept for links; older ones are dropped (their links say so)
KEPT_BYTES = 512 << 20
GONE = "This link's image is no longer on this server; upload it again."
# the page's address follows the view; no reload, no history entry per click
REPLACE_URL = "(query) => { if (query) { history.replaceState(null, '', query); } return query; }"
COPY_URL = "() => { navigator.clipboard.writeText(location.href); }"


class KeptImages:
    """Copies of uploaded images by sha256, the most recent `limit` (and at most `budget` bytes)."""

    def __init__(self, limit: int = KEPT_IMAGES, budget: int = KEPT_BYTES) -> None:
        self.limit, self.budget = limit, budget
        self._paths: OrderedDict[str, Path] = OrderedDict()
        self._folder: Path | None = None
        self._guard = threading.Lock()

    def keep(self, path: str | Path) -> str:
        """The sha256 of the file at `path`, a copy of which is now kept (under its own name)."""
        sha = file_sha256(path)
        with self._guard:
            if sha not in self._paths:
                self._folder = self._folder or fresh_folder("linked-images")
                copy = self._folder / sha / Path(path).name
                copy.parent.mkdir(exist_ok=True)
                shutil.copyfile(path, copy)
                self._paths[sha] = copy
            self._paths.move_to_end(sha)
            while len(self._paths) > self.limit or (len(self._paths) > 1 and self.size() > self.budget):
                _, old = self._paths.popitem(last=False)
                shutil.rmtree(old.parent, ignore_errors=True)
        return sha

    def size(self) -> int:
        return sum(path.stat().st_size for path in self._paths.values() if path.is_file())

    def get(self, sha: str) -> Path | None:
        with self._guard:
            path = self._paths.get(sha)
            return path if path is not None and path.is_file() else None


KEPT = KeptImages()


@cache
def example_files() -> dict[str, tuple[Path, Path | None]]:
    """name -> (image, ground truth or None) of the bundled examples; the name is the file's stem
    (SynthCity's without _leftImg8bit)."""
    return {
        Path(image).stem.removesuffix("_leftImg8bit"): (Path(image), Path(label) if label else None)
        for image, label in examples()[0]
    }


@cache
def example_digests() -> dict[str, str]:
    return {file_sha256(image): name for name, (image, _) in example_files().items()}


def image_query(session: Session) -> dict[str, str]:
    """`example` or `image` of the session's image; nothing for an array given through the API."""
    source = session.source
    if not isinstance(source, str | Path) or not Path(source).is_file():
        return {}
    sha = file_sha256(source)
    if sha in example_digests():
        return {"example": example_digests()[sha]}
    return {"image": KEPT.keep(source)}


def query(session: Session | None) -> dict[str, str]:
    """The link's parameters of the session's view (empty before an image is segmented)."""
    if session is None or session.result is None:
        return {}
    params = {"checkpoint": session.checkpoint, **image_query(session)}
    selection = session.selection
    if "x" in selection:
        params.update(x=f"{selection['x']:g}", y=f"{selection['y']:g}", block=selection["block"])
    explorer = session.explorer
    trained = explorer.training_sampling()
    changed = [config for name, config in explorer.sampling.items() if config != trained[name]]
    if changed:
        config = changed[0]  # the app applies one sampling to AFNB and APNB
        params["sampling"] = f"{config.method}:{','.join(map(str, config.sizes))}"
        if "random" in config.method:
            params["seed"] = str(config.seed)
    return params


def link(session: Session | None) -> str:
    """The query string of the session's view, "?..." ("" before an image is segmented)."""
    params = query(session)
    return "?" + urlencode(params, safe=",:") if params else ""


def restore(params: dict, store: ModelStore, max_side: int | None = None) -> Session | None:
    """The view a link describes: its image segmented by its checkpoint, its sampling applied, its
    pixel's attention computed. None when the link names no image (a plain visit)."""
    if not ({"example", "image"} & set(params)):
        return None
    checkpoint = params.get("checkpoint") or store.default()
    if checkpoint not in store.names():
        raise UserError(f"This link's checkpoint {checkpoint!r} is not on this server; it has "
                        f"{', '.join(store.names())}.")  # fmt: skip
    image, label = linked_image(params)
    session = segment(None, str(image), str(label) if label else None, checkpoint, store=store,
                      max_side=max_side)[0]  # fmt: skip
    if params.get("sampling"):
        method, _, sizes = params["sampling"].partition(":")
        sampling.set_sampling(session, method, sizes, number(params, "seed", 0), 0.55, False, [])
    if "x" in params or "y" in params:
        x, y = number(params, "x"), number(params, "y")
        H, W = session.image.shape[:2]
        if not (0 <= x < W and 0 <= y < H):
            raise UserError(f"This link's pixel (x={x:g}, y={y:g}) lies outside the {W}x{H} image.")
        attention.attention(session, x, y, params.get("block") or None)
    return session


def linked_image(params: dict) -> tuple[Path, Path | None]:
    if "example" in params:
        name = params["example"]
        if name not in example_files():
            raise UserError(f"This link's example {name!r} is not on this server.")
        return example_files()[name]
    path = KEPT.get(params["image"])
    if path is None:
        raise UserError(GONE)
    return path, None


def number(params: dict, key: str, default: float | None = None) -> float:
    value = params.get(key, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise UserError(f"This link's {key} must be a number, got {value!r}.") from None
    if not np.isfinite(value):
        raise UserError(f"This link's {key} must be a finite number, got {value!r}.")
    return value


# ---- the page ----------------------------------------------------------------------------------


def share_row() -> dict:
    """The link of the view on screen (also in the address bar) and a button that copies it."""
    with gr.Row():
        box = gr.Textbox(label="link to this view (the address bar holds it too)", interactive=False,
                         scale=4, elem_id="view-link")  # fmt: skip
        copy = gr.Button("Copy link", scale=1, elem_id="copy-link")
    return {"link": box, "copy": copy}


def wire(demo: gr.Blocks, ctx: Context, tabs: gr.Tabs, share: Components, shared: dict[str, Components]):
    """Every change of the view rewrites the address (the summaries change with each: a new image,
    model, pixel, block or sampling); opening a link restores its view."""
    seg, att, smp = shared["segment"], shared["attention"], shared["sampling"]
    summaries = [seg["summary"], att["summary"], smp["summary"]]
    private = {"api_visibility": "private", "queue": False}
    gr.on([summary.change for summary in summaries], link, ctx.state, share["link"], **private)
    share["link"].change(None, share["link"], None, js=REPLACE_URL, **private)
    share["copy"].click(None, None, None, js=COPY_URL, **private)
    views = [
        seg[k] for k in ("overlay", "legend", "confidence", "entropy", "errors", "iou", "summary", "hidden")
    ]
    pixel = [att[k] for k in ("panels", "chart", "summary", "anchor", "x", "y")]
    controls = [smp[k] for k in ("preset", "sizes", "method", "seed")]
    outputs = [ctx.state, tabs, share["link"], *ctx.models.values(), *views, att["image"], att["block"],
               *pixel, *controls]  # fmt: skip

    def opened(session: Session | None, request: gr.Request):
        params = dict(request.query_params) if request is not None else {}
        restored = restore(params, ctx.store, ctx.max_side)
        if restored is None:
            return {component: gr.skip() for component in outputs}
        return {ctx.state: restored, tabs: tab_of(restored), share["link"]: link(restored),
                **page(restored, ctx, shared)}  # fmt: skip

    demo.load(
        opened, ctx.state, outputs, api_visibility="private", concurrency_id="model", concurrency_limit=1
    )


def tab_of(session: Session):
    return gr.Tabs(selected="attention" if "x" in session.selection else "segment")


def page(session: Session, ctx: Context, shared: dict[str, Components]) -> dict:
    """{component: value} of a restored view: model, Segment tab, Attention tab, Sampling controls."""
    seg, att, smp, models = shared["segment"], shared["attention"], shared["sampling"], ctx.models
    _, card, classes, blocks, size = choose_model(session, session.checkpoint, store=ctx.store,
                                                  max_side=ctx.max_side)  # fmt: skip
    selection = session.selection
    out = {models["checkpoint"]: gr.update(value=session.checkpoint), models["card"]: card,
           models["size"]: size, seg["hidden"]: classes}  # fmt: skip
    if "upload" in models:
        out[models["upload"]] = gr.skip()
    names = ("overlay", "legend", "confidence", "entropy", "errors", "iou", "summary")
    *shown, clickable = segment_views(session, 0.55, False, [])
    out.update({seg[k]: v for k, v in zip(names, shown, strict=True)})
    out[att["image"]] = clickable
    out[att["block"]] = {**blocks, "value": selection.get("block", blocks.get("value"))}
    if "x" in selection:
        views = attention.refresh(session)[1:]  # panels, chart, summary, anchor menu
        out.update(zip([att[k] for k in ("panels", "chart", "summary", "anchor")], views, strict=True))
        out[att["x"]], out[att["y"]] = selection["x"], selection["y"]
    else:
        out.update({att[k]: gr.skip() for k in ("panels", "chart", "summary", "anchor", "x", "y")})
    config = next(iter(session.explorer.sampling.values()), None)
    if config is None or not sampling.switchable(session):
        out.update({smp[k]: gr.skip() for k in ("preset", "sizes", "method", "seed")})
    else:
        sizes = ",".join(map(str, config.sizes))
        out.update({smp["preset"]: sizes if sizes in sampling.PRESETS else None, smp["sizes"]: sizes,
                    smp["method"]: config.method, smp["seed"]: config.seed})  # fmt: skip
    return out

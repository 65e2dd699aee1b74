"""The programmatic API: the app's actions as typed functions with defaults, registered with
`gr.api`, so that gradio_client, the "Use via API" page and the MCP server (`python app.py
--mcp`, Gradio's own, which makes every public endpoint a tool) describe them alike.

An API call carries no browser session, so results are named: `segment` returns a handle in its
summary, and `attention`, `anchor`, `set_sampling`, `reset_sampling`, `export` and `nb_compare`
take it (`class_context` too, for one image). An empty handle means the calling client's latest
result (gradio_client keeps one session per Client); an MCP call has no session, so tools pass the
handle. Results live in `app.session.RESULTS`, the least recently used dropped beyond its memory
budget. Every function calls the handler the browser calls (app/models.py, app/tabs/segment.py, attention.py,
sampling.py, export.py; app/tabs/class_context.py and nb_compare.py); pictures come back as PNG
files, summaries as JSON objects.
"""

# no `from __future__ import annotations`: gr.api reads the return types from the signature as types
import shutil

import gradio as gr
import numpy as np
from gradio import FileData
from PIL import Image

from app import models, plots
from app.errors import UserError
from app.files import fresh_folder
from app.session import RESULTS, ModelStore, Results, Session
from app.summaries import attention_summary, sampling_summary, segment_summary
from app.tabs import attention as attention_views
from app.tabs import class_context as context_tab
from app.tabs import export as export_files
from app.tabs import nb_compare as nb_tab
from app.tabs import sampling, segment


class Api:
    """The endpoints, bound to the app's models, default checkpoint and processing size."""

    def __init__(
        self, store: ModelStore, default: str, max_side: int | None = None, results: Results = RESULTS
    ) -> None:
        self.store, self.default, self.max_side, self.results = store, default, max_side, results
        self.folder = fresh_folder("api")  # pictures, one folder per handle

    def register(self) -> None:
        """gr.api endpoints, inside the caller's `with gr.Blocks()`.

        Unqueued: gradio's MCP server (6.31) returns a queued tool's several outputs as one text
        (the repr of the tuple), an unqueued one's as an image and a text each. Model work stays
        one at a time per model: every Explorer takes its model's lock.
        """
        for fn in (self.segment, self.attention, self.anchor, self.set_sampling, self.reset_sampling,
                   self.export, self.model_card, self.upload_checkpoint, self.checkpoints,
                   self.class_context, self.nb_compare, self.nb_compare_split):  # fmt: skip
            gr.api(fn, api_name=fn.__name__, queue=False)

    def segment(
        self,
        image: FileData,
        label_map: FileData | None = None,
        checkpoint: str = "",
        opacity: float = 0.55,
        outline: bool = False,
        hidden: list[str] | None = None,
        request: gr.Request = None,
    ) -> tuple[FileData, dict]:
        """Segment an image: the class overlay and a summary with the handle of the result.

        Args:
            image: the image (PNG, JPEG, WebP, ...); read at the model's processing size (its training scale)
            label_map: optional ground truth, a PNG of class ids (255 = ignore), same aspect ratio: adds IoU
            checkpoint: a name from /checkpoints; empty: the app's default model
            opacity: of the class colours over the image, 0..1
            outline: draw only the borders between classes
            hidden: class names left out of the overlay
        Returns:
            overlay: PNG of the class colours over the processed image
            summary: handle (for the other endpoints), checkpoint, size, class shares, IoU, text
        """
        session, text = self.new_result(image, label_map, checkpoint, request)
        overlay = plots.render(session, opacity, outline, hidden)[0]
        return self.picture(session, "overlay", overlay), {**segment_summary(session), "text": text}

    def attention(
        self,
        x: float,
        y: float,
        block: str = "",
        handle: str = "",
        image: FileData | None = None,
        checkpoint: str = "",
        request: gr.Request = None,
    ) -> tuple[FileData, dict]:
        """Where pixel (x, y) attends: its weights over the anchors of APNB (or AFNB), per pyramid level.

        Args:
            x: pixel column in the processed image (0 = left; /segment's summary gives the size)
            y: pixel row (0 = top)
            block: apnb (context, over its own pyramid) or afnb (fusion, over Stage4); empty: the context one
            handle: a result of /segment; empty: your latest (or `image`)
            image: instead of a handle, an image to segment first, with `checkpoint`
            checkpoint: for `image`: a name from /checkpoints; empty: the app's default model
        Returns:
            panels: PNG, per pyramid level each anchor's pooling bin coloured by its weight
            summary: handle, block, feature cell, S, entropy, effective anchors, strongest anchors, levels
        """
        if image is not None:
            session = self.new_result(image, None, checkpoint, request)[0]
        else:
            session = self.results.get(handle, client(request))
        key = block or context_block(session)
        _, panels, _, text, _ = attention_views.attention(session, x, y, key)
        return self.picture(session, "panels", panels), attention_summary(session, text)

    def anchor(
        self, anchor: int, block: str = "", handle: str = "", request: gr.Request = None
    ) -> tuple[FileData, dict]:
        """The reverse view: how much every pixel attends to one anchor.

        Args:
            anchor: anchor index 0..S-1 (/attention's summary names the strongest)
            block: apnb or afnb; empty: the context block
            handle: a result of /segment; empty: your latest
        Returns:
            map: PNG of the attention paid to the anchor over the image, its pooling bin outlined
            summary: handle, block, anchor and the map's min, mean and max
        """
        session = self.results.get(handle, client(request))
        key = block or context_block(session)
        _, picture, text = attention_views.anchor(session, anchor, key)
        amap = session.explorer.anchor_map(int(anchor), session.selection["block"])
        summary = {"handle": session.handle, "block": session.selection["block"], "anchor": int(anchor),
                   "min": float(amap.min()), "mean": float(amap.mean()), "max": float(amap.max()),
                   "text": text}  # fmt: skip
        return self.picture(session, "anchor", picture), summary

    def set_sampling(
        self,
        method: str,
        sizes: str,
        seed: int = 0,
        handle: str = "",
        opacity: float = 0.55,
        outline: bool = False,
        hidden: list[str] | None = None,
        request: gr.Request = None,
    ) -> tuple[FileData, dict]:
        """Sample the anchors of AFNB and APNB another way (paper Table 7), on the loaded weights: only
        the head is recomputed.

        Args:
            method: pyramid_average, pyramid_max, pyramid_random, average, max or random
            sizes: pyramid sizes, e.g. "1,3,6,8" (S = 110); one n for average, max and random
            seed: of the random methods
            handle: a result of /segment; empty: your latest
            opacity: of the class colours over the image, 0..1
            outline: draw only the borders between classes
            hidden: class names left out of the overlay
        Returns:
            overlay: PNG of the new segmentation
            summary: handle, share of pixels that changed class, sampling and GMACs per block, differences
        """
        session = self.results.get(handle, client(request))
        before = session.result.labels
        _, picture, *_ = sampling.set_sampling(session, method, sizes, seed, opacity, outline, hidden)
        return self.picture(session, "overlay", picture), sampling_summary(session, before)

    def reset_sampling(
        self,
        handle: str = "",
        opacity: float = 0.55,
        outline: bool = False,
        hidden: list[str] | None = None,
        request: gr.Request = None,
    ) -> tuple[FileData, dict]:
        """Back to the sampling the model was trained with.

        Args:
            handle: a result of /segment; empty: your latest
            opacity: of the class colours over the image, 0..1
            outline: draw only the borders between classes
            hidden: class names left out of the overlay
        Returns:
            overlay: PNG of the segmentation
            summary: as /set_sampling's
        """
        session = self.results.get(handle, client(request))
        before = session.result.labels
        _, picture, *_ = sampling.reset_sampling(session, opacity, outline, hidden)
        return self.picture(session, "overlay", picture), sampling_summary(session, before)

    def export(
        self,
        handle: str = "",
        opacity: float = 0.55,
        outline: bool = False,
        hidden: list[str] | None = None,
        request: gr.Request = None,
    ) -> list[FileData]:
        """Files of a result: overlay.png, labels.png (class ids), confidence.png, attention.npz
        (every block's (N, S) weights and anchor boxes), settings.json; panels.png, panels.svg,
        chart.svg and chart.html (standalone) after /attention; anchor.png after /anchor.

        Args:
            handle: a result of /segment; empty: your latest
            opacity: of the class colours in overlay.png, 0..1
            outline: draw only the borders between classes
            hidden: class names left out of overlay.png
        Returns:
            files: the files
        """
        session = self.results.get(handle, client(request))
        paths = export_files.export(session, opacity, outline, hidden)
        return [FileData(path=path).model_dump() for path in paths]  # dicts: gradio serves files in a list so

    def checkpoints(self) -> dict:
        """The models this app can segment with.

        Returns:
            checkpoints: the default model's name and every name /segment's `checkpoint` takes
        """
        return {"default": self.default, "checkpoints": self.store.names()}

    def model_card(self, checkpoint: str = "") -> str:
        """A model's card: network, classes, training data and scale, metrics, the command that made it.

        Args:
            checkpoint: a name from /checkpoints; empty: the app's default model
        Returns:
            card: markdown
        """
        name = checkpoint or self.default
        if name not in self.store.names():
            raise UserError(f"unknown checkpoint {name!r}; available: {', '.join(self.store.names())}")
        return models.model_card(self.store, name, self.max_side)

    def upload_checkpoint(self, file: FileData) -> tuple[str, str]:
        """Add a checkpoint file to the app: ours (.safetensors) or the authors' .pth, converted.

        Args:
            file: the checkpoint file
        Returns:
            checkpoint: its name, for /segment's `checkpoint`
            card: its model card (markdown)
        """
        name = models.add_checkpoint(self.store, file["path"])
        return name, models.model_card(self.store, name, self.max_side)

    def class_context(
        self,
        checkpoint: str = "",
        data: str = "synthcity",
        split: str = "test",
        count: int = context_tab.DEFAULT_COUNT,
        labels: str = "",
        block: str = "",
        handle: str = "",
        request: gr.Request = None,
    ) -> dict:
        """Where a model's attention lands, by class: row c of `matrix` is the share of the attention
        of class-c pixels that lands on anchors made of each class (rows sum to 1).

        Args:
            checkpoint: a name from /checkpoints; empty: the app's default model (or the handle's)
            data: synthcity (the first `count` images of a split, trained sampling) or image (`handle`)
            split: test or val, of SynthCity
            count: SynthCity images, 1..500 (a second call with the same data is instant)
            labels: gt (ground truth) or prediction (the model's); empty: gt where there is one
            block: context (APNB or NB), fusion (AFNB or FNB), or apnb, afnb, nb, fnb; empty: context
            handle: for data "image": a result of /segment; empty: your latest
        Returns:
            context: classes, matrix (null rows: no pixels), pixels, own_share, entropy, effective_anchors
        """
        session = None
        if data == "image":
            session = self.results.get(handle, client(request))
            if checkpoint and checkpoint != session.checkpoint:
                raise UserError(f"the image's result is of {session.checkpoint!r}: leave checkpoint empty")
        name, side = checkpoint or self.default, self.max_side
        results, about, model = context_tab.context(
            self.store, name, data, split, count, labels, session, side
        )
        result = context_tab.pick(results, model, block)
        return {**about, "blocks": list(results), **result.to_json()}

    def nb_compare(
        self,
        handle: str = "",
        image: FileData | None = None,
        label_map: FileData | None = None,
        checkpoint: str = "",
        method: str = "",
        sizes: str = "",
        seed: int = 0,
        request: gr.Request = None,
    ) -> tuple[FileData, dict]:
        """APNB (and AFNB) against NB (and FNB) on the same weights, on one image: the cosine of their
        context vectors per position, the pixels whose class changes, mIoU, GMACs and head time.

        Args:
            handle: a result of /segment (its label map gives the mIoU); empty: your latest (or `image`)
            image: instead of a handle, an image to segment first, with `checkpoint`
            label_map: with `image`: its ground truth, a PNG of class ids (255 = ignore), for the mIoU
            checkpoint: for `image`: a name from /checkpoints; empty: the app's default model
            method: the sampled side: a Table 7 method (e.g. pyramid_max); empty: the trained sampling
            sizes: pyramid sizes of `method`, e.g. "1,2,3,6"; empty: the trained sizes
            seed: of the random methods
        Returns:
            cosine: PNG, each block's cosine map (viridis, its lowest value or 0.999 to 1), side by side
            summary: per block the cosine (mean, min, p05, median), S, GMACs; changed pixels, mIoU, times
        """
        if image is not None:
            session = self.new_result(image, label_map, checkpoint, request)[0]
        elif label_map is not None or checkpoint:
            raise UserError("label_map and checkpoint go with image; a handle's result keeps its own")
        else:
            session = self.results.get(handle, client(request))
        comparison = nb_tab.compare(session, method, sizes, seed)
        summary = {"handle": session.handle, "checkpoint": session.checkpoint, **comparison.to_json(),
                   "text": nb_tab.image_text(comparison)}  # fmt: skip
        return self.picture(session, "nb_cosine", nb_tab.cosine_row(comparison)), summary

    def nb_compare_split(
        self, checkpoint: str = "", split: str = "test", count: int = nb_tab.DEFAULT_COUNT
    ) -> dict:
        """Every Table 7 sampling, the trained one and NB at inference (every position an anchor) on
        the same weights over SynthCity images: each one's mIoU and mean cosine of its context to NB's.

        Args:
            checkpoint: a name from /checkpoints; empty: the app's default model
            split: test or val, of SynthCity
            count: images, 1..500 (a second call with the same data is instant)
        Returns:
            comparison: rows (sampling, anchors, trained, miou, cosine_to_nb, ...; NB last), skipped
        """
        result, about = nb_tab.split_comparison(self.store, checkpoint or self.default, split, count,
                                                self.max_side)  # fmt: skip
        return {**about, **result.to_json()}

    # ---- helpers ------------------------------------------------------------------------------

    def new_result(self, image, label_map, checkpoint: str, request) -> tuple[Session, str]:
        """A new result in `results`, and the Segment tab's summary of it."""
        if image is None:
            raise UserError("Give an image.")
        label = label_map["path"] if label_map else None
        name, store, side = checkpoint or self.default, self.store, self.max_side
        session, *views = segment.segment(None, image["path"], label, name, store=store, max_side=side)
        self.results.add(session, client(request))
        for folder in self.folder.iterdir():  # the pictures of results that were dropped
            if folder.name not in self.results:
                shutil.rmtree(folder, ignore_errors=True)
        return session, views[6]

    def picture(self, session: Session, kind: str, array: np.ndarray) -> FileData:
        """A PNG in the result's folder: gradio copies it into its cache before the next call."""
        path = self.folder / session.handle / f"{kind}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(array).save(path, format="PNG")
        return FileData(path=str(path))


def client(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


def context_block(session: Session) -> str:
    """The block the Attention tab starts on: context (APNB/NB) before fusion."""
    choices = attention_views.block_choices(session.explorer.model.config)
    return choices[0][1] if choices else ""

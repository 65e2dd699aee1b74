"""The model row above the tabs: the checkpoint menu, the model card, loading another checkpoint
file, the processing size; and their handlers. A new model's image is segmented again by the
Segment tab's listeners (app/tabs/segment.py), which this row's controls trigger."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import gradio as gr

from ann.models.sampling import describe
from ann.training.card import data_text, trained_on
from app.errors import UserError
from app.session import UNTRAINED, ModelStore, Session, processing_size
from app.tab import Components, Context
from app.tabs.attention import block_update


def trained_sampling(model) -> str:
    """Per attention block: AFNB/APNB pool the config's anchors, NB/FNB attend to every position."""
    kinds, trained = model.block_kinds(), model.training_sampling()
    if not kinds:
        return "none (no attention block)"
    return "; ".join(f"{kind.upper()} {describe(trained[name])}" for name, kind in kinds.items())


def build(ctx: Context) -> Components:
    """The checkpoint menu and, folded, the model card and a checkpoint upload; the processing
    size line is the caller's (it sits above the menu)."""
    store, name = ctx.store, ctx.checkpoint
    checkpoint = gr.Dropdown(store.names(), value=name, label="checkpoint", elem_id="checkpoint")
    with gr.Accordion("Model card; load another checkpoint file", open=False, elem_id="model-card-accordion"):
        card = gr.Markdown(model_card(store, name, ctx.max_side), elem_id="model-card")
        upload = gr.File(
            label="load a checkpoint file (.safetensors, or the authors' .pth)",
            file_types=[".safetensors", ".pth", ".pt"],
            type="filepath",
            height=120,
            elem_id="checkpoint-file",
        )
    return {"checkpoint": checkpoint, "upload": upload, "card": card}


def session_for(store: ModelStore, session: Session | None, checkpoint: str) -> Session:
    """The session on `checkpoint`: the existing one, or a new one (image kept, to be rerun)."""
    checkpoint = checkpoint or store.default()
    if session is not None and session.checkpoint == checkpoint:
        return session
    try:
        fresh = store.session(checkpoint)
    except ValueError as error:  # CheckpointError included
        raise UserError(str(error)) from error
    if session is not None:
        for kept in ("image", "target", "image_name", "source", "label_source", "side"):
            setattr(fresh, kept, getattr(session, kept))
    return fresh


def choose_model(session: Session | None, checkpoint: str, *, store: ModelStore, max_side: int | None = None):
    """Switch the session's model; its model card and processing size. The image, if any, is
    segmented again after (at the new model's size)."""
    session = session_for(store, session, checkpoint)
    meta = session.explorer.meta
    blocks = block_update(session.explorer.model.config)
    card = model_card(store, checkpoint, max_side)
    return session, card, gr.update(choices=meta.classes, value=[]), blocks, size_text(meta, max_side)


def upload_checkpoint(
    session: Session | None, file: str | None, *, store: ModelStore, max_side: int | None = None
):
    """Register an uploaded checkpoint (.safetensors, or the authors' .pth) and switch to it."""
    name = add_checkpoint(store, file)
    session, card, classes, blocks, size = choose_model(session, name, store=store, max_side=max_side)
    return session, gr.update(choices=store.names(), value=name), card, classes, blocks, size


def add_checkpoint(store: ModelStore, file: str | None) -> str:
    """A checkpoint file registered in the store; its name in the menu."""
    if not file:
        raise UserError("Choose a .safetensors or .pth file.")
    try:
        return store.add_file(file)
    except ValueError as error:
        # the user knows the file by its name, not by the server's upload folder
        raise UserError(str(error).replace(str(Path(file).parent) + "/", "")) from error


def size_text(meta, max_side: int | None = None) -> str:
    """The page's line on the processing size: which size and why."""
    side, reason = processing_size(meta, max_side)
    return f"Images are processed with their longer side at most **{side} px** ({reason})."


def model_card(store: ModelStore, name: str, max_side: int | None = None) -> str:
    """Classes, training data, metrics and config from the metadata, then the .md next to the file."""
    model = store.model(name)
    meta = model.meta
    config, provenance = meta.config, meta.provenance
    lines = [f"### {name}"]
    if name == UNTRAINED:
        lines.append(
            "**Untrained: random initialisation, no bundled checkpoint yet.** The mechanics work; "
            "the predictions and attention maps mean nothing."
        )
    lines += [
        f"- network: {config.fusion.upper()} + {config.context.upper()} on {config.backbone} "
        f"(output stride {config.output_stride}), head {config.head_channels}, key {config.key_channels}, "
        f"value {config.value_channels}",
        f"- trained sampling: {trained_sampling(model)}",
        f"- {len(meta.classes)} classes: {', '.join(meta.classes)}",
        f"- sha256: `{meta.sha256}`",
    ]
    if provenance.get("source_sha256"):  # converted from the authors' .pth: the file the user has
        lines.append(f"- sha256 of the converted .pth: `{provenance['source_sha256']}`")
    for key, split in (("metrics", "val_split"), ("test_metrics", "test_split")):
        result = provenance.get(key) or {}
        if "miou" in result:
            name_of_split = provenance.get("data", {}).get(split) or key
            lines.append(f"- {name_of_split} mIoU: **{100 * result['miou']:.2f}**")
    if isinstance(provenance.get("data"), dict):
        lines.append(f"- data: {data_text(provenance['data'])}")
        lines.append(f"- trained on: {trained_on(provenance)}")
    side, reason = processing_size(meta, max_side)
    lines.append(f"- processed here at a longer side of {side} px ({reason})")
    for key in ("dataset", "iterations", "protocol", "backbone_from", "note", "source", "git_commit"):
        if key in provenance:
            lines.append(f"- {key}: {provenance[key]}")
    if provenance.get("reproduce"):
        lines.append(f"- reproduce: `{provenance['reproduce']}`")
    return "\n".join(lines + card_file(store.path(name)))


def card_file(path: Path | None) -> list[str]:
    """NAME.md beside a shipped checkpoint, else the trainer's model_card.md in its run folder."""
    cards = [path.with_suffix(".md"), path.parent / "model_card.md"] if path is not None else []
    card = next((c for c in cards if c.is_file()), None)
    if card is None:
        return []
    text = card.read_text(encoding="utf-8", errors="replace")[:20_000]
    return ["", "---", "", inline_images(text, card.parent)]


CARD_IMAGE = re.compile(r"!\[([^\]]*)\]\(([\w.-]+\.png)\)")  # a bare file name: no folders, no '..'


def inline_images(card: str, folder: Path, limit: int = 2_000_000) -> str:
    """The card's own PNGs (its training curve, beside it) as data URIs: the page cannot fetch
    files from the checkpoint folder, and nothing outside that folder is ever read."""

    def inline(match: re.Match) -> str:
        image = folder / match.group(2)
        if not image.is_file() or image.stat().st_size > limit:
            return match.group(0)
        data = base64.b64encode(image.read_bytes()).decode()
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    return CARD_IMAGE.sub(inline, card)

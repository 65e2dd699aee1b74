"""Sampling tab: switch the pyramid sizes / sampling method of AFNB and APNB on the loaded
model (paper Sec. 3.2, Table 7) and see what changes. Only the head is recomputed: the backbone
stages of the image are cached in the session's Explorer."""

from __future__ import annotations

import time

import gradio as gr

from ann.analysis.explore import class_shares
from ann.models.sampling import METHODS, SamplingConfig, describe, misfit
from app import plots
from app.errors import UserError
from app.models import trained_sampling
from app.session import MODEL_QUEUE, Session, require, returns_freed_memory
from app.tab import Components, Context, Tab
from app.tabs import attention
from app.tabs.segment import view

PRESETS = ("1,2,3,6", "1,3,6,8", "1,4,8,12")
# the six methods of Table 7, the paper's choice first; "identity" (every position, NB/FNB) is left
# out: N x N attention
TABLE7_METHODS = tuple(m for m in reversed(METHODS) if METHODS[m].sizes != "none")


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(
            int(part) for part in str(text).replace("(", "").replace(")", "").split(",") if part.strip()
        )
    except ValueError as error:
        raise UserError(f"pyramid sizes must be integers separated by commas, got {text!r}") from error
    if not sizes:
        raise UserError("give at least one pyramid size, e.g. 1,3,6,8")
    if max(sizes) > 64:
        raise UserError(f"pyramid size {max(sizes)} is larger than this app allows (64)")
    return sizes


def suggest_sizes(method: str, sizes: str) -> str:
    """Single-level methods take one n: keep the largest of the pyramid sizes typed so far."""
    numbers = [n for n in str(sizes).replace("(", "").replace(")", "").split(",") if n.strip()]
    if method.startswith("pyramid_") or not numbers or not all(n.strip().isdigit() for n in numbers):
        return sizes  # left for Apply to refuse, with the reason (a pre-fill is no user mistake to log)
    return str(max(int(n) for n in numbers))


def switchable(session: Session) -> bool:
    """Only AFNB and APNB sample anchors; NB and FNB attend to every position."""
    return bool(session.explorer.model.switchable())


def trained_controls(session: Session | None):
    """The controls set to the model's own sampling: a new model starts from its training
    sampling. (preset, sizes, method, summary)"""
    if session is None:
        return (gr.skip(),) * 4
    summary = f"Training sampling: {trained_sampling(session.explorer.model)}."
    if not switchable(session):
        # the config's pyramid is unused by NB, FNB and the baseline: showing it would suggest otherwise
        return gr.skip(), gr.skip(), gr.skip(), summary + " Nothing to switch: no AFNB or APNB block."
    trained = session.explorer.model.config.sampling
    sizes = ",".join(map(str, trained.sizes))
    method = trained.method if trained.method in TABLE7_METHODS else gr.skip()
    preset = sizes if sizes in PRESETS else None
    return preset, sizes, method, summary


def set_sampling(session: Session | None, method: str, sizes: str, seed: float, opacity, outline, hidden):
    """Apply a sampling to AFNB and APNB; new segmentation, changed pixels, area changes, S, GMACs."""
    session = require(session)
    if not switchable(session):
        raise UserError("This model has no AFNB or APNB block, so no sampling to switch: NB and FNB attend "
                        "to every position, and a baseline has no attention.")  # fmt: skip
    if method not in TABLE7_METHODS:
        raise UserError(f"unknown sampling method {method!r}; valid: {', '.join(TABLE7_METHODS)}")
    sizes = parse_sizes(sizes)  # its gr.Error as it is: caught below it would be quoted again
    try:
        config = SamplingConfig(method, sizes, int(seed or 0))
    except ValueError as error:
        raise UserError(str(error)) from error
    check_fits(config, session.explorer.stages[-1].shape[-2:])
    return apply(session, config, opacity, outline, hidden)


def check_fits(config: SamplingConfig, feature_hw) -> None:
    """Refuse what does not fit this image's feature map (ann.models.sampling.misfit)."""
    reason = misfit(config, feature_hw, whose="this image's")
    if reason is None:
        return
    if config.kind != "random":  # a grid finer than the map: say how fine it may be
        reason += f" (output stride 8): use sizes up to {min(feature_hw)}, or a larger image"
    raise UserError(reason)


def reset_sampling(session: Session | None, opacity, outline, hidden):
    """Back to the sampling the model was trained with."""
    return apply(require(session), None, opacity, outline, hidden)


@returns_freed_memory
def apply(session: Session, config: SamplingConfig | None, opacity, outline, hidden):
    explorer = session.explorer
    before = explorer.result
    start = time.perf_counter()
    try:
        after = explorer.set_sampling(config)
    except ValueError as error:  # e.g. random sampling of more anchors than positions
        raise UserError(str(error)) from error
    elapsed = time.perf_counter() - start
    # the anchors are new: a picked one may not exist any more (the browser then redraws the
    # clicked pixel, which picks its strongest anchor again)
    session.selection.pop("anchor", None)
    classes, palette = explorer.meta.classes, explorer.meta.palette
    changed = plots.changed_picture(after.image, before.labels, after.labels)
    chart = plots.area_chart(
        classes, palette, class_shares(before.labels, len(classes)), class_shares(after.labels, len(classes))
    )
    picture, legend = plots.render(session, opacity, outline, hidden)
    clickable = plots.clickable(picture)
    return session, picture, legend, changed, chart, summary(session, before, after, elapsed), clickable


def summary(session: Session, before, after, elapsed: float) -> str:
    explorer = session.explorer
    fraction = float((before.labels != after.labels).mean())
    lines = [
        f"Head recomputed in {elapsed * 1000:.0f} ms; **{100 * fraction:.2f}%** of pixels changed class."
    ]
    for name, kind in explorer.block_kinds().items():
        lines.append(
            f"- {kind.upper()}: {describe(explorer.sampling[name])}, "
            f"{explorer.block_gmacs(name):.3f} GMACs (attention part, Table 1 convention)"
        )
    differences = explorer.differences()
    if differences:
        lines.append("\n**Differs from the training configuration** (the model never saw these anchors):")
        lines += [f"- {d}" for d in differences]
    else:
        lines.append("\nSame as the training configuration.")
    return "\n".join(lines)


def build(ctx: Context) -> Components:
    c = {}
    gr.Markdown(
        "Switch how AFNB and APNB sample their anchors (Table 7) on the loaded weights. Only the head "
        "is recomputed; the backbone features of the image are cached."
    )
    with gr.Row():
        c["preset"] = gr.Radio(
            list(PRESETS), value="1,3,6,8", label="pyramid sizes preset", elem_id="sampling-preset"
        )
        c["sizes"] = gr.Textbox(
            "1,3,6,8", label="sizes (one n for random/max/average)", elem_id="sampling-sizes"
        )
        c["method"] = gr.Dropdown(
            list(TABLE7_METHODS), value="pyramid_average", label="method", elem_id="sampling-method"
        )
        c["seed"] = gr.Number(0, label="seed (random methods)", precision=0, elem_id="sampling-seed")
    with gr.Row():
        c["apply"] = gr.Button("Apply sampling", variant="primary", elem_id="sampling-apply")
        c["reset"] = gr.Button("Back to training sampling", elem_id="sampling-reset")
    c["summary"] = gr.Markdown(elem_id="sampling-summary")
    with gr.Row():
        c["changed"] = plots.shown_image(
            "pixels whose class changed from the previous sampling (yellow)", "sampling-changed"
        )
        c["area"] = gr.Plot(label="per-class area change", elem_id="sampling-area")
    return c


def wire(ctx: Context, shared: dict[str, Components]) -> None:
    """Apply or reset: the Segment tab's overlay, then the Attention tab's last click again."""
    smp, seg, att, state = shared["sampling"], shared["segment"], shared["attention"], ctx.state
    private = {"api_visibility": "private", "queue": False}
    smp["preset"].input(lambda preset: preset, smp["preset"], smp["sizes"], **private)
    # single-level methods take one n: pre-fill it
    smp["method"].input(suggest_sizes, [smp["method"], smp["sizes"]], smp["sizes"], **private)
    views = [smp["changed"], smp["area"], smp["summary"]]
    outputs = [state, seg["overlay"], seg["legend"], *views, att["image"]]
    # the last click again, over the new anchors
    refresh = (attention.refresh, state, attention.attention_outputs(state, att))
    cleared = attention.anchor_view_cleared(att)  # the anchor picked before may not exist any more
    smp["apply"].click(
        set_sampling,
        [state, smp["method"], smp["sizes"], smp["seed"], *view(seg)],
        outputs,
        api_visibility="private",
        **MODEL_QUEUE,
    ).success(*refresh, api_visibility="private").then(*cleared, **private)
    smp["reset"].click(
        reset_sampling, [state, *view(seg)], outputs, api_visibility="private", **MODEL_QUEUE
    ).success(*refresh, api_visibility="private").then(*cleared, **private)


def new_image(smp: Components):
    """The changed-pixels picture, area chart and summary compared the previous image's samplings."""
    return lambda session: (None, None, ""), [smp["changed"], smp["area"], smp["summary"]]


def new_model(smp: Components):
    return trained_controls, [smp[k] for k in ("preset", "sizes", "method", "summary")]


TAB = Tab("Sampling", "sampling", build, wire, new_image=new_image, new_model=new_model)

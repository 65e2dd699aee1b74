"""Explain tab: what a prediction depends on, by captum attributions of one scalar target, the sum of
a class logit over a clicked region or over the pixels predicted as that class
(ann.analysis.features.MaskedLogitSum). Grad-CAM on a chosen stage; Integrated Gradients on the input.

Both run on a copy of the image whose longer side is at most `side` pixels, since on a CPU a full
backward pass of ResNet-101 at 1024x2048 takes minutes; the UI says so."""

import gradio as gr
import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam

from ann.analysis import features
from ann.data.labels import CITYSCAPES_CLASSES
from ann.inference import preprocess
from ann.models.network import ANN
from app.errors import UserError
from app.plots import display_size, mark_point, over_grey, resize, unit_colors
from app.session import MODEL_QUEUE, Session, current, require, returns_freed_memory
from app.tab import Components, Context, Tab

METHODS = ("Grad-CAM", "Integrated Gradients")
MODES = ("pixels predicted as the class", "clicked region")
MAJORITY = "(class predicted most in the region)"
BLOCKS = ("afnb", "apnb", "fnb", "nb")  # Grad-CAM on a block's output; each model has at most two
LAYERS = (*features.STAGES, *BLOCKS)


def class_index(name: str, classes: list[str]) -> int:
    if name in classes:
        return classes.index(name)
    if str(name).isdigit() and int(name) < len(classes):
        return int(name)
    raise UserError(f"unknown class {name!r}; this model's classes: {', '.join(classes)}")


def target_mask(session: Session, mode: str, name: str, x, y, radius: int) -> tuple[torch.Tensor, int, str]:
    """(mask at image size, class index, description); TargetError when it cannot be built."""
    classes = list(session.explorer.meta.classes)
    prediction = torch.from_numpy(session.result.labels.astype(np.int64))
    if mode == MODES[0]:
        if name == MAJORITY:
            raise features.TargetError("choose a class: 'pixels predicted as the class' needs one")
        k = class_index(name, classes)
        mask = features.class_mask(prediction, k, classes)
        return mask, k, f"sum of the {classes[k]!r} logit over the {int(mask.sum())} pixels predicted as it"
    if mode != MODES[1]:
        raise UserError(f"unknown target mode {mode!r}; valid: {', '.join(MODES)}")
    if x is None or y is None:
        raise features.TargetError("click the image to choose the region's centre (or give x and y)")
    mask = features.region_mask(prediction.shape, (int(y), int(x)), int(radius))
    k = features.majority_class(prediction, mask) if name == MAJORITY else class_index(name, classes)
    where = f"the disc of radius {int(radius)} px around (x={int(x)}, y={int(y)})"
    return mask, k, f"sum of the {classes[k]!r} logit over {where} ({int(mask.sum())} pixels)"


def scaled_input(session: Session, side: int) -> torch.Tensor:
    """The normalised image, resized so its longer side is at most `side` (attributions are costly)."""
    x = preprocess(session.image, session.explorer.meta.normalization)
    H, W = x.shape[-2:]
    scale = min(1.0, side / max(H, W))
    if scale < 1.0:
        size = (max(8, round(H * scale)), max(8, round(W * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x


def grad_cam(target: features.MaskedLogitSum, model: ANN, layer: str, x: torch.Tensor, out_hw) -> np.ndarray:
    """ReLU'd Grad-CAM of the layer, upsampled to out_hw and scaled to [0, 1] by its maximum."""
    try:
        module = features.stage_module(model, layer)
    except ValueError as error:
        raise UserError(str(error)) from error
    cam = LayerGradCam(target, module).attribute(x, relu_attributions=True)  # (1, 1, h, w)
    cam = LayerAttribution.interpolate(cam, tuple(out_hw), "bilinear")[0, 0].detach()
    peak = float(cam.max())
    return (cam / peak).numpy() if peak > 0 else cam.numpy() * 0


def integrated_gradients(target: features.MaskedLogitSum, x: torch.Tensor, steps: int, progress):
    """|IG| summed over RGB (baseline: the all-zero normalised image, i.e. the mean colour) and the
    completeness check: sum of attributions vs target(x) - target(baseline)."""
    done = [0]

    def count(module, inputs):
        done[0] += inputs[0].shape[0]
        progress((min(done[0], steps), steps), desc="Integrated Gradients", unit="steps")

    handle = target.register_forward_pre_hook(count)
    try:
        attributions, delta = IntegratedGradients(target).attribute(
            x,
            baselines=torch.zeros_like(x),
            n_steps=steps,
            internal_batch_size=2,
            return_convergence_delta=True,
        )
    finally:
        handle.remove()
    return attributions[0].abs().sum(0).detach(), float(attributions.sum()), float(delta.abs().max())


@returns_freed_memory  # large, image-sized buffers: see app.session
def explain(
    session: Session | None,
    layer: str,
    class_name: str,
    mode: str,
    x: float | None = None,  # None: the API may leave out the point of a class target
    y: float | None = None,
    radius: int = 24,
    methods: list[str] | tuple[str, ...] = METHODS[:1],
    steps: int = 8,
    side: int = 256,
    progress=gr.Progress(),  # noqa: B008 (gradio injects the tracker through this default)
):
    """(Grad-CAM overlay, IG map, message). An absent class gives a message, not an error."""
    session = require(session)
    explorer = session.explorer
    try:
        mask, k, description = target_mask(session, mode, class_name, x, y, radius)
    except features.TargetError as error:
        return None, None, f"**No attribution:** {error}"
    progress(0, desc="preparing")
    inputs = scaled_input(session, int(side))
    H, W = session.image.shape[:2]
    size = display_size((H, W))
    base = resize(session.image, size, nearest=False)
    marker = None if mode == MODES[0] else (int(y) * size[0] / H, int(x) * size[1] / W)
    cam_image = ig_image = None
    notes = [f"Target: {description}.", f"Computed at {inputs.shape[-1]}x{inputs.shape[-2]} px."]
    with explorer.lock, torch.enable_grad():
        explorer.apply_sampling()  # the model is shared: run it with this session's sampling
        target = features.MaskedLogitSum(explorer.model, k, mask)
        if METHODS[0] in methods:
            progress(0.1, desc=f"Grad-CAM on {layer}")
            cam = grad_cam(target, explorer.model, layer, inputs, size)
            cam_image = over_grey(base, unit_colors(cam, "magma"))
            notes.append(f"Grad-CAM on {layer} (ReLU, scaled to its maximum; magma: bright = more).")
        if METHODS[1] in methods:
            heat, total, delta = integrated_gradients(target, inputs, int(steps), progress)
            unit = heat / heat.max() if float(heat.max()) > 0 else heat
            ig_image = over_grey(base, resize(unit_colors(unit, "magma"), size, nearest=False))
            notes.append(
                f"Integrated Gradients, {int(steps)} steps: |attribution| summed over RGB. "
                f"Completeness: attributions sum to {total:.4g}, error {delta:.3g}."
            )
    if marker is not None:
        cam_image = None if cam_image is None else mark_point(cam_image, marker)
        ig_image = None if ig_image is None else mark_point(ig_image, marker)
    return cam_image, ig_image, " ".join(notes)


def pick_point(event: gr.SelectData):
    return event.index[0], event.index[1], MODES[1]


def show_image(session: Session | None, layer: str | None = None):
    """The segmented image to click on, the session model's classes for the class menu, set to
    the class predicted most (a class the image has pixels of), and the model's layers."""
    session = current(session)
    if session is None or session.image is None or session.result is None:
        return None, gr.update(), gr.update()
    classes = list(session.explorer.meta.classes)
    most = int(np.bincount(session.result.labels.ravel(), minlength=len(classes)).argmax())
    # the Grad-CAM layers of this network: its stages, then its attention blocks (a baseline: none)
    layers = [*features.STAGES, *session.explorer.block_kinds().values()]
    layer = gr.update(choices=layers, value=layer if layer in layers else "stage5")
    return session.image, gr.update(choices=[MAJORITY, *classes], value=classes[most]), layer


def build(ctx: Context) -> Components:
    """The tab's UI and its listeners (named endpoints, for clients without a browser session)."""
    state = ctx.state
    gr.Markdown(
        "What drives a prediction: the **target** is the sum of one class logit over the pixels "
        "predicted as that class, or over a clicked region. **Grad-CAM** weighs a stage's (or "
        "block's) channels by their mean gradient; **Integrated Gradients** integrates input "
        "gradients from a grey image to this one. To stay fast on a CPU both run on a **reduced "
        "copy of the image** (longer side below), and IG uses **few steps**: a coarse estimate; "
        "its completeness error is reported."
    )
    with gr.Row():
        image = gr.Image(
            label="click a region", interactive=False, type="numpy", height=320, elem_id="explain-image"
        )
        with gr.Column():
            mode = gr.Radio(list(MODES), value=MODES[0], label="target")
            name = gr.Dropdown(
                [MAJORITY, *CITYSCAPES_CLASSES], value="road", label="class", allow_custom_value=True
            )
            with gr.Row():
                x = gr.Number(None, label="x (pixels)", precision=0)  # None: no region until a click
                y = gr.Number(None, label="y (pixels)", precision=0)
                radius = gr.Slider(0, 200, value=24, step=1, label="region radius (pixels)")
            layer = gr.Dropdown(list(LAYERS), value="stage5", label="Grad-CAM layer")
            methods = gr.CheckboxGroup(list(METHODS), value=[METHODS[0]], label="methods")
            steps = gr.Slider(2, 32, value=8, step=1, label="IG steps (few: cheap, coarse)")
            side = gr.Slider(64, 1024, value=256, step=32, label="attribution resolution: longer side (px)")
            with gr.Row():
                load = gr.Button("Show the segmented image")
                run = gr.Button("Explain", variant="primary")
    status = gr.Markdown()
    with gr.Row():
        cam = gr.Image(label="Grad-CAM", interactive=False, format="png")
        ig = gr.Image(label="Integrated Gradients", interactive=False, format="png")
    run.click(
        explain,
        [state, layer, name, mode, x, y, radius, methods, steps, side],
        [cam, ig, status],
        api_name="explain",
        **MODEL_QUEUE,
    )
    image.select(pick_point, None, [x, y, mode], api_visibility="private")
    load.click(show_image, [state, layer], [image, name, layer], api_name="explain_image")
    return {"image": image, "name": name, "layer": layer}


def opened(ctx: Context, tab: Components) -> tuple:
    """Opening the tab shows the session's segmented image: no extra button press."""
    return show_image, [ctx.state, tab["layer"]], [tab["image"], tab["name"], tab["layer"]]


TAB = Tab("Explain", "explain", build, opened=opened)

"""Shared fixtures for app tests: a tiny checkpoint in a temporary folder and the real app
(app.layout.build_demo) launched on a free loopback port, driven with gradio_client.

Use them in a test module with `pytest_plugins = ("tests.conftest_app",)`, then name them as arguments.
"""

import socket

import numpy as np
import pytest
import torch
from PIL import Image

from ann.checkpoint import CheckpointMeta, save
from ann.models import build_network, variant

TINY_NAME = "tiny.safetensors"
IMAGE_HW = (48, 64)


def tiny_config():
    return variant(
        "full", backbone="resnet18", num_classes=19, head_channels=64, key_channels=32, value_channels=32
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(demo, **options) -> tuple[int, str]:
    """Launch `demo` on a free loopback port: (port, url). A port found free can be taken before
    the server binds it (by another socket's ephemeral port), and gradio then raises OSError for
    that one port: another port is tried."""
    options = {"server_name": "127.0.0.1", **options, "prevent_thread_lock": True, "quiet": True}

    def on_a_free_port() -> tuple[int, str]:
        port = free_port()
        return port, demo.launch(**{**options, "server_port": port})[1]

    for _ in range(4):
        try:
            return on_a_free_port()
        except OSError:
            continue
    return on_a_free_port()  # a fifth failure is the error to see


def street_image(path, seed: int = 0):
    """A small RGB image whose left half is dark and right half bright, so features vary."""
    rng = np.random.default_rng(seed)
    image = (rng.random((*IMAGE_HW, 3)) * 80).astype(np.uint8)
    image[:, IMAGE_HW[1] // 2 :] += 160
    Image.fromarray(image).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    from app.session import ModelStore

    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    model = build_network(tiny_config()).eval()
    save(model, folder / TINY_NAME, CheckpointMeta(model.config, provenance={"note": "test, untrained"}))
    return ModelStore(folder)


@pytest.fixture(scope="module")
def app_client(tiny_store, tmp_path_factory):
    """(client, demo) with an image already segmented in the client's session."""
    from gradio_client import Client, handle_file

    from app.layout import build_demo

    demo = build_demo(tiny_store, TINY_NAME, max_side=96)
    demo.queue(default_concurrency_limit=1)
    _, url = launch(demo)
    try:
        client = Client(url, verbose=False)
        image = street_image(tmp_path_factory.mktemp("images") / "street.png")
        client.predict(handle_file(str(image)), None, TINY_NAME, 0.55, False, [], api_name="/segment")
        yield client, demo
    finally:
        demo.close()


def attentive_model(keys_only: bool = False):
    """The tiny ANN with random attention weights, so that its attention is not uniform: the query
    and key projections only (keys_only), or every attention conv (W included, zero at
    initialisation), so that the anchors also change the context vectors and predicted classes."""
    torch.manual_seed(0)
    model = build_network(tiny_config()).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if keys_only and (".key.0." in name or ".query.0." in name) and name.endswith("weight"):
                parameter.normal_(0, 0.5)
            elif not keys_only and name.startswith(("fusion.", "context.")) and parameter.dim() == 4:
                parameter.normal_(0, 1.0)
    return model


def save_tiny_and_fcn(folder, tiny) -> None:
    """tiny.safetensors (the given tiny ANN) and fcn.safetensors (a small dilated FCN, no attention
    block): what the analysis command lines accept and refuse."""
    save(tiny, folder / "tiny.safetensors", CheckpointMeta(tiny.config))
    fcn = build_network(variant("baseline", backbone="resnet18", head_channels=16)).eval()
    save(fcn, folder / "fcn.safetensors", CheckpointMeta(fcn.config))


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """A folder with tiny.safetensors (a seed-0 tiny full ANN) and fcn.safetensors: the analysis
    command lines' inputs (save_tiny_and_fcn)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    save_tiny_and_fcn(folder, build_network(tiny_config()).eval())
    return folder


@pytest.fixture(scope="module")
def attentive_store(tmp_path_factory):
    """The tiny checkpoint with random attention weights (W included, zero at initialisation), so
    that the anchors change the context vectors and some predicted classes (as tests/test_nb_compare.py)."""
    from app.session import ModelStore

    folder = tmp_path_factory.mktemp("attentive-checkpoints")
    model = attentive_model()
    note = {"note": "test: untrained, random attention weights"}
    save(model, folder / TINY_NAME, CheckpointMeta(model.config, provenance=note))
    return ModelStore(folder)


@pytest.fixture(scope="module")
def analysis_client(attentive_store):
    """(client, demo): the app on `attentive_store` at a processing size of 96 px (SynthCity at 96x48)."""
    from gradio_client import Client

    from app.layout import build_demo

    demo = build_demo(attentive_store, TINY_NAME, max_side=96)
    _, url = launch(demo.queue(default_concurrency_limit=1))
    try:
        yield Client(url, verbose=False), demo
    finally:
        demo.close()

"""app.session helpers that the handlers rely on."""

import inspect

import app.session as session


def test_returns_freed_memory_trims_after_the_handler_and_keeps_its_signature(monkeypatch):
    calls = []
    monkeypatch.setattr(session, "MALLOC_TRIM", lambda pad: calls.append(("trim", pad)))

    def handler(image, opacity: float = 0.5, *, store=None):
        calls.append(("handler", image))
        raise RuntimeError("model failed")

    wrapped = session.returns_freed_memory(handler)
    # gradio reads the handler's parameters to wire its inputs
    assert inspect.signature(wrapped) == inspect.signature(handler)
    try:
        wrapped("img")
    except RuntimeError:
        pass
    assert calls == [("handler", "img"), ("trim", 0)]  # trimmed even when the handler fails


def test_card_images_are_inlined_only_from_the_checkpoint_folder(tmp_path):
    """The model card's curve shows in the page (as a data URI); links that leave the folder,
    or name no file, stay as they are and nothing outside is read."""
    import base64

    from PIL import Image

    from app.models import inline_images

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    Image.new("RGB", (4, 3), (9, 8, 7)).save(folder / "m_curve.png")
    Image.new("RGB", (4, 3)).save(tmp_path / "secret.png")
    card = "# m\n![training curve](m_curve.png)\n![x](../secret.png) ![y](missing.png)"
    out = inline_images(card, folder)
    data = out.split("(data:image/png;base64,")[1].split(")")[0]
    assert base64.b64decode(data) == (folder / "m_curve.png").read_bytes()
    assert out.count("data:image") == 1 and "](../secret.png)" in out and "](missing.png)" in out


def test_an_evicted_authors_checkpoint_is_converted_again(monkeypatch, tmp_path):
    """A converted .pth dropped from the store's cache (more models opened than it keeps) is read
    again through the converter when chosen, not as a .safetensors file."""
    import torch

    from ann.checkpoint import CheckpointMeta, save
    from ann.models import build_network, variant

    def tiny(name: str, context: str):
        torch.manual_seed(0)
        config = variant("apnb", backbone="resnet18", num_classes=19, head_channels=16, key_channels=8,
                         value_channels=8, context=context)  # fmt: skip
        model = build_network(config)
        return save(model, tmp_path / name, CheckpointMeta(model.config))

    tiny("a.safetensors", "apnb")
    tiny("b.safetensors", "nb")
    converted = tiny("converted.safetensors", "apnb")
    monkeypatch.setattr(session, "convert_original", lambda path: session.load(converted))
    (tmp_path / "theirs.pth").write_bytes(b"the authors' pickle")
    store = session.ModelStore(tmp_path, max_models=1)
    name = store.add_file(tmp_path / "theirs.pth")
    store.model("b.safetensors")  # evicts the converted model
    assert store.model(name).meta.sha256 == session.file_sha256(converted)


def test_the_card_of_a_converted_checkpoint_names_the_pth_it_came_from(tmp_path):
    import torch

    from ann.checkpoint import CheckpointMeta, save
    from ann.models import build_network, variant
    from app.models import model_card

    torch.manual_seed(0)
    config = variant("apnb", backbone="resnet18", num_classes=19, head_channels=16, key_channels=8,
                     value_channels=8)  # fmt: skip
    model = build_network(config)
    provenance = {"source": "theirs.pth", "source_sha256": "ab" * 32}
    save(model, tmp_path / "converted.safetensors", CheckpointMeta(model.config, provenance=provenance))
    store = session.ModelStore(tmp_path)
    card = model_card(store, "converted.safetensors")
    assert f"sha256 of the converted .pth: `{'ab' * 32}`" in card


def test_results_keep_the_most_recent_within_their_budget_and_each_clients_latest():
    """Three results of 1 MB in a 2.5 MB budget: the third drops the least recently used (its
    caches freed at once); a client finds its latest without a handle; every miss says what to do."""
    import numpy as np
    import pytest

    from app.errors import UserError

    def result():
        explorer = type("Explorer", (), {"stages": None, "result": "result"})()
        return session.Session("m", explorer, image=np.zeros(1 << 20, np.uint8))

    results = session.Results(budget=5 << 19)
    first, second, third = result(), result(), result()
    a, b = results.add(first, client="tab-1"), results.add(second, client="tab-2")
    assert results.get(None, "tab-1") is first and results.get(a) is first  # a is now the most recent
    c = results.add(third, client="tab-1")
    assert b not in results and second.explorer.result is None and first.explorer.result == "result"
    assert results.get(a) is first and results.get(c) is third and results.get(None, "tab-1") is third
    with pytest.raises(
        UserError, match=rf"unknown or expired handle '{b}' \(the server keeps the most recent"
    ):
        results.get(b)
    with pytest.raises(UserError, match="your last result has expired"):
        results.get(None, "tab-2")
    with pytest.raises(UserError, match="Segment an image first"):
        results.get(None, "tab-3")
    assert results.find(None, None) is None and len({a, b, c}) == 3


def test_a_results_footprint_counts_its_tensors_and_arrays():
    import numpy as np
    import torch

    from ann.analysis.explore import Result

    stages = [torch.zeros(2, 3), torch.zeros(4, dtype=torch.float16)]
    assert session.footprint([stages, {"map": np.zeros(5, np.uint8)}, None, "text"]) == 24 + 8 + 5
    result = Result(np.zeros((2, 2, 3), np.uint8), torch.zeros(1), *[np.zeros(1, np.uint8)] * 3, None, {})
    assert session.footprint(result) == 12 + 4 + 3


def tiny_checkpoint(path, note: str):
    import torch

    from ann.checkpoint import CheckpointMeta, save
    from ann.models import build_network, variant

    torch.manual_seed(0)
    config = variant("apnb", backbone="resnet18", num_classes=19, head_channels=16, key_channels=8,
                     value_channels=8)  # fmt: skip
    model = build_network(config)
    return save(model, path, CheckpointMeta(model.config, provenance={"note": note}))  # note: own sha256


def test_the_store_keeps_the_newest_models_and_shares_one_file_under_two_names(tmp_path):
    """max_models bounds the memory: opening a third model drops the oldest, not the newest; a
    second name for the same bytes is the same model, not a second copy."""
    import shutil

    for name in ("a", "b", "c"):
        tiny_checkpoint(tmp_path / f"{name}.safetensors", name)
    shutil.copy(tmp_path / "a.safetensors", tmp_path / "copy_of_a.safetensors")
    store = session.ModelStore(tmp_path, max_models=2)
    a = store.model("a.safetensors")
    assert store.model("copy_of_a.safetensors") is a
    b, c = store.model("b.safetensors"), store.model("c.safetensors")
    assert store.model("c.safetensors") is c and store.model("b.safetensors") is b
    assert store.model("a.safetensors") is not a  # dropped, read again


def test_authors_pt_files_are_converted_like_pth(monkeypatch, tmp_path):
    monkeypatch.setattr(session, "convert_original", lambda path: f"converted {path.name}")
    assert session.read_checkpoint(tmp_path / "theirs.pt") == "converted theirs.pt"
    assert session.read_checkpoint(tmp_path / "theirs.pth") == "converted theirs.pth"


def test_handlers_need_a_segmented_image(tmp_path):
    import gradio as gr
    import pytest

    tiny_checkpoint(tmp_path / "a.safetensors", "a")
    fresh = session.ModelStore(tmp_path).session("a.safetensors")  # a model, no image yet
    for value in (None, fresh):
        with pytest.raises(gr.Error, match="Segment an image first"):
            session.require(value)

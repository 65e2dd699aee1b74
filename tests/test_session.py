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

    from app.segment import inline_images

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
    from app.segment import model_card

    torch.manual_seed(0)
    config = variant("apnb", backbone="resnet18", num_classes=19, head_channels=16, key_channels=8,
                     value_channels=8)  # fmt: skip
    model = build_network(config)
    provenance = {"source": "theirs.pth", "source_sha256": "ab" * 32}
    save(model, tmp_path / "converted.safetensors", CheckpointMeta(model.config, provenance=provenance))
    store = session.ModelStore(tmp_path)
    card = model_card(store, "converted.safetensors")
    assert f"sha256 of the converted .pth: `{'ab' * 32}`" in card

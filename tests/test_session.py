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

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

"""The upload component of the app: files reach `ann.images.read_image` undecoded."""

import gradio as gr


class UploadedImage(gr.Image):
    """gr.Image whose upload reaches the handler as the file itself, undecoded, for `read_image`.

    gr.Image's own preprocessing opens every upload with PIL first: a non-image, an empty file or a
    decompression bomb then fails inside gradio with its generic "raised an exception" instead of
    our message naming the problem, and non-RGB modes are converted lossily (16-bit clipped,
    transparency dropped) before `to_rgb` sees them.

    Create it with type="filepath", image_mode=None. It has no __init__ of its own on purpose:
    gradio builds the settings it sends to the browser from the constructor's signature, and a
    (*args, **kwargs) one sends none, so the page never renders.
    """

    is_template = True  # the browser side is gr.Image's component

    def preprocess(self, payload):
        if payload is None or self.type != "filepath" or payload.path is None:
            return super().preprocess(payload)
        if payload.url and payload.url.startswith("data:"):  # base64 from the browser: gradio writes it
            return super().preprocess(payload)
        return payload.path

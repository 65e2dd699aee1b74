"""User mistakes (a point outside the image, a bad upload, a sampling that does not fit) as
`UserError`: the user gets the message, the server log one line. Gradio prints a whole traceback
for every other exception, which is what a real fault should leave behind."""

import logging

import gradio as gr

log = logging.getLogger("app")


class UserError(gr.Error):
    """A gr.Error without gradio's traceback, logged as one line when it is made (handlers make
    one only to raise it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_exception=False)
        log.info("refused: %s", message)

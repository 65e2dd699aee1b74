"""The app as its clients use it, launched on a free loopback port with its MCP server: the Python
examples of docs/app.md and docs/app_analysis.md run as written, the MCP tools through the `mcp`
client, and one line in the server's log per refused input (a traceback only for a real fault)."""

import ast
import asyncio
import base64
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import conftest_app
from tests.conftest_app import TINY_NAME

tiny_store = conftest_app.tiny_store
pytestmark = pytest.mark.filterwarnings("ignore:This MCP server includes a tool that has a gr.State input")

DOCS = Path(__file__).parents[1] / "docs"
DOC_URL = "http://127.0.0.1:7860/"  # where the examples find the app
PHOTO_WH = (640, 400)  # read as it is: the tiny checkpoint records no training size (1024 px)


def examples(doc: str, section: str) -> list[str]:
    """The ```python blocks of one `## section` of a page of docs/."""
    body = (DOCS / doc).read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, re.S)


@pytest.fixture(scope="module")
def app_url(tiny_store):
    from app.layout import build_demo, launch_options

    demo = build_demo(tiny_store, TINY_NAME)
    _, url = conftest_app.launch(demo.queue(default_concurrency_limit=1), **launch_options(mcp=True))
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture
def photo(tmp_path, monkeypatch) -> Path:
    """photo.jpg in the working directory, as the examples name it."""
    rng = np.random.default_rng(0)
    pixels = (rng.random((PHOTO_WH[1], PHOTO_WH[0], 3)) * 120).astype(np.uint8)
    pixels[:, PHOTO_WH[0] // 2 :] += 120
    Image.fromarray(pixels).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "photo.jpg"


@pytest.mark.parametrize(
    "doc, section, printed",
    [("app.md", "API", "[640, 400]"), ("app.md", "MCP", "'segment'"),
     ("app_analysis.md", "API endpoints", "Integrated Gradients"),
     ("app_analysis.md", "Class context and APNB vs NB endpoints", "apnb 2 gt")],
)  # fmt: skip
def test_the_python_examples_of_the_app_docs_run_as_written(app_url, photo, capsys, doc, section, printed):
    (example,) = examples(doc, section)
    assert DOC_URL in example
    code = example.replace(DOC_URL, app_url)  # the one change: where the app listens
    exec(compile(code, f"docs/{doc}, {section}", "exec"), {"__name__": "__main__"})
    assert printed in capsys.readouterr().out


def test_mcp_tools_segment_and_attend_by_handle_and_refuse_plainly(app_url, photo):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    image = "data:image/jpeg;base64," + base64.b64encode(photo.read_bytes()).decode()

    async def calls() -> tuple:
        async with streamablehttp_client(app_url + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as mcp:
                await mcp.initialize()
                tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
                segmented = await mcp.call_tool("segment", {"image": image})
                handle = ast.literal_eval(segmented.content[-1].text)["handle"]
                where = await mcp.call_tool("attention", {"x": 300, "y": 200, "handle": handle})
                outside = await mcp.call_tool("attention", {"x": 700, "y": 5, "handle": handle})
                no_handle = await mcp.call_tool("attention", {"x": 3, "y": 4})
                return tools, segmented, where, outside, no_handle

    tools, segmented, where, outside, no_handle = asyncio.run(calls())
    api = {"segment", "attention", "anchor", "set_sampling", "reset_sampling", "export", "checkpoints",
           "model_card", "upload_checkpoint", "class_context", "nb_compare", "nb_compare_split"}  # fmt: skip
    assert api <= set(tools) and "partial" not in tools
    schema = tools["attention"].inputSchema
    assert (
        schema["required"] == ["x", "y"]
        and "a result of /segment" in schema["properties"]["handle"]["description"]
    )
    assert [content.type for content in segmented.content] == ["image", "text", "text"]
    summary = ast.literal_eval(segmented.content[-1].text)
    assert summary["size"] == list(PHOTO_WH) and summary["checkpoint"] == TINY_NAME
    assert not where.isError and [content.type for content in where.content] == ["image", "text", "text"]
    attention = ast.literal_eval(where.content[-1].text)
    assert attention["handle"] == summary["handle"] and attention["S"] == 110 and attention["block"] == "apnb"
    assert outside.isError and "outside the 640x400 image" in outside.content[0].text
    assert no_handle.isError and "Segment an image first" in no_handle.content[0].text  # no session over MCP


def test_a_refused_input_is_one_log_line_and_a_fault_a_traceback(app_url, photo, caplog, capfd, monkeypatch):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    import app.plots

    client = Client(app_url, verbose=False)
    client.predict(handle_file(str(photo)), api_name="/segment")
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="app"), pytest.raises(AppError, match="outside"):
        client.predict(700, 5, api_name="/attention")
    assert [record.getMessage() for record in caplog.records if record.name == "app"] == [
        "refused: point (x=700.0, y=5.0) is outside the 640x400 image (x in 0..639, y in 0..399)"
    ]
    assert "Traceback" not in capfd.readouterr().err

    def fault(*args, **kwargs):
        raise RuntimeError("a real fault")

    monkeypatch.setattr(app.plots, "render", fault)
    with pytest.raises(AppError):
        client.predict(handle_file(str(photo)), api_name="/segment")
    err = capfd.readouterr().err
    assert "Traceback" in err and "RuntimeError: a real fault" in err

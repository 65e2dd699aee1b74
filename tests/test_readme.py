"""The README's runnable example (using APNB and AFNB in your own network) runs as written."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parent.parent / "README.md"


def section_code(heading: str) -> str:
    text = README.read_text()
    section = text.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_blocks_example_runs_with_the_shapes_it_states():
    namespace: dict = {}
    exec(section_code("### Use APNB and AFNB in your own network"), namespace)  # noqa: S102
    assert namespace["y"].shape == (2, 512, 64, 128)
    assert namespace["weights"].shape == (2, 8192, 110)
    assert torch.allclose(namespace["weights"].sum(-1), torch.ones(2, 8192))
    assert namespace["fused"].shape == (2, 2048, 64, 128)
    assert namespace["nb"].attention.sampler.config.method == "identity"

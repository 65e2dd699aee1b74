"""Untrusted checkpoints (issue 7): pickles that would run code are refused on every path (converter
CLI, the app's file loading, the upload endpoint); damaged or mismatched safetensors files get an
error naming the file and the problem; the hash of what was loaded is shown and exported.

Complements tests/test_checkpoint.py (half-truncated file, missing+extra tensors, a config of other
widths, a pickle named .safetensors) and tests/test_convert.py (read_original refusals)."""

import json
import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

import ann
from ann.checkpoint import CheckpointError, CheckpointMeta, file_sha256
from ann.cli import convert
from ann.conversion import ConvertError
from tests import conftest_app
from tests.conftest_app import TINY_NAME, street_image, tiny_config

app_client, tiny_store = conftest_app.app_client, conftest_app.tiny_store  # the launched app


class RunsCode:
    """Unpickling this creates a folder: the proof that code ran."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def exploits(folder) -> dict:
    """name -> writer(path) of files that run code when unpickled by torch.load(weights_only=False)."""
    marker = folder / "code_ran"
    state = {"cls.weight": torch.zeros(1)}
    return {
        "zip_reduce.pth": lambda p: torch.save({"state_dict": state, "x": RunsCode(marker)}, p),
        "legacy_reduce.pth": lambda p: torch.save(
            {"state_dict": RunsCode(marker)}, p, _use_new_zipfile_serialization=False
        ),
        "raw_pickle.pt": lambda p: p.write_bytes(pickle.dumps({"state_dict": RunsCode(marker)})),
        "module.pth": lambda p: torch.save(torch.nn.Linear(2, 2), p),  # a whole nn.Module
    }


def tiny_checkpoint(path, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = ann.build_network(ann.variant("full", **{**tiny_config().to_dict(), **overrides}))
    return ann.save(model, path, CheckpointMeta(model.config, provenance={"note": "test"}))


def model_card(outputs) -> str:
    """The model card among an endpoint's outputs (the Markdown that lists the sha256)."""
    return next(o for o in outputs if isinstance(o, str) and "sha256" in o)


# ---- pickles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["zip_reduce.pth", "legacy_reduce.pth", "raw_pickle.pt", "module.pth"])
def test_converter_cli_refuses_pickles_that_run_code(tmp_path, name, capsys):
    exploits(tmp_path)[name](tmp_path / name)
    out = tmp_path / "out.safetensors"
    with pytest.raises(SystemExit, match=f"error: .*{name}: (refused|not a readable torch checkpoint)"):
        convert.main(["--from", "original", str(tmp_path / name), "--out", str(out)])
    assert not (tmp_path / "code_ran").exists() and not out.exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_app_file_loading_refuses_a_pickle_that_runs_code(tmp_path, tiny_store):
    exploits(tmp_path)["zip_reduce.pth"](tmp_path / "evil.pth")
    with pytest.raises(ValueError, match=r"evil\.pth: refused: .*would run code"):
        tiny_store.add_file(tmp_path / "evil.pth")
    assert not (tmp_path / "code_ran").exists()


def test_upload_endpoint_refuses_a_pickle_and_keeps_serving(tmp_path, app_client):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client, _ = app_client
    exploits(tmp_path)["zip_reduce.pth"](tmp_path / "evil.pth")
    with pytest.raises(AppError, match=r"evil\.pth: refused"):
        client.predict(handle_file(str(tmp_path / "evil.pth")), api_name="/upload_checkpoint")
    assert not (tmp_path / "code_ran").exists()
    assert "sha256" in client.predict(TINY_NAME, api_name="/model_card")


def test_truncated_pth_is_named(tmp_path):
    torch.save({"state_dict": {"cls.weight": torch.zeros(4, 4)}}, tmp_path / "cut.pth")
    data = (tmp_path / "cut.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConvertError, match=r"cut\.pth: not a readable torch checkpoint"):
        convert.convert(tmp_path / "cut.pth", tmp_path / "out.safetensors")


# ---- damaged or mismatched safetensors ---------------------------------------------------------


def header_length(path) -> int:
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


@pytest.mark.parametrize(
    "cut",
    [
        lambda n, h: 0,
        lambda n, h: 4,
        lambda n, h: 8,
        lambda n, h: 8 + h // 2,
        lambda n, h: 8 + h,
        lambda n, h: n - 1,
    ],
    ids=["empty", "inside the length", "length only", "inside the header", "header only", "one byte short"],
)
def test_truncated_safetensors_anywhere_is_named(tmp_path, cut):
    path = tiny_checkpoint(tmp_path / "cut.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: cut(len(data), header_length(path))])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: (not a readable|truncated or corrupt)"):
        ann.load(path)


def test_absurd_header_length_is_refused_without_allocating(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(CheckpointError, match=r"huge\.safetensors: not a readable safetensors file"):
        ann.load(path)


def rewritten(tmp_path, metadata_changes: dict, tensor_changes=None):
    """The tiny checkpoint with edited metadata or tensors, as a new file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    source = tiny_checkpoint(tmp_path / "source.safetensors")
    with safe_open(str(source), "pt") as f:
        metadata = {**f.metadata(), **metadata_changes}
    tensors = load_file(str(source))
    (tensor_changes or (lambda t: None))(tensors)
    save_file(tensors, str(tmp_path / "edited.safetensors"), metadata=metadata)
    return tmp_path / "edited.safetensors"


def config_with(**changes) -> str:
    return json.dumps({**tiny_config().to_dict(), **changes})


@pytest.mark.parametrize(
    "metadata, message",
    [
        (
            {
                "config": config_with(num_classes=5),
                "classes": json.dumps(["c"] * 5),
                "palette": json.dumps([[0, 0, 0]] * 5),
            },
            r"shape mismatch classifier",
        ),
        ({"config": config_with(fusion="none")}, r"unexpected tensors fusion\."),
        ({"config": config_with(context="none")}, r"unexpected tensors .*context\."),
        ({"config": config_with(backbone="resnet34")}, r"missing tensors backbone\.layer"),
        ({"config": config_with(fusion="bogus")}, r"bad metadata.*bogus"),
        ({"config": "{not json"}, r"bad metadata"),
        ({"classes": json.dumps(["road"])}, r"1 class names for 19 classes"),
    ],
    ids=[
        "classes",
        "no-fusion",
        "no-context",
        "deeper-backbone",
        "unknown-fusion",
        "broken-json",
        "class-names",
    ],
)
def test_config_that_does_not_match_its_tensors_is_named(tmp_path, metadata, message):
    with pytest.raises(CheckpointError, match=r"edited\.safetensors: .*" + message):
        ann.load(rewritten(tmp_path, metadata))


def test_only_missing_or_only_extra_tensors_are_named(tmp_path):
    missing = rewritten(tmp_path, {}, lambda t: t.pop("context.attention.W.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensors context\.attention\.W\.weight$"):
        ann.load(missing)
    extra = rewritten(tmp_path, {}, lambda t: t.update(injected=torch.zeros(3)))
    with pytest.raises(CheckpointError, match=r"unexpected tensors injected$"):
        ann.load(extra)


# ---- through the app: names, hashes --------------------------------------------------------------


def test_upload_of_a_damaged_safetensors_is_named(tmp_path, app_client):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client, _ = app_client
    path = tiny_checkpoint(tmp_path / "damaged.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(AppError, match=r"damaged\.safetensors: (not a readable|truncated or corrupt)"):
        client.predict(handle_file(str(path)), api_name="/upload_checkpoint")


def test_refused_upload_is_not_listed(tmp_path, tiny_store):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"junk")
    with pytest.raises(CheckpointError):
        tiny_store.add_file(path)
    assert not any("junk" in name for name in tiny_store.names())


def test_second_upload_with_the_same_name_is_the_new_model(tmp_path, tiny_store):
    first = tiny_checkpoint((tmp_path / "a").mkdir() or tmp_path / "a" / "same.safetensors", seed=1)
    second = tiny_checkpoint((tmp_path / "b").mkdir() or tmp_path / "b" / "same.safetensors", seed=2)
    assert tiny_store.model(tiny_store.add_file(first)).meta.sha256 == file_sha256(first)
    assert tiny_store.model(tiny_store.add_file(second)).meta.sha256 == file_sha256(second)


def test_uploaded_checkpoint_hash_is_shown_and_exported(tmp_path, app_client):
    from gradio_client import handle_file

    client, _ = app_client
    path = tiny_checkpoint(tmp_path / "mine.safetensors", seed=3)
    sha = file_sha256(path)
    card = model_card(client.predict(handle_file(str(path)), api_name="/upload_checkpoint"))
    assert f"sha256: `{sha}`" in card
    image = handle_file(str(street_image(tmp_path / "s.png")))
    _, summary = client.predict(image, checkpoint="mine.safetensors (uploaded)", api_name="/segment")
    files = {os.path.basename(p): p for p in client.predict(summary["handle"], api_name="/export")}
    settings = json.loads(open(files["settings.json"]).read())
    assert settings["checkpoint_sha256"] == sha and settings["checkpoint"] == "mine.safetensors (uploaded)"

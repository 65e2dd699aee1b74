"""The safetensors checkpoint format: exact round trip, metadata, and refusals that name the problem."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

import ann
from ann.checkpoint import CheckpointError, CheckpointMeta, file_sha256, read_meta

SMALL = dict(
    backbone="resnet18", num_classes=3, head_channels=8, key_channels=4, value_channels=4, aux_channels=4
)
CLASSES = ["road", "car", "sky"]
PALETTE = [[128, 64, 128], [0, 0, 142], [70, 130, 180]]


def trained_like(**overrides) -> ann.models.ANN:
    torch.manual_seed(0)
    model = ann.build_network(ann.variant("full", **{**SMALL, **overrides}))
    for p in model.parameters():
        p.data.normal_(0, 0.1)  # non-zero W, so the attention branches matter
    return model.eval()


def meta(model) -> CheckpointMeta:
    return CheckpointMeta(model.config, CLASSES, PALETTE, provenance={"command": "pytest", "iterations": 3})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_round_trip_is_exact(tmp_path, dtype):
    model = trained_like(sampling=ann.SamplingConfig("pyramid_max", (1, 2, 3, 6)))
    path = ann.save(model, tmp_path / "m.safetensors", meta(model), dtype=dtype)
    loaded = ann.load(path)
    assert not loaded.training and loaded.config == model.config
    expected = {
        k: (v.to(dtype).float() if v.is_floating_point() else v) for k, v in model.state_dict().items()
    }
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in expected.items())
    if dtype == torch.float32:
        x = torch.randn(1, 3, 32, 32)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
    assert loaded.meta.classes == CLASSES and loaded.meta.provenance["iterations"] == 3
    assert len(loaded.meta.sha256) == 64
    assert not list(tmp_path.glob("*.tmp"))


def test_fp16_file_is_about_half_the_size(tmp_path):
    model = trained_like()
    a = ann.save(model, tmp_path / "a.safetensors", meta(model), dtype=torch.float32).stat().st_size
    b = ann.save(model, tmp_path / "b.safetensors", meta(model), dtype=torch.float16).stat().st_size
    assert b < 0.55 * a


def test_same_model_and_metadata_give_the_same_file(tmp_path):
    # safetensors orders its metadata by a per-map random hash: six saves were six sha256s
    model = trained_like()
    paths = [ann.save(model, tmp_path / f"m{i}.safetensors", meta(model), torch.float32) for i in range(6)]
    assert len({file_sha256(path) for path in paths}) == 1
    loaded = ann.load(paths[0])
    assert loaded.meta.classes == meta(model).classes
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name])


def test_metadata_readable_without_tensors(tmp_path):
    model = trained_like()
    path = ann.save(model, tmp_path / "m.safetensors", meta(model))
    info = read_meta(path)
    assert info.config.fusion == "afnb" and info.palette == PALETTE
    assert info.normalization["channel_order"] == "RGB"


def test_mismatched_class_names_refused(tmp_path):
    model = trained_like()
    with pytest.raises(CheckpointError, match="2 class names"):
        ann.save(model, tmp_path / "m.safetensors", CheckpointMeta(model.config, CLASSES[:2], PALETTE[:2]))


def rewrite(tmp_path, model, tensors, metadata=None):
    path = tmp_path / "edited.safetensors"
    save_file(tensors, str(path), metadata=metadata or meta(model).to_metadata())
    return path


def test_missing_and_extra_tensors_are_named(tmp_path):
    model = trained_like()
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    del tensors["classifier.weight"]
    tensors["extra.weight"] = torch.zeros(2)
    with pytest.raises(
        CheckpointError, match=r"missing tensors classifier\.weight.*unexpected tensors extra\.weight"
    ):
        ann.load(rewrite(tmp_path, model, tensors))


def test_config_that_does_not_match_tensors_is_refused(tmp_path):
    model = trained_like()
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    other = ann.variant("full", **{**SMALL, "head_channels": 16})
    metadata = {**meta(model).to_metadata(), "config": json.dumps(other.to_dict())}
    with pytest.raises(CheckpointError, match="shape mismatch bottleneck.0.weight"):
        ann.load(rewrite(tmp_path, model, tensors, metadata))


def test_truncated_file_is_refused(tmp_path):
    model = trained_like()
    path = ann.save(model, tmp_path / "m.safetensors", meta(model))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="m.safetensors"):
        ann.load(path)


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_is_never_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"state_dict": Exploit()}))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        ann.load(path)
    assert "must never run" not in capsys.readouterr().out


def test_foreign_safetensors_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="format"):
        ann.load(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ann.load(tmp_path / "absent.safetensors")


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    import errno

    import ann.checkpoint

    def full_disk(tensors, filename, metadata=None):
        open(filename, "wb").write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    model = trained_like()
    monkeypatch.setattr(ann.checkpoint, "write_safetensors", full_disk)
    with pytest.raises(CheckpointError, match="No space left"):
        ann.save(model, tmp_path / "m.safetensors", meta(model))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "palette", [PALETTE[:2], [[128, 64], [0, 0, 142], [70, 130, 180]], [[128, 64, 300], *PALETTE[1:]]]
)
def test_a_palette_that_does_not_colour_every_class_is_refused(tmp_path, palette):
    """Overlays index the palette by class id: a short or malformed one would fail mid-run."""
    model = trained_like()
    metadata = dict(meta(model).to_metadata(), palette=json.dumps(palette))
    path = rewrite(tmp_path, model, {k: v.contiguous() for k, v in model.state_dict().items()}, metadata)
    with pytest.raises(CheckpointError, match="palette must hold 3"):
        ann.load(path)


def test_integer_buffers_stay_exact_in_an_fp16_file(tmp_path):
    """Only floating tensors are cast: BN's num_batches_tracked (a 60k-iteration count) overflows
    fp16 (max 65504), so it must be stored as int64 and come back unchanged."""
    model = trained_like()
    for name, buffer in model.named_buffers():
        if name.endswith("num_batches_tracked"):
            buffer.fill_(120_001)
    path = ann.save(model, tmp_path / "m.safetensors", meta(model), dtype=torch.float16)
    with open(path, "rb") as f:  # the safetensors header lists each tensor's dtype
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    assert {v["dtype"] for k, v in header.items() if k.endswith("num_batches_tracked")} == {"I64"}
    loaded = ann.load(path).state_dict()
    assert all(loaded[k].item() == 120_001 for k in loaded if k.endswith("num_batches_tracked"))


def test_the_file_records_the_models_config_not_the_metas(tmp_path):
    """A meta built for another config (a stale one, say) must not describe these tensors."""
    model = trained_like()
    other = ann.variant("full", **{**SMALL, "head_channels": 16})
    path = ann.save(model, tmp_path / "m.safetensors", CheckpointMeta(other, CLASSES, PALETTE))
    assert read_meta(path).config == model.config
    assert ann.load(path).config.head_channels == 8


def test_loading_never_fetches_imagenet_weights(tmp_path, monkeypatch):
    """A checkpoint of a network trained from ImageNet weights holds all its weights; loading
    must not read (or need) the ImageNet file, which would be slow and may be absent."""
    from dataclasses import replace

    import ann.models.efficientnet

    model = trained_like(backbone="efficientnet_lite0")
    model.config = replace(model.config, pretrained=True)

    def refuse(*args, **kwargs):
        raise AssertionError("ann.load fetched ImageNet weights")

    monkeypatch.setattr(ann.models.efficientnet, "load_imagenet_weights", refuse)
    path = ann.save(model, tmp_path / "m.safetensors", meta(model), dtype=torch.float32)
    loaded = ann.load(path)
    assert torch.equal(loaded.state_dict()["classifier.weight"], model.state_dict()["classifier.weight"])

"""ann.convert on a random checkpoint with every name and shape of the authors' release.

The original forward is re-written here in plain functional ops over *their* names (openseg's
ANN as ANN-REFERENCE.md describes it), independently of ann.models, and compared with our
network holding the converted weights, in float64.
"""

import argparse
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ann
from ann.checkpoint import file_sha256, read_meta
from ann.cli.convert import main
from ann.conversion import ORIGINAL_NORMALIZATION, ConvertError, convert_state, read_original, rename
from ann.data.labels import CITYSCAPES_CLASSES

# The names and shapes of the authors' released Cityscapes ResNet-101 checkpoint (704 entries),
# copied from the project's reference notes so that CI's clean clone has it too.
TSV = Path(__file__).resolve().parent / "fixtures" / "ann_original_r101_keys.tsv"


@pytest.fixture(scope="module")
def entries() -> list[tuple[str, tuple[int, ...]]]:
    rows = [line.split("\t") for line in TSV.read_text().splitlines() if line.strip()]
    return [(name, tuple(int(d) for d in shape.strip("()").split(",") if d.strip())) for name, shape in rows]


@pytest.fixture(scope="module")
def original(entries) -> dict[str, torch.Tensor]:
    """Random tensors of the released shapes, scaled so a forward stays finite; f_query is f_key."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in entries:
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(60000)
        elif name.endswith("running_var") or (name.endswith(".weight") and len(shape) == 1):
            state[name] = 0.5 + torch.rand(shape, generator=generator)  # BN scale, variance
        elif len(shape) == 4:
            fan_in = math.prod(shape[1:])
            state[name] = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
        else:
            state[name] = 0.1 * torch.randn(shape, generator=generator)  # biases, means
    for name in list(state):
        if name.startswith("context.2.stages.0.f_query."):  # one module registered twice
            state[name] = state[name.replace("f_query", "f_key")]
    return state


@pytest.fixture(scope="module")
def converted(original, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("convert")
    source = folder / "ann_cityscapes_r101.pth"
    wrapped = {k if i % 2 else "module." + k: v for i, (k, v) in enumerate(original.items())}
    runner_state = {"iters": 60000, "max_performance": 0.799}
    torch.save({"config_dict": {"network": {"model_name": "asymmetric_non_local_net"}},
                "state_dict": wrapped, "runner_state": runner_state}, source)  # fmt: skip
    out = folder / "ann.safetensors"
    main(["--from", "original", str(source), "--out", str(out)])
    # the 0.25 GB source goes once its hash is kept: the test run's peak disk use
    source.with_name(source.name + ".sha256").write_text(file_sha256(source))
    source.unlink()
    return out


@pytest.fixture(scope="module")
def model(converted):
    return ann.load(converted)


def test_every_entry_lands_where_the_table_says(original, model, entries):
    ours = model.state_dict()
    used = set()
    for name, shape in entries:
        target = rename(name)
        if target is None:  # the shared APNB query/key, kept once as context.attention.key
            continue
        assert tuple(ours[target].shape) == shape, name
        assert torch.equal(ours[target], original[name].to(ours[target].dtype)), name
        used.add(target)
    assert used == set(ours)  # nothing of ours is left at its initial value


def test_metadata_records_their_input_convention(converted):
    meta = read_meta(converted)
    assert meta.normalization == ORIGINAL_NORMALIZATION
    assert meta.config.align_corners and meta.config.stem == "deep" and meta.config.output_stride == 8
    assert (meta.config.backbone, meta.config.fusion, meta.config.context) == ("resnet101", "afnb", "apnb")
    assert meta.classes == list(CITYSCAPES_CLASSES)
    source = converted.with_name("ann_cityscapes_r101.pth")
    assert meta.provenance["source"] == source.name
    assert meta.provenance["source_sha256"] == source.with_name(source.name + ".sha256").read_text()
    assert meta.provenance["runner_state"]["iters"] == 60000
    with open(converted, "rb") as f:  # fp32 by default: the safetensors header lists dtypes
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"F32", "I64"}


# ---- the original network, functionally, over their names ----------------------------------


def conv(x, sd, prefix, stride=1, padding=0, dilation=1):
    return F.conv2d(x, sd[prefix + "weight"], sd.get(prefix + "bias"), stride, padding, dilation)


def bn(x, sd, prefix):
    return F.batch_norm(x, sd[prefix + "running_mean"], sd[prefix + "running_var"],
                        sd[prefix + "weight"], sd[prefix + "bias"], False, 0.0, 1e-5)  # fmt: skip


def psp(x):
    """Their PSPModule for keys/values: adaptive average pools (1, 3, 6, 8), concatenated."""
    return torch.cat([F.adaptive_avg_pool2d(x, n).flatten(2) for n in (1, 3, 6, 8)], dim=-1)


def their_attention(sd, prefix, high, low):
    """_SelfAttentionBlock / AFNB stage: query from high, pooled key and value from low."""
    B, _, H, W = high.shape
    query = F.relu(bn(conv(high, sd, prefix + "f_query.0."), sd, prefix + "f_query.1.0."))
    key = psp(F.relu(bn(conv(low, sd, prefix + "f_key.0."), sd, prefix + "f_key.1.0.")))
    value = psp(conv(low, sd, prefix + "f_value.")).permute(0, 2, 1)
    query = query.view(B, query.shape[1], -1).permute(0, 2, 1)
    sim = torch.softmax(torch.matmul(query, key) * query.shape[-1] ** -0.5, dim=-1)
    context = torch.matmul(sim, value).permute(0, 2, 1).reshape(B, -1, H, W)
    return conv(context, sd, prefix + "W.")


def their_head(sd, stage4, stage5):
    """fusion (AFNB) -> context (3x3 conv, BNReLU, APNB) -> cls; dsn on Stage4."""
    aux = conv(F.relu(bn(conv(stage4, sd, "dsn.0.", padding=1), sd, "dsn.1.0.")), sd, "dsn.3.")
    context = their_attention(sd, "fusion.stages.0.", stage5, stage4)
    x = torch.cat([context, stage5], 1)
    x = bn(conv(x, sd, "fusion.conv_bn_dropout.0."), sd, "fusion.conv_bn_dropout.1.")  # no ReLU
    x = F.relu(bn(conv(x, sd, "context.0.", padding=1), sd, "context.1.0."))
    context = their_attention(sd, "context.2.stages.0.", x, x)
    x = torch.cat([context, x], 1)
    x = F.relu(bn(conv(x, sd, "context.2.conv_bn_dropout.0."), sd, "context.2.conv_bn_dropout.1.0."))
    return conv(x, sd, "cls."), aux


def their_backbone(sd, x):
    """Deep stem + dilated ResNet-101 (layer3 dilation 2, layer4 4, first block half)."""
    for i in "123":
        x = F.relu(
            bn(
                conv(x, sd, f"backbone.prefix.conv{i}.", 2 if i == "1" else 1, 1),
                sd,
                f"backbone.prefix.bn{i}.",
            )
        )
    x = F.max_pool2d(x, 3, 2, 1, ceil_mode=True)
    stages = []
    for layer, blocks, stride, dilation in ((1, 3, 1, 1), (2, 4, 2, 1), (3, 23, 1, 2), (4, 3, 1, 4)):
        for b in range(blocks):
            p = f"backbone.layer{layer}.{b}."
            s, d = (stride, max(1, dilation // 2)) if b == 0 else (1, dilation)
            out = F.relu(bn(conv(x, sd, p + "conv1."), sd, p + "bn1."))
            out = F.relu(bn(conv(out, sd, p + "conv2.", s, d, d), sd, p + "bn2."))
            out = bn(conv(out, sd, p + "conv3."), sd, p + "bn3.")
            down = p + "downsample.0.weight" in sd
            identity = bn(conv(x, sd, p + "downsample.0.", s), sd, p + "downsample.1.") if down else x
            x = F.relu(out + identity)
        stages.append(x)
    return stages  # layer1..layer4


@pytest.fixture(scope="module")
def original64(original):
    return {k: v.double() if v.is_floating_point() else v for k, v in original.items()}


def test_head_computes_the_original_function(original64, model):
    generator = torch.Generator().manual_seed(1)
    stage4 = torch.randn(1, 1024, 9, 11, generator=generator, dtype=torch.float64)
    stage5 = torch.randn(1, 2048, 9, 11, generator=generator, dtype=torch.float64)
    logits, aux = their_head(original64, stage4, stage5)
    with torch.no_grad():
        out = model.double().head([None, None, None, stage4, stage5])
    torch.testing.assert_close(out.logits, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.aux, aux, rtol=1e-5, atol=1e-5)


def test_network_computes_the_original_function(original64, model):
    """End to end on a BGR-mean-subtracted image: backbone, head, align_corners upsampling."""
    generator = torch.Generator().manual_seed(2)
    bgr = torch.randint(0, 256, (1, 3, 41, 57), generator=generator).double()
    x = bgr - torch.tensor(ORIGINAL_NORMALIZATION["mean"], dtype=torch.float64).view(1, 3, 1, 1)
    stages = their_backbone(original64, x)
    logits, aux = their_head(original64, stages[2], stages[3])
    logits = F.interpolate(logits, size=(41, 57), mode="bilinear", align_corners=True)
    aux = F.interpolate(aux, size=(41, 57), mode="bilinear", align_corners=True)
    with torch.no_grad():
        ours, ours_aux = model.double()(x, with_aux=True)
    torch.testing.assert_close(ours, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours_aux, aux, rtol=1e-5, atol=1e-5)


# ---- refusals --------------------------------------------------------------------------------


def test_missing_entry_is_named(original):
    state = {k: v for k, v in original.items() if k != "fusion.stages.0.W.weight"}
    with pytest.raises(ConvertError, match=r"missing 1 entries: fusion\.stages\.0\.W\.weight"):
        convert_state(state, "their.pth")


def test_unexpected_and_misshaped_entries_are_named(original):
    state = dict(original, **{"head.extra.weight": torch.zeros(3), "dsn.3.bias": torch.zeros(20)})
    with pytest.raises(ConvertError) as error:
        convert_state(state, "their.pth")
    assert "unexpected 1 entries: head.extra.weight" in str(error.value)
    assert "mis-shaped 1 entries: dsn.3.bias (20,) != (19,)" in str(error.value)


def test_shared_query_key_must_be_identical(original):
    name = "context.2.stages.0.f_query.0.bias"
    state = dict(original, **{name: original[name] + 1})
    with pytest.raises(ConvertError, match="f_query.0.bias differs from .*f_key.0.bias"):
        convert_state(state, "their.pth")


def test_bare_state_dict_and_module_prefix(tmp_path):
    path = tmp_path / "bare.pth"
    torch.save({"module.cls.weight": torch.ones(19, 512, 1, 1), "cls.bias": torch.ones(19)}, path)
    state, runner_state = read_original(path)
    assert sorted(state) == ["cls.bias", "cls.weight"] and runner_state == {}
    with pytest.raises(ConvertError, match=r"missing \d+ entries: backbone\.layer1\.0\.bn1\.bias"):
        convert_state(state, str(path))


class RunsCode:
    """A pickle that would create a folder when unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (str(self.marker),)


def test_refuses_a_pickle_that_runs_code(tmp_path):
    path, marker = tmp_path / "evil.pth", tmp_path / "was_run"
    torch.save({"state_dict": {"cls.weight": torch.zeros(1)}, "hook": RunsCode(marker)}, path)
    with pytest.raises(ConvertError, match=r"evil\.pth: refused: torch\.load\(weights_only=True\)"):
        read_original(path)
    assert not marker.exists()


def test_refuses_files_that_are_not_checkpoints(tmp_path):
    junk = tmp_path / "junk.pth"
    for text in (b"not a checkpoint", b"junk\n", b"hello world, some notes\n"):  # the last two: KeyError
        junk.write_bytes(text)
        with pytest.raises(ConvertError, match="junk.pth: not a readable torch checkpoint"):
            read_original(junk)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(ConvertError, match="list.pth: expected a state dict"):
        read_original(listed)
    with pytest.raises(ConvertError, match="missing.pth: no such file"):
        read_original(tmp_path / "missing.pth")


def test_one_of_our_safetensors_files_is_named_as_such(converted, tmp_path):
    with pytest.raises(ConvertError, match="a safetensors file, not the authors' .pth; .* ann.load reads it"):
        read_original(converted)


@pytest.mark.parametrize("numpy_module", [b"numpy.core.multiarray", b"numpy._core.multiarray"])
def test_numpy_scalars_in_runner_state_are_read(tmp_path, numpy_module):
    """Their trainer keeps its mIoU as a numpy scalar; files from numpy 1.x spell its module
    numpy.core (as the 2019 release), from 2.x numpy._core. Legacy (non-zip) format, as torch 1.x wrote."""
    buffer = io.BytesIO()
    runner_state = {"iters": np.int64(60000), "max_performance": np.float64(0.799)}
    torch.save({"state_dict": {"cls.weight": torch.ones(19, 512, 1, 1)}, "runner_state": runner_state},
               buffer, _use_new_zipfile_serialization=False)  # fmt: skip
    path = tmp_path / "their.pth"
    path.write_bytes(buffer.getvalue().replace(b"numpy._core.multiarray\nscalar", numpy_module + b"\nscalar"))
    state, read = read_original(path)
    assert list(state) == ["cls.weight"] and read == {"iters": 60000, "max_performance": 0.799}


def test_runner_state_with_numpy_scalars_reaches_the_provenance(original, tmp_path):
    source = tmp_path / "their.pth"
    runner_state = {"iters": np.int64(60000), "max_performance": np.float64(0.799), "val_loss": 0.2}
    # fp16 in and out: 0.25 GB on disk beside the module's converted model, not 0.5 (the run's peak)
    half = {k: v.half() if v.is_floating_point() else v for k, v in original.items()}
    torch.save({"state_dict": half, "runner_state": runner_state}, source)
    out = tmp_path / "ann.safetensors"
    main(["--from", "original", str(source), "--out", str(out), "--dtype", "fp16"])
    provenance = read_meta(out).provenance
    assert provenance["runner_state"] == {"iters": 60000, "max_performance": 0.799, "val_loss": 0.2}


def test_refusal_does_not_advise_turning_weights_only_off(tmp_path):
    path = tmp_path / "custom.pth"
    torch.save({"state_dict": {"cls.weight": torch.zeros(1)}, "args": argparse.Namespace(lr=0.01)}, path)
    with pytest.raises(ConvertError, match="refused") as error:
        read_original(path)
    assert "argparse.Namespace" in str(error.value) and "weights_only` set to `False`" not in str(error.value)


def test_out_equal_to_the_source_is_refused(original, tmp_path):
    source = tmp_path / "their.pth"
    torch.save({"state_dict": original}, source)
    before = file_sha256(source)
    with pytest.raises(SystemExit, match="--out is the source file"):
        main(["--from", "original", str(source), "--out", str(tmp_path / "." / "their.pth")])
    assert file_sha256(source) == before


def test_library_convert_writes_fp32_by_default(original, tmp_path, monkeypatch):
    """`convert` called from Python, like the CLI, keeps fp32 unless asked: the released fp32
    weights are what the check against the original function holds for."""
    from ann import conversion

    source = tmp_path / "their.pth"
    source.write_bytes(b"stands in for the .pth; read_original is replaced below")
    written = {}
    monkeypatch.setattr(conversion, "read_original", lambda path: (original, {}))
    monkeypatch.setattr(
        conversion, "save", lambda model, out, meta, dtype: written.setdefault("dtype", dtype)
    )
    conversion.convert(source, tmp_path / "ann.safetensors")
    assert written == {"dtype": torch.float32}


@pytest.mark.parametrize(
    ("num_classes", "first", "colour"),
    [(19, "road", [128, 64, 128]), (150, "wall", [120, 120, 120]), (60, "background", [0, 0, 0]),
     (59, "aeroplane", [128, 0, 0]), (171, "person", [128, 0, 0]), (40, "wall", [128, 0, 0])],
)  # fmt: skip
def test_a_class_count_names_its_dataset(num_classes, first, colour):
    """Weights trained on ADE20K (150 classes) should come out with ADE20K's names and colours, not
    'class 0..149': every dataset of the paper has a class count of its own."""
    from ann.conversion import class_names

    names, palette = class_names(num_classes)
    assert (len(names), len(palette)) == (num_classes, num_classes)
    assert (names[0], palette[0]) == (first, colour)


def test_an_unknown_class_count_gets_numbered_names_and_stable_colours():
    from ann.conversion import class_names

    names, palette = class_names(7)
    assert names == [f"class {i}" for i in range(7)] and palette == class_names(7)[1]
    assert all(0 <= v <= 255 for c in palette for v in c) and len(palette) == 7

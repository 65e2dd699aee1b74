"""Run configs: every bundled config loads, the paper's recipe is what ANN-REFERENCE.md says,
and `--set section.field=value` overrides are type-checked against the dataclasses."""

import tomllib

import pytest

from ann.training.config import ConfigError, config_path, list_configs, load_config, parse_override, to_toml


@pytest.mark.parametrize("name", list_configs())
def test_bundled_config_loads_and_round_trips(name, tmp_path):
    config = load_config(name)
    assert config.name == name and config.description
    saved = tmp_path / "config.toml"
    saved.write_text(to_toml(config))
    assert load_config(str(saved)) == config


def test_expected_configs_are_bundled():
    names = set(list_configs())
    paper = {"smoke", "cityscapes_r101", "ade20k_r101", "pascal_context_r101"}
    shipped = {"ann-r18-synthcity", "fcn-r18-synthcity", "apnb-r18-synthcity", "nb-r18-synthcity"}
    assert paper | shipped | {"ann-effl0-synthcity"} <= names
    assert sum(name.startswith("ann-r18-synthcity-") for name in names) >= 7  # Table 7 rows


def test_cityscapes_recipe_is_the_paper():
    c = load_config("cityscapes_r101")
    assert (c.optim.lr, c.optim.momentum, c.optim.weight_decay, c.optim.poly_power) == (0.01, 0.9, 5e-4, 0.9)
    assert (c.train.batch_size, c.data.crop_size, c.train.iterations) == (8, (769, 769), 60_000)
    assert (c.loss.ohem, c.loss.ohem_threshold, c.loss.ohem_min_kept, c.loss.aux_weight) == (
        True,
        0.7,
        100_000,
        0.4,
    )
    assert (c.model.backbone, c.model.stem, c.model.fusion, c.model.context) == (
        "resnet101",
        "deep",
        "afnb",
        "apnb",
    )
    assert c.model.sampling.sizes == (1, 3, 6, 8) and c.model.sampling.num_anchors == 110
    assert load_config("ade20k_r101").optim.lr == 0.02
    assert load_config("pascal_context_r101").data.crop_size == (480, 480)


def test_table7_single_level_configs_have_225_anchors():
    for method in ("average", "max", "random"):
        sampling = load_config(f"ann-r18-synthcity-{method}-15").model.sampling
        assert (sampling.method, sampling.num_anchors) == (method, 225)


@pytest.mark.parametrize(
    "text, key, value",
    [
        ("optim.lr=0.02", "optim.lr", 0.02),
        ("model.sampling.sizes=1,2,3,6", "model.sampling.sizes", [1, 2, 3, 6]),
        ("model.sampling.sizes=[1, 4]", "model.sampling.sizes", [1, 4]),
        ("model.backbone=resnet18", "model.backbone", "resnet18"),
        ("train.compile=true", "train.compile", True),
        ('data.root="a b"', "data.root", "a b"),
        ("data.crop_size=512,1024", "data.crop_size", [512, 1024]),
    ],
)
def test_parse_override(text, key, value):
    assert parse_override(text) == (key, value)


def test_overrides_are_applied_with_types():
    c = load_config("smoke", ["optim.lr=1", "model.sampling.sizes=1,2,3,6", "train.compile=yes",
                              "model.sampling.method=pyramid_max", "data.crop_size=16,32"])  # fmt: skip
    assert c.optim.lr == 1.0 and isinstance(c.optim.lr, float)
    assert c.model.sampling.sizes == (1, 2, 3, 6) and c.model.sampling.method == "pyramid_max"
    assert c.train.compile is True and c.data.crop_size == (16, 32)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.learning_rate=0.1", "optim has no field 'learning_rate'; valid: lr, momentum"),
        ("optimizer.lr=0.1", "the config has no field 'optimizer'"),
        ("train.iterations=many", "train.iterations: expected int, got 'many'"),
        ("train.iterations=1.5", "train.iterations: expected int"),
        ("data.crop_size=1,2,3", "data.crop_size: expected 2 values"),
        ("optim.lr.x=1", "optim.lr is a value, not a section"),
        ("model.fusion=magic", "unknown fusion 'magic'; valid: none, common, fnb, afnb"),
        ("train.amp=fp8", "train.amp: unknown value 'fp8'; valid: bf16, none"),
        ("optim.lr=-1", "optim.lr must be positive"),
        ("noequals", "section.field=value"),
        # values that crashed the run later with numpy's words ("high - low < 0", "expected non-negative")
        ("data.scale_range=2,0.5", "data.scale_range must be two factors 0 < low <= high"),
        ("data.aspect_range=0,1.1", "data.aspect_range must be two factors 0 < low <= high"),
        ("data.brightness=-10", "data.brightness must be >= 0"),
        ("train.seed=-1", "train.seed must be >= 0"),
        ("data.synthcity_seed=-1", "data.synthcity_seed must be >= 0"),
        # config.toml could not hold them: a resumed run would not read its own config back
        ("optim.lr=nan", "optim.lr: expected a finite number"),
        ("model.dropout=inf", "model.dropout: expected a finite number"),
        # each bound just outside its range: a wrong value is named, not met later as a crash or
        # a silently broken run (momentum 1 never forgets, a negative decay grows the weights)
        ("optim.momentum=1", "need 0 <= momentum < 1"),
        ("optim.weight_decay=-0.1", "weight_decay >= 0"),
        ("loss.ohem_threshold=1.01", "0 < ohem_threshold <= 1"),
        ("loss.ohem_min_kept=-1", "ohem_min_kept >= 0"),
        ("train.val_every=-1", "train.val_every must be >= 0, got -1"),
        ("optim.lr=0", "optim.lr must be positive, got 0.0"),
        ("train.iterations=0", "train.iterations must be positive, got 0"),
        ("data.crop_size=0,32", "data.crop_size must be positive, got (0, 32)"),
        ("data.dataset=cityscapes", "data.root: dataset 'cityscapes' needs a folder"),
        ("=0.1", "section.field=value"),
        # a bool is not a number here, though Python's bool is an int
        ("optim.lr=true", "optim.lr: expected float, got True"),
        ("train.iterations=true", "train.iterations: expected int, got True"),
        # every item of a variable-length tuple is checked (int(1.5) would quietly make it 1)
        ("model.sampling.sizes=1.5,2", "model.sampling.sizes: expected int, got 1.5"),
    ],
)
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ConfigError, match=None) as error:
        load_config("smoke", [override])
    assert message in str(error.value)


@pytest.mark.parametrize("value", ["2024", "1,2", "true", "nan", '"2024"'])
def test_a_text_field_takes_the_text_toml_would_read_as_another_type(value, tmp_path):
    config = load_config("smoke", [f"data.root={value}", f"data.val_split={value}"])
    assert config.data.root == config.data.val_split == value.strip('"')  # e.g. a folder named 2024
    saved = tmp_path / "config.toml"
    saved.write_text(to_toml(config))
    assert load_config(str(saved)) == config


def test_bad_file_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[optim]\nlr = "fast"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: optim.lr: expected float, got 'fast'"):
        load_config(str(path))
    path.write_text("[model\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(str(path))
    path.write_text('name = "x"\n[train]\nepochs = 3\n')
    with pytest.raises(ConfigError, match=r"\[train\] unknown keys \['epochs'\]; valid: iterations"):
        load_config(str(path))


def test_unknown_config_lists_bundled():
    with pytest.raises(ConfigError, match="unknown config 'nope'; bundled: .*smoke"):
        load_config("nope")


@pytest.mark.parametrize("name", list_configs())
def test_bundled_config_lists_every_field(name):
    """A config file reads as the whole recipe: no field is left to a default in the code."""

    def keys(table: dict, prefix: str = "") -> set[str]:
        found = set()
        for key, value in table.items():
            found |= keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
        return found

    written = keys(tomllib.loads(config_path(name).read_text()))
    assert written == keys(tomllib.loads(to_toml(load_config(name))))


@pytest.mark.parametrize("name", list_configs())
def test_bundled_config_predicts_its_datasets_classes(name):
    from ann.data.layouts import LAYOUTS

    config = load_config(name)
    if config.data.dataset == "folder":  # the classes come from the user's classes.txt
        assert config.model.num_classes == 0
    else:
        assert config.model.num_classes == len(LAYOUTS[config.data.dataset].class_names)


def test_a_folder_named_like_a_config_is_not_taken_for_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()  # e.g. a run folder: python -m ann.train smoke --out smoke
    assert config_path("smoke").parent.name == "configs"
    with pytest.raises(ConfigError, match="no such config file"):
        config_path("missing.toml")


def test_values_on_the_edge_of_their_range_are_accepted():
    """The bounds are inclusive where the recipe allows it: OHEM keeping every pixel below
    probability 1, no minimum kept, plain SGD, a fixed scale and aspect, validation only at the end."""
    c = load_config(
        "smoke",
        ["loss.ohem_threshold=1", "loss.ohem_min_kept=0", "optim.momentum=0", "optim.weight_decay=0",
         "data.scale_range=1,1", "data.aspect_range=1,1", "train.val_every=0"],
    )  # fmt: skip
    assert (c.loss.ohem_threshold, c.loss.ohem_min_kept, c.optim.momentum, c.optim.weight_decay) == (
        1,
        0,
        0,
        0,
    )
    assert c.data.scale_range == c.data.aspect_range == (1.0, 1.0) and c.train.val_every == 0


def test_the_unbounded_synthcity_train_split_as_test_split_needs_a_limit_too():
    """SynthCity renders train images without end: a final test on it would never finish."""
    with pytest.raises(ConfigError, match="train split is unbounded: evaluating on it needs data.val_limit"):
        load_config("smoke", ["data.test_split=train", "data.val_limit=0"])
    assert load_config("smoke", ["data.test_split=train", "data.val_limit=2"]).data.test_split == "train"


def test_overrides_with_spaces_around_the_key_and_value():
    """`--set "data.root = 2024"` names the field data.root and the folder 2024, not " 2024"."""
    c = load_config("smoke", ["data.root = 2024", " optim.lr = 0.5 "])
    assert c.data.root == "2024" and c.optim.lr == 0.5


@pytest.mark.parametrize("text, value", [("no", False), ("NO", False), ("Yes", True), ("false", False)])
def test_yes_and_no_are_bools(text, value):
    assert load_config("smoke", [f"train.compile={text}"]).train.compile is value


def test_a_single_pyramid_size_is_a_one_level_pyramid():
    assert load_config("smoke", ["model.sampling.sizes=6"]).model.sampling.sizes == (6,)


def test_a_config_file_without_a_name_is_named_after_the_file(tmp_path):
    path = tmp_path / "my_run.toml"
    path.write_text("[optim]\nlr = 0.5\n")
    config = load_config(str(path))
    assert config.name == "my_run" and config.optim.lr == 0.5

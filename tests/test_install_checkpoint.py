"""scripts/install_checkpoint.py: a finished run into checkpoints/ under the name of what it is."""

import importlib.util
import json
from pathlib import Path

import pytest

from ann import build_network
from ann.checkpoint import CheckpointMeta, save
from tests.conftest_app import tiny_config

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install_checkpoint.py"
spec = importlib.util.spec_from_file_location("install_checkpoint", SCRIPT)
install_checkpoint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_checkpoint)


PROVENANCE = {"device": "cpu (test), 2 threads", "test_metrics": {"miou": 0.5}}


def finished_run(folder: Path, card: bool = True, weights: bool = True) -> Path:
    folder.mkdir()
    if weights:
        model = build_network(tiny_config())
        save(model, folder / "model.safetensors", CheckpointMeta(model.config, provenance=PROVENANCE))
    else:
        (folder / "model.safetensors").write_bytes(b"not safetensors")
    (folder / "training_curve.png").write_bytes(b"png")
    if card:
        (folder / "model_card.md").write_text("# run\n\n![training curve](training_curve.png)\n")
    return folder


def test_the_model_card_and_curve_are_installed_under_the_new_name(tmp_path):
    run = finished_run(tmp_path / "ann-r18-synthcity-cpu")
    into = tmp_path / "checkpoints"
    assert install_checkpoint.main([str(run), "ann-r18-os16-synthcity-512x256", "--into", str(into)]) == 0
    name = "ann-r18-os16-synthcity-512x256"
    assert sorted(p.name for p in into.iterdir()) == [
        f"{name}.json",
        f"{name}.md",
        f"{name}.safetensors",
        f"{name}_curve.png",
    ]
    assert (into / f"{name}.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    assert f"![training curve]({name}_curve.png)" in (into / f"{name}.md").read_text()
    facts = json.loads((into / f"{name}.json").read_text())
    assert facts == {"checkpoint": f"{name}.safetensors", "card": f"{name}.md", **PROVENANCE}


@pytest.mark.parametrize(
    ("broken", "says"),
    [({"card": False}, "no model_card.md"), ({"weights": False}, "not a readable safetensors file")],
)
def test_a_run_without_its_card_or_with_unreadable_weights_installs_nothing(tmp_path, capsys, broken, says):
    run = finished_run(tmp_path / "run", **broken)
    into = tmp_path / "checkpoints"
    assert install_checkpoint.main([str(run), "x", "--into", str(into)]) == 2
    assert says in capsys.readouterr().err
    assert not into.exists()


def test_over_the_size_budget_nothing_is_copied_and_a_replaced_file_does_not_count(tmp_path, capsys):
    run = finished_run(tmp_path / "run")
    into = tmp_path / "checkpoints"
    into.mkdir()
    size_mb = (run / "model.safetensors").stat().st_size / 1e6
    (into / "other.safetensors").write_bytes(b"x" * int(size_mb * 1e6))
    budget = f"{1.5 * size_mb:.6f}"  # room for one of the two, not both
    assert install_checkpoint.main([str(run), "new", "--into", str(into), "--budget-mb", budget]) == 2
    assert "over its" in capsys.readouterr().err and sorted(p.name for p in into.iterdir()) == [
        "other.safetensors"
    ]
    assert install_checkpoint.main([str(run), "other", "--into", str(into), "--budget-mb", budget]) == 0
    assert (into / "other.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()

"""scripts/install_checkpoint.py: a finished run into checkpoints/ under the name of what it is."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install_checkpoint.py"
spec = importlib.util.spec_from_file_location("install_checkpoint", SCRIPT)
install_checkpoint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_checkpoint)


def finished_run(folder: Path, card: bool = True) -> Path:
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
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
        f"{name}.md",
        f"{name}.safetensors",
        f"{name}_curve.png",
    ]
    assert (into / f"{name}.safetensors").read_bytes() == b"weights"
    assert f"![training curve]({name}_curve.png)" in (into / f"{name}.md").read_text()


def test_a_run_without_its_card_installs_nothing(tmp_path, capsys):
    run = finished_run(tmp_path / "run", card=False)
    into = tmp_path / "checkpoints"
    assert install_checkpoint.main([str(run), "x", "--into", str(into)]) == 2
    assert "no model_card.md" in capsys.readouterr().err
    assert not into.exists()

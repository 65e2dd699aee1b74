"""The library stands alone: ann/ imports nothing from app/ nor the app's dependencies (the GPU
machine that trains the checkpoints has no gradio, plotly or captum)."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import ann

ROOT = Path(__file__).resolve().parents[1]


def test_ann_modules_import_without_app_dependencies():
    modules = [m.name for m in pkgutil.walk_packages(ann.__path__, "ann.") if not m.name.endswith("__main__")]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'gradio', 'plotly', 'captum', 'app'})\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_no_source_file_in_ann_mentions_the_app_package():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "ann").rglob("*.py")
        if any(line.strip().startswith(("import app", "from app")) for line in p.read_text().splitlines())
    ]
    assert offenders == []

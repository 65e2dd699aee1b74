"""`pip install .` gives a working library: every module and bundled config is in the wheel, the
console scripts point at real entry points, the installed copy runs outside the checkout, and
every third-party module `ann/` imports is a declared dependency."""

import ast
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    source = tmp_path_factory.mktemp("source")  # built from a copy: no build/ in the checkout
    subprocess.run(["cp", "-r", str(REPO / "ann"), str(REPO / "pyproject.toml"), str(REPO / "README.md"),
                    str(source)], check=True)  # fmt: skip
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source),
         "-w", str(out)], check=True, cwd=source)  # fmt: skip
    return next(out.glob("ann-*.whl"))


def test_wheel_holds_every_module_and_config_and_nothing_else(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    library = {
        p.relative_to(REPO).as_posix() for p in (REPO / "ann").rglob("*") if p.suffix in (".py", ".toml")
    }
    assert library <= names
    assert not [n for n in names if n.startswith(("app/", "tests/", "scripts/"))]


def test_installed_copy_runs_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "-q"]
    subprocess.run([*pip, "--target", str(site), str(wheel)], check=True)
    scripts = PYPROJECT["project"]["scripts"]
    check = "; ".join(
        [f"import {module}; assert callable({module}.{function})"
         for module, function in (target.split(":") for target in scripts.values())]
        + [f"import ann; assert ann.__file__.startswith({str(site)!r})"]
    )  # fmt: skip
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", check], check=True, cwd=tmp_path, env=env)
    listed = subprocess.run([sys.executable, "-m", "ann.train", "--list-configs"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    bundled = sorted(p.stem for p in (REPO / "ann" / "configs").glob("*.toml"))
    assert [line.split()[0] for line in listed.splitlines() if line.strip()] == bundled


def imported_modules(folder: Path) -> set[str]:
    modules = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def test_every_third_party_import_is_declared():
    project = PYPROJECT["project"]
    extras = project["optional-dependencies"]
    declared = project["dependencies"] + [d for group, deps in extras.items() if group != "app" for d in deps]
    names = {d.split("=")[0].split(">")[0].split("<")[0].strip().lower().replace("_", "-") for d in declared}
    distributions = packages_distributions()
    third_party = imported_modules(REPO / "ann") - set(sys.stdlib_module_names) - {"ann"}
    missing = {}
    for module in third_party:
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not dists & names:
            missing[module] = sorted(dists)
    assert not missing, f"imported by ann/ but not in pyproject's dependencies: {missing}"
    assert "tensorboard" in names  # torch.utils.tensorboard needs it, unseen by the import scan

"""The layers of docs/architecture.md, read from the imports of the source (ast, nothing imported):
the library never reaches the app, the command lines are leaves, ann/models stands alone."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP_PACKAGES = {"app", "gradio", "plotly", "captum"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file (also inside functions), by full name;
    `from a import b` counts as both a and a.b, since b may be a module."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".")
            base = base if node.level else node.module
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def sources(folder: str) -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted((ROOT / folder).rglob("*.py"))}


LIBRARY = sources("ann")
APP = {**sources("app"), "app": imports(ROOT / "app.py")}
COMMANDS = {name for name in LIBRARY if name.startswith("ann.cli.") and name != "ann.cli.args"}
# `python -m ann.<command>` needs a module there: a stub that only runs ann.cli.<command>.main
STUBS = {f"ann.{name.removeprefix('ann.cli.')}": name for name in COMMANDS}
STUBS["ann.data.synthcity.__main__"] = STUBS.pop("ann.synthcity")


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_library_never_imports_the_app_or_its_packages():
    offenders = {
        module: sorted(n for n in found if n.split(".")[0] in APP_PACKAGES)
        for module, found in LIBRARY.items()
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_the_models_import_nothing_outside_ann_models():
    """The paper's network stands alone: weights and normalisation travel with its backbones."""
    models = {m: found for m, found in LIBRARY.items() if within(m, "ann.models")}
    outside = {
        m: sorted(n for n in found if within(n, "ann") and not within(n, "ann.models"))
        for m, found in models.items()
    }
    assert {m: names for m, names in outside.items() if names} == {}


def test_the_stubs_only_run_their_command():
    assert set(STUBS) <= set(LIBRARY)
    for stub, command in STUBS.items():
        assert {n for n in LIBRARY[stub] if within(n, "ann")} == {command, f"{command}.main"}, stub


def test_no_module_imports_a_stub():
    importers = {
        m: sorted(found & set(STUBS)) for m, found in {**LIBRARY, **APP}.items() if found & set(STUBS)
    }
    assert importers == {}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_line_is_imported_by_its_stub_alone(command):
    importers = [module for module, found in {**LIBRARY, **APP}.items() if command in found]
    assert importers == [stub for stub, c in STUBS.items() if c == command]


def test_a_module_that_imports_argparse_is_imported_by_no_library_module():
    parsers = {module for module, found in LIBRARY.items() if "argparse" in found}
    assert parsers <= COMMANDS | {"ann.cli.args"}
    library = {
        m: found for m, found in {**LIBRARY, **APP}.items() if not within(m, "ann.cli") and m not in STUBS
    }
    offenders = {module: sorted(found & parsers) for module, found in library.items() if found & parsers}
    assert offenders == {}


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of `graph` (module -> the modules it imports), or [] when there is none."""
    done, path = set(), []

    def visit(module: str) -> list[str]:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return []
        path.append(module)
        for imported in sorted(graph[module]):
            found = visit(imported)
            if found:
                return found
        path.pop()
        done.add(module)
        return []

    for module in sorted(graph):
        found = visit(module)
        if found:
            return found
    return []


def test_the_app_modules_import_one_another_without_a_cycle():
    """Counting the imports inside functions too: a cycle hidden in a function is still a cycle."""
    modules = sources("app")
    graph = {m: {n for n in found if n in modules and n != m} for m, found in modules.items()}
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check finds one
    assert cycle(graph) == []


def test_every_app_tab_is_a_module_of_app_tabs_with_one_interface():
    """docs/architecture.md: a tab is a module in app/tabs/ that defines TAB (app/tab.py's Tab)."""
    tabs = sorted(p for p in (ROOT / "app" / "tabs").glob("*.py") if p.name != "__init__.py")
    defines = {
        p.stem: any(
            isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "TAB" for t in node.targets)
            for node in ast.parse(p.read_text()).body
        )
        for p in tabs
    }
    assert defines == dict.fromkeys(defines, True)
    assert {f"app.tabs.{name}" for name in defines} <= sources("app")["app.layout"]

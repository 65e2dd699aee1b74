"""The test suite keeps out of the user's HOME: the conftest guard fails a test that writes there."""

from pathlib import Path

pytest_plugins = "pytester"


def test_a_test_writing_into_the_home_cache_fails_and_one_using_the_cache_dir_passes(
    pytester, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(
        """
        import os
        from pathlib import Path

        def test_hard_coded_home_cache():
            path = Path(os.environ["HOME"]) / ".cache" / "ann" / "pool.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")

        def test_the_cache_dir_is_a_temp_dir():
            cache = Path(os.environ["XDG_CACHE_HOME"])
            assert not cache.is_relative_to(os.environ["HOME"])
            (cache / "ann").mkdir()
        """
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)  # the guard fails the first at teardown
    assert "tests write to temp dirs only" in result.stdout.str()
    assert sorted(p.name for p in home.rglob("*")) == [".cache", "ann", "pool.bin"]  # only that test's file


def test_module_folders_go_when_it_passes_and_temp_files_at_exit(pytester, tmp_path, monkeypatch):
    """The disk a run holds stays that of its largest module: a module's tmp_path_factory folders
    are removed when its tests pass and kept when one fails; what tests leave in the temp dir (as
    gradio and the app do) goes at exit."""
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    module = """
        import tempfile
        import pytest

        @pytest.fixture(scope="module")
        def folder(tmp_path_factory):
            return tmp_path_factory.mktemp("{name}")

        def test_writes(folder):
            (folder / "checkpoint.bin").write_bytes(b"x")
            tempfile.mkstemp(prefix="left-behind-")
            assert {passes}
        """
    pytester.makepyfile(test_a=module.format(name="passing", passes=True))
    pytester.makepyfile(test_b=module.format(name="failing", passes=False))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "temp"))
    for inherited in ("ANN_TEST_TEMP_ROOT", "ANN_TEST_RUN"):  # a run of its own, in that TMPDIR
        monkeypatch.delenv(inherited, raising=False)
    (tmp_path / "temp").mkdir()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--basetemp", str(tmp_path / "base"))
    result.assert_outcomes(passed=1, failed=1)
    assert [p.name for p in (tmp_path / "base").iterdir() if not p.is_symlink()] == ["failing0"]
    assert list((tmp_path / "temp").iterdir()) == []

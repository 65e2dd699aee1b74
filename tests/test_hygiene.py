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

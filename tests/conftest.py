import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

# What the run writes besides tmp_path goes to one folder of the system temp dir, removed at exit:
# caches, never in the user's HOME (the SynthCity pool alone is 16 GB at its GPU size), and the
# temp files of gradio, gradio_client's downloads and the app (a few hundred folders a run, left
# in /tmp otherwise). Set before anything reads these variables; subprocesses inherit them.
# tmp_path stays pytest's (PYTEST_DEBUG_TEMPROOT): a failed test's folder is kept to look at.
REAL_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ann"
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())
# pytest-xdist's workers inherit the controller's TMPDIR, its scratch folder: theirs go beside it,
# not inside, or Chromium's socket ($TMPDIR/.org.chromium.Chromium.XXXXXX/SingletonSocket) passes
# the 107 bytes a Unix socket path may have under a TMPDIR of 30 characters, and the browser
# tests fail at launch. The run's first process (pytest, or xdist's controller) ends last and
# removes every folder of the run: a worker may end before its atexit handlers run.
TEMP_ROOT = os.environ.setdefault("ANN_TEST_TEMP_ROOT", tempfile.gettempdir())
RUN = os.environ.setdefault("ANN_TEST_RUN", f"ann-test-{os.getpid()}-")
SCRATCH = tempfile.mkdtemp(prefix=RUN, dir=TEMP_ROOT)


def remove_scratch() -> None:
    shutil.rmtree(SCRATCH, ignore_errors=True)
    if RUN == f"ann-test-{os.getpid()}-":
        for folder in Path(TEMP_ROOT).glob(f"{RUN}*"):
            shutil.rmtree(folder, ignore_errors=True)


atexit.register(remove_scratch)
tempfile.tempdir = SCRATCH
os.environ.update(
    TMPDIR=SCRATCH,
    XDG_CACHE_HOME=f"{SCRATCH}/cache",  # the pool, pip, onnxruntime, Chromium's dconf
    XDG_CONFIG_HOME=f"{SCRATCH}/config",  # Chromium's "Crash Reports", whatever --user-data-dir says
    MPLCONFIGDIR=f"{SCRATCH}/matplotlib",
    GRADIO_TEMP_DIR=f"{SCRATCH}/gradio",
)
for folder in ("cache", "config", "matplotlib", "gradio"):
    os.mkdir(f"{SCRATCH}/{folder}")


def cache_listing() -> list[tuple[str, int]]:
    if not REAL_CACHE.exists():
        return []
    return sorted((str(p), p.stat().st_mtime_ns) for p in REAL_CACHE.rglob("*"))


@pytest.fixture(autouse=True)
def nothing_written_to_the_real_cache():
    """A test that writes into the user's ~/.cache/ann (a hard-coded path) fails, naming it."""
    before = cache_listing()
    yield
    assert cache_listing() == before, f"the test wrote into {REAL_CACHE}; tests write to temp dirs only"


# scripts/test.sh runs the suite on two worker processes (pytest-xdist): the tests run on one
# thread each, so a single process leaves one of the two cores idle. A test file is the unit of
# work (its module fixtures, an app server or a converted model, are built once), except that the
# files whose fixtures hold the largest temporary files share a worker, one after the other: two of
# them at once would double the run's peak disk use (0.9 GB for the converted R101 alone).
LARGE_TEMPORARY_FILES = {"tests/test_convert.py", "tests/test_gpu_scripts.py"}


def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") not in ("load", "loadfile"):
        return None  # the user asked for another distribution: theirs
    from xdist.scheduler import LoadFileScheduling

    class ByFile(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return "large temporary files" if file in LARGE_TEMPORARY_FILES else file

    return ByFile(config, log)


# The CPU is shared by several people and the test tensors are tiny: one thread is fastest.
torch.set_num_threads(1)


@pytest.fixture(scope="module", autouse=True)
def module_folders_removed(request, tmp_path_factory):
    """The tmp_path_factory folders of a module's fixtures (a converted R101 is 0.9 GB, a shipped GPU
    session 0.5 GB) go when the module ends, as a passing test's tmp_path does (pyproject's
    tmp_path_retention_policy): the run's peak disk use is its largest module's, not the sum of all.
    After a failure in the module they are kept to look at."""
    base = tmp_path_factory.getbasetemp()
    before, failed = set(base.iterdir()), request.session.testsfailed
    yield
    if request.session.testsfailed == failed:
        for folder in set(base.iterdir()) - before:
            if folder.is_symlink():  # pytest's "<name>current" link to the newest folder
                folder.unlink()
            else:
                shutil.rmtree(folder, ignore_errors=True)

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

# Caches go to the system temp dir, never into the user's HOME: the SynthCity pool alone is 16 GB
# at its GPU size. Set before anything reads XDG_CACHE_HOME; subprocesses inherit it.
REAL_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ann"
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="ann-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)
os.environ.setdefault("MPLCONFIGDIR", os.path.join(os.environ["XDG_CACHE_HOME"], "matplotlib"))


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


# The CPU is shared by several people and the test tensors are tiny: one thread is fastest.
torch.set_num_threads(1)

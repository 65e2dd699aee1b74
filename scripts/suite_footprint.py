"""Time the test suite and measure its peak temporary disk use (issue 17's figures).

    python scripts/suite_footprint.py [-- extra pytest arguments]

Runs `bash scripts/test.sh` with pytest's temp root (PYTEST_DEBUG_TEMPROOT) in a fresh folder and
sums, every half second, the files under it and under the suite's scratch folders (/tmp/ann-test-*,
tests/conftest.py: caches, gradio's files): everything the suite writes. Prints the wall time, the
peak, and the largest folders at the peak (per worker, per module fixture or test), so that the
module that makes the peak is found.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def size(top: Path) -> int:
    """Bytes of the files under `top` (files that vanish while walking count as gone)."""
    total = 0
    for dirpath, _, files in os.walk(top):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def sizes(root: Path, scratch_before: set[Path]) -> dict[str, int]:
    """Bytes per folder two levels under root's pytest-of-*/pytest-N (the worker, then the module's
    or test's folder), and per scratch folder the run made."""
    folders = [
        *root.glob("pytest-of-*/pytest-*/*/*"),
        *(set(Path("/tmp").glob("ann-test-*")) - scratch_before),
    ]
    real = [f for f in folders if f.is_dir() and not f.is_symlink() and "pytest-current" not in f.parts]
    return {str(folder).removeprefix(str(root) + "/"): size(folder) for folder in real}


def main() -> int:
    extra = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    root = Path(tempfile.mkdtemp(prefix="fp-"))  # short: Chromium's profile lives under it
    scratch_before = set(Path("/tmp").glob("ann-test-*"))
    peak: dict = {"bytes": 0, "at": {}}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            now = sizes(root, scratch_before)
            if sum(now.values()) > peak["bytes"]:
                peak["bytes"], peak["at"] = sum(now.values()), now

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    start = time.perf_counter()
    status = subprocess.call(
        ["bash", "scripts/test.sh", *extra], cwd=ROOT, env={**os.environ, "TMPDIR": str(root)}
    )
    wall = time.perf_counter() - start
    done.set()
    watcher.join()
    shutil.rmtree(root, ignore_errors=True)
    took = f"{wall // 60:.0f} min {wall % 60:.0f} s"
    print(f"exit {status}, wall {took}, peak temporary disk {peak['bytes'] / 1e9:.2f} GB")
    for name, size in sorted(peak["at"].items(), key=lambda item: -item[1])[:6]:
        print(f"  {size / 1e9:6.2f} GB  {name}")
    return status


if __name__ == "__main__":
    sys.exit(main())

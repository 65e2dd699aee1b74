"""Where the app writes: one folder per server process in the system temp dir, removed when the
process exits, so that a day of use leaves nothing behind. Inside it a folder per kind of file
(API pictures, linked uploads, exports); exports keep only the most recent few. Gradio's own copies
of uploads and outputs are cleaned by the Blocks' delete_cache (app/layout.py)."""

import atexit
import itertools
import shutil
import tempfile
import threading
from pathlib import Path

KEPT_EXPORTS = 20  # an export is downloaded within minutes; gradio serves its own copy meanwhile
GRADIO_CACHE = (3600, 3600)  # every hour, gradio drops its copies older than an hour

_guard = threading.Lock()
_root: list[Path] = []  # the process's folder, made on first use
# Folders made in one clock tick share an mtime, so their order is a count in their names.
_made = itertools.count()


def app_folder() -> Path:
    """This process's folder (made, and registered for removal at exit, on first use)."""
    with _guard:
        if not _root or not _root[0].is_dir():
            _root[:] = [Path(tempfile.mkdtemp(prefix="ann-app-"))]
            atexit.register(shutil.rmtree, _root[0], ignore_errors=True)
        return _root[0]


def fresh_folder(kind: str, keep: int | None = None) -> Path:
    """A new, empty folder `kind-*` in the app's folder; with `keep`, only the `keep` newest folders
    of that kind stay (this one among them)."""
    parent = app_folder()
    with _guard:
        folder = Path(tempfile.mkdtemp(prefix=f"{kind}-{next(_made):09d}-", dir=parent))
        if keep is not None:
            made = sorted(parent.glob(f"{kind}-*"))
            for old in made[: max(len(made) - keep, 0)]:
                if old != folder:
                    shutil.rmtree(old, ignore_errors=True)
    return folder

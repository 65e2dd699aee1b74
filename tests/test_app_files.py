"""The app's files live in one folder per server process, removed at exit; exports keep the newest
few (app/files.py)."""

import os
import subprocess
import sys
from pathlib import Path

from app import files


def test_folders_of_one_kind_beyond_keep_are_removed_oldest_first():
    made = []
    for i in range(5):  # mtimes that say nothing of the order (one clock tick, a clock set back)
        made.append(files.fresh_folder("keep-test", keep=3))
        os.utime(made[-1], ns=(10**9 * (10 - i),) * 2)
    assert all(folder.parent == files.app_folder() for folder in made)
    assert [folder.is_dir() for folder in made] == [False, False, True, True, True]
    other = files.fresh_folder("other-kind", keep=1)  # another kind is left alone
    assert other.is_dir() and made[-1].is_dir()


def test_the_process_folder_is_gone_when_the_process_exits(tmp_path):
    code = "from app import files; folder = files.fresh_folder('export', keep=2); print(folder)"
    repo, env = Path(__file__).parents[1], {"TMPDIR": str(tmp_path), "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=repo
    )
    folder = Path(done.stdout.strip())
    assert folder.is_relative_to(tmp_path) and folder.parent.name.startswith("ann-app-")
    assert not folder.parent.exists()
    assert list(tmp_path.iterdir()) == []

"""Never losing progress: atomic resumable checkpoints, RNG states and the run-folder lock.

A checkpoint is written to a temp file in the same folder, flushed and fsynced, then renamed over
the previous one: a process killed at any moment leaves either the old or the new complete file,
never a torn one. Test hook: with `ANN_TEST_CHECKPOINT_PAUSE=seconds`, checkpoint writes after the
first `ANN_TEST_CHECKPOINT_PAUSE_AFTER` (default 0) pause halfway, so a test can SIGKILL there.
"""

import errno
import io
import os
import random
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from ann.models.sampling import Sampler

PAUSE_ENV = "ANN_TEST_CHECKPOINT_PAUSE"
PAUSE_AFTER_ENV = "ANN_TEST_CHECKPOINT_PAUSE_AFTER"
_checkpoints_written = 0


class TrainingError(RuntimeError):
    """A run that cannot start or continue; the message says why and what to do."""


class Stopped(Exception):
    """SIGTERM asked the run to stop: it saved a checkpoint at `iteration` and --resume goes on."""

    def __init__(self, iteration: int) -> None:
        super().__init__(f"stopped by SIGTERM after iteration {iteration}; --resume continues from there")
        self.iteration = iteration


class StopRequest:
    """Turns SIGTERM into a flag the loop reads between steps (a job scheduler's or a time limit's
    polite stop), so the run checkpoints where it is instead of losing the iterations since the
    last periodic checkpoint. The previous handler comes back on exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def atomic_write(path: Path, payload: bytes, pause: float = 0.0) -> None:
    """Write `payload` to `path` via temp file + fsync + rename; on failure remove the temp file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            half = len(payload) // 2
            f.write(payload[:half])
            if pause > 0:
                f.flush()
                print(f"ANN_TEST: paused writing {tmp}", flush=True)
                time.sleep(pause)
            f.write(payload[half:])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        hint = " (disk full)" if error.errno == errno.ENOSPC else ""
        raise TrainingError(f"could not write {path}{hint}: {error}; the previous file is intact") from error


def fsync_dir(folder: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(path: Path, state: dict) -> None:
    global _checkpoints_written
    buffer = io.BytesIO()
    torch.save(state, buffer)
    pause = float(os.environ.get(PAUSE_ENV) or 0)
    if _checkpoints_written < int(os.environ.get(PAUSE_AFTER_ENV) or 0):
        pause = 0.0
    atomic_write(path, buffer.getvalue(), pause)
    _checkpoints_written += 1


def load_checkpoint(path: Path) -> dict:
    try:
        # weights_only: our own files hold only tensors and plain Python values
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a bad file
        raise TrainingError(
            f"{path}: not a readable training checkpoint of this trainer ({load_failure(error)})"
        ) from error


def load_failure(error: Exception) -> str:
    """The line of torch.load's error that says what is wrong with the file; its weights_only
    message also advises loading with weights_only=False, which no file of ours needs."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            detail = line.partition("WeightsUnpickler error:")[2].strip() or "".join(lines[i + 1 : i + 2])
            return f"not a file of tensors and plain values: {detail.split('. ')[0]}"
    return lines[0] if lines else type(error).__name__


def rng_states() -> dict:
    """Python, numpy and torch (CPU and CUDA) generator states, as plain values and tensors."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def sampler_draws(model: torch.nn.Module) -> list[int]:
    """The random-sampling counters (Sampler.draws): part of the state of random/pyramid_random."""
    return [m.draws for m in model.modules() if isinstance(m, Sampler)]


def set_sampler_draws(model: torch.nn.Module, draws: list[int]) -> None:
    samplers = [m for m in model.modules() if isinstance(m, Sampler)]
    if len(samplers) != len(draws):
        raise TrainingError(f"checkpoint has {len(draws)} sampler counters, the model {len(samplers)}")
    for sampler, count in zip(samplers, draws, strict=True):
        sampler.draws = count


class RunLock:
    """`train.lock` in the run folder holding `host pid`; a lock of a dead local pid is taken over."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "train.lock"
        self.held = False

    def acquire(self) -> None:
        me = f"{socket.gethostname()} {os.getpid()}\n"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self.held = True
            return
        raise TrainingError(f"{self.path}: could not take the lock")

    def _take_over_if_stale(self) -> None:
        text = self.path.read_text().split() if self.path.exists() else []
        host, pid = (text[0], int(text[1])) if len(text) == 2 and text[1].isdigit() else ("", -1)
        if host == socket.gethostname() and not pid_alive(pid):
            print(f"taking over stale lock {self.path} of dead pid {pid}", file=sys.stderr)
            self.path.unlink(missing_ok=True)
            return
        raise TrainingError(
            f"{self.path.parent} is in use by another trainer (pid {pid} on {host or 'unknown host'}); "
            f"wait for it, choose another --out, or delete {self.path} if that process is gone"
        )

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True

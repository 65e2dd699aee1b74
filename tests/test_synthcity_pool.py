"""The rendered pool of SynthCity train images: same bytes as render(), rendered once, never partial."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import ann
from ann.data.synthcity import pool as pool_module
from ann.data.synthcity import render
from ann.data.synthcity.pool import TrainPool
from ann.training.config import ConfigError, load_config
from ann.training.data import TrainStream, open_split
from ann.training.loop import train

SIZE_HW = (32, 64)


def test_pool_holds_the_rendered_bytes(tmp_path):
    pool = TrainPool(tmp_path, 3, 5, SIZE_HW)
    pool.ensure(workers=2, progress=False)
    for index in (0, 4):
        image, label = pool(index)
        want_image, want_label = render(3, "train", index, (64, 32))
        np.testing.assert_array_equal(image, want_image)
        np.testing.assert_array_equal(label, want_label)
    copy = pickle.loads(pickle.dumps(pool))  # DataLoader workers map the file themselves
    np.testing.assert_array_equal(copy(2)[1], render(3, "train", 2, (64, 32))[1])
    with pytest.raises(IndexError, match="out of range"):
        pool(5)


def test_pool_is_rendered_once_and_a_partial_file_is_never_used(tmp_path, monkeypatch):
    pool = TrainPool(tmp_path, 0, 3, SIZE_HW)
    stale = pool.path.with_name(pool.path.name + ".partial-12345")
    stale.write_bytes(b"left by a killed process")
    pool.path.write_bytes(b"truncated")  # wrong size: rendered again, not read
    pool.ensure(workers=1, progress=False)
    assert pool.path.stat().st_size == 3 * pool.record and not stale.exists()
    first = pool.path.stat().st_mtime_ns

    def fail(*args):
        raise AssertionError("a complete pool was rendered again")

    monkeypatch.setattr(TrainPool, "_render_all", fail)
    pool.ensure(progress=False)
    assert pool.path.stat().st_mtime_ns == first


def test_interrupted_render_leaves_no_pool_file(tmp_path, monkeypatch):
    def broken(seed, split, index, size):
        if index == 2:
            raise RuntimeError("killed")
        return render(seed, split, index, size)

    monkeypatch.setattr(pool_module, "render", broken)
    monkeypatch.setattr(pool_module, "ProcessPoolExecutor", ThreadExecutor)  # keep the patch
    pool = TrainPool(tmp_path, 0, 4, SIZE_HW)
    with pytest.raises(RuntimeError, match="killed"):
        pool.ensure(progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [pool.path.name + ".lock"]


class ThreadExecutor:
    """In-process stand-in for ProcessPoolExecutor (a monkeypatch does not reach subprocesses)."""

    def __init__(self, workers):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        from concurrent.futures import Future

        future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as error:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(error)
        return future


def test_two_processes_render_one_pool(tmp_path):
    """Concurrent callers (ranks of one run) wait on the lock; both then read the same file."""
    code = (
        "import sys; from pathlib import Path; from ann.data.synthcity.pool import TrainPool;"
        "p = TrainPool(Path(sys.argv[1]), 0, 6, (32, 64)); p.ensure(workers=1, progress=False);"
        "print(p.path.stat().st_mtime_ns)"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, env=env)
             for _ in range(2)]  # fmt: skip
    stamps = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(stamps) == 1


def test_config_pool_makes_train_finite_and_training_reads_it(tmp_path):
    overrides = [f"data.cache_dir={tmp_path / 'cache'}", "data.synthcity_train_images=4"]
    config = load_config("smoke", overrides)
    split = open_split(config.data, "train")
    assert split.length == 4
    # sample k of epoch 0 is one of the 4 pooled images, augmented
    images = {split.load(i)[0].tobytes() for i in range(4)}
    assert len(images) == 4
    assert TrainStream(split, config)[0][0].shape == (3, *config.data.crop_size)
    train(load_config("smoke", ["train.progress=false", "train.iterations=4", *overrides]), tmp_path / "run")
    meta = ann.load(tmp_path / "run" / "model.safetensors").meta
    assert meta.provenance["data"]["synthcity_train_images"] == 4
    with pytest.raises(ConfigError, match="synthcity_train_images"):
        load_config("smoke", ["data.synthcity_train_images=-1"])


def test_pool_file_is_named_after_the_renderer_code(tmp_path, monkeypatch):
    """Changed SynthCity code must not read scenes rendered by the old code."""
    before = TrainPool(tmp_path, 0, 3, SIZE_HW).path
    monkeypatch.setattr(pool_module, "code_version", lambda: "other")
    assert TrainPool(tmp_path, 0, 3, SIZE_HW).path != before


def test_pools_of_two_cities_in_one_cache_keep_their_own_scenes(tmp_path):
    """Runs with different SynthCity seeds share the default cache folder: the second must not
    read the first one's file (same count and size) as its own scenes."""
    first, second = TrainPool(tmp_path, 0, 1, SIZE_HW), TrainPool(tmp_path, 1, 1, SIZE_HW)
    first.ensure(workers=1, progress=False)
    second.ensure(workers=1, progress=False)
    np.testing.assert_array_equal(second(0)[0], render(1, "train", 0, (64, 32))[0])
    np.testing.assert_array_equal(first(0)[0], render(0, "train", 0, (64, 32))[0])

"""What a run shows while it trains: a tqdm bar on a terminal (a plain line per `train.log_every`
iterations in a log file), metrics.jsonl, TensorBoard events, and the training-curve PNG at the
end. Only rank 0 creates a `RunLog`; other ranks log nothing."""

import contextlib
import errno
import io
import json
import math
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ann.training.state import TrainingError, atomic_write

METRICS_FILE = "metrics.jsonl"


def read_metrics(folder: Path) -> list[dict]:
    path = folder / METRICS_FILE
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line torn by a kill: everything after it is gone too
    return records


def truncate_metrics(folder: Path, iteration: int) -> None:
    """Drop records after `iteration`: a resumed run logs those iterations again."""
    records = [r for r in read_metrics(folder) if r["iteration"] <= iteration]
    atomic_write(folder / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in records).encode())


class RunLog:
    def __init__(
        self,
        folder: Path,
        start: int,
        total: int,
        progress: bool,
        costs: list[tuple[int, float]] | None = None,
    ) -> None:
        """`costs`: (end iteration, relative cost of one iteration) per stage, so that the ETA of a
        progressive run counts its later, larger iterations at what they cost (one stage if None)."""
        self.folder, self.start, self.total = folder, start, total
        self.costs = costs or [(total, 1.0)]
        truncate_metrics(folder, start)
        self.file = open(folder / METRICS_FILE, "a")
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides events a killed run wrote after its last checkpoint
            self.tensorboard = SummaryWriter(str(folder / "tensorboard"), purge_step=start + 1)
        except ImportError:
            pass
        # a bar redraws itself with carriage returns: in a log file each frame stays, so a file gets
        # plain lines from show() instead
        terminal = sys.stderr is not None and sys.stderr.isatty()
        self.lines = progress and not terminal
        # tqdm's own remaining time assumes every iteration costs the same: the bar shows ours
        self.bar = tqdm(
            total=total, initial=start, desc="train", disable=not (progress and terminal), dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]",
        )  # fmt: skip
        self.since = time.perf_counter()

    def step(self) -> None:
        self.bar.update(1)

    def eta(self, iteration: int) -> float:
        """Seconds left: this session's time per unit of cost so far (a resumed run's ETA is its
        own) times the cost of the iterations left."""
        done = work(self.costs, self.start, iteration)
        return (time.perf_counter() - self.since) / max(done, 1e-9) * work(self.costs, iteration, self.total)

    def show(self, iteration: int, loss: float, lr: float, images_per_s: float) -> None:
        """The figures of a log step: on the bar, or as one line when there is no terminal."""
        eta = tqdm.format_interval(self.eta(iteration))
        if not self.lines:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", img_s=f"{images_per_s:.1f}", ETA=eta)
            return
        print(
            f"train {iteration}/{self.total}  loss {loss:.4f}  lr {lr:.2e}  {images_per_s:.1f} img/s  "
            f"ETA {eta}",
            file=sys.stderr,
            flush=True,
        )

    def record(self, record: dict) -> None:
        """One JSONL line (flushed) and the same scalars in TensorBoard."""
        # strict JSON (jq, JavaScript, pandas) has no NaN: a validation without a labelled pixel
        # or a diverged loss is written as null
        line = json.dumps(
            {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        )
        try:
            self.file.write(line + "\n")
            self.file.flush()
        except OSError as error:
            raise write_error(self.folder / METRICS_FILE, error) from error
        if self.tensorboard is not None:
            try:
                for key, value in record.items():
                    if key != "iteration" and isinstance(value, int | float) and math.isfinite(value):
                        self.tensorboard.add_scalar(key, value, record["iteration"])
                self.tensorboard.flush()
            except OSError as error:
                raise write_error(self.folder / "tensorboard", error) from error

    def message(self, text: str) -> None:
        self.bar.write(text)

    def close(self) -> None:
        self.bar.close()
        # what failed to be written has raised in record(); a close that fails again (a full disk)
        # must not replace that error, or the one that stopped the run
        with contextlib.suppress(OSError):
            self.file.close()
        if self.tensorboard is not None:
            with contextlib.suppress(OSError):
                self.tensorboard.close()


def work(costs: list[tuple[int, float]], first: int, last: int) -> float:
    """The summed cost of iterations first..last-1, each stage's iterations at its cost."""
    total, begin = 0.0, 0
    for end, cost in costs:
        total += max(0, min(end, last) - max(begin, first)) * cost
        begin = end
    return total


def write_error(path: Path, error: OSError) -> TrainingError:
    hint = " (disk full)" if error.errno == errno.ENOSPC else ""
    return TrainingError(f"could not write {path}{hint}: {error.strerror}")


def plot_curve(folder: Path, path: Path) -> Path:
    """Training loss (and validation mIoU on a second axis) against iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(folder)
    train = [r for r in records if r.get("loss") is not None]
    val = [r for r in records if r.get("val_miou") is not None]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot([r["iteration"] for r in train], [r["loss"] for r in train], color="tab:blue", lw=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss", color="tab:blue")
    if val:
        ax2 = ax.twinx()
        ax2.plot([r["iteration"] for r in val], [100 * r["val_miou"] for r in val], "o-", color="tab:red")
        ax2.set_ylabel("val mIoU (%)", color="tab:red")
    ax.set_title(folder.name)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png")
    plt.close(fig)
    atomic_write(path, png.getvalue())  # whole or not at all; a full disk is named
    return path


class Meter:
    """Images/s and the share of wall time spent waiting for the next batch, per log window."""

    def __init__(self) -> None:
        self.images, self.waiting = 0, 0.0
        self.since = time.perf_counter()

    def timed(self, loader):
        iterator = iter(loader)
        while True:
            begin = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.waiting += time.perf_counter() - begin
            yield batch

    def read(self) -> tuple[float, float]:
        elapsed = max(time.perf_counter() - self.since, 1e-9)
        rates = self.images / elapsed, self.waiting / elapsed
        self.images, self.waiting, self.since = 0, 0.0, time.perf_counter()
        return rates

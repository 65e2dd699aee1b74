"""Train an ANN network from a config (paper Sec. 4.2).

    python -m ann.train CONFIG --out DIR [--set section.field=value ...] [--resume]
    python -m ann.train --list-configs
    torchrun --nproc_per_node 8 -m ann.train cityscapes_r101 --out runs/cs   # many GPUs

CONFIG is a bundled config name (ann/configs/*.toml) or a path to a TOML file. See docs/training.md.
"""

import argparse
import errno
import os
import shlex
import sys
import tomllib
from pathlib import Path

from ann.cli.args import set_flags, shown_path
from ann.training.config import ConfigError, config_path, list_configs, load_config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ann.train", description=__doc__.split("\n")[0])
    p.add_argument("config", nargs="?", help="bundled config name or path to a .toml file")
    p.add_argument("--out", type=Path, help="run folder (checkpoints, logs, exported model)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set optim.lr=0.02 (repeatable)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoints/last.pt")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable samples (data.skip_bad)")
    p.add_argument("--list-configs", action="store_true", help="list the bundled configs and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = p.parse_args(argv)
    if not args.list_configs and (args.config is None or (args.out is None and not args.print_config)):
        p.error("CONFIG and --out are required (or --list-configs)")
    return args


def print_configs() -> None:
    for name in list_configs():
        description = tomllib.loads(config_path(name).read_text()).get("description", "")
        print(f"{name:<32} {description}")


def reproduce(args: argparse.Namespace, overrides: list[str]) -> str:
    """The command that recomputes this run: without --resume and the overrides that only change
    how it runs (progress bar, device, workers, ...), whatever chunks it was trained in."""
    from ann.training.loop import RESUMABLE_CHANGES

    how = set(RESUMABLE_CHANGES) - {"data.root"}  # where the data is stays in the command
    kept = [o for o in overrides if o.partition("=")[0].strip() not in how]
    return shlex.join([*launcher(), args.config, "--out", shown_path(args.out), *set_flags(kept)])


def launcher() -> list[str]:
    """How this run was started: under torchrun the number of processes is part of the result
    (per-process batch statistics without SyncBatchNorm, per-rank RNG streams)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return ["python", "-m", "ann.train"]
    world = int(os.environ["WORLD_SIZE"])
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    nodes = ["--nnodes", str(world // per_node)] if world > per_node else []
    return ["torchrun", *nodes, "--nproc_per_node", str(per_node), "-m", "ann.train"]


def error_hint(error: Exception, checkpoint: Path) -> str:
    """What to do about a bad sample or a full disk, and that --resume loses nothing."""
    from ann.data.datasets import BadSample, DatasetError

    causes = [error]
    while causes[-1].__cause__ is not None:
        causes.append(causes[-1].__cause__)
    if isinstance(error, BadSample):
        hint = "\nfix that file (python -m ann.check_data finds them all), or --skip-bad to skip bad samples"
    elif isinstance(error, DatasetError):  # folders, not one file: --skip-bad cannot help
        hint = "\ndocs/datasets.md shows each dataset's folders; --set data.root=DIR points at yours"
    elif any(getattr(c, "errno", None) == errno.ENOSPC or "No space left" in str(c) for c in causes):
        hint = "\nfree some disk space"  # safetensors reports a full disk by its message alone
    else:
        return ""
    return hint + ("; then --resume continues from the last checkpoint" if checkpoint.exists() else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_configs:
        print_configs()
        return 0
    overrides = list(args.overrides) + (["data.skip_bad=true"] if args.skip_bad else [])
    try:
        config = load_config(args.config, overrides)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        from ann.training.config import to_toml

        print(to_toml(config), end="")
        return 0
    from ann.training.loop import CHECKPOINT, train

    command = shlex.join([sys.executable, "-m", "ann.train", *(sys.argv[1:] if argv is None else argv)])
    from ann.training.state import Stopped

    # under torchrun every process runs this: one report of the run, each rank's own errors
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        train(config, args.out, resume=args.resume, command=command, reproduce=reproduce(args, overrides))
    except Stopped as stop:
        again = [arg for arg in sys.argv[1:] if arg != "--resume"]
        if rank == 0:
            print(f"{stop}: {shlex.join([*launcher(), *again, '--resume'])}", file=sys.stderr)
        return 143  # 128 + SIGTERM, as a shell reports a terminated job
    except (ValueError, RuntimeError, OSError) as error:  # TrainingError, DatasetError, ConfigError
        from ann.data.datasets import plain_message

        who = f" (rank {rank} of {world})" if world > 1 else ""
        print(
            f"error{who}: {plain_message(error)}{error_hint(error, args.out / CHECKPOINT)}", file=sys.stderr
        )
        return 2
    if rank == 0:
        print(f"done: {args.out / 'model.safetensors'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How the commands report progress: a tqdm bar on a terminal; in a log file (stderr not a
terminal) a plain line every `every` items and at the end, because a bar's carriage-return frames
make a log unreadable."""

import sys
from collections.abc import Iterable, Iterator

from tqdm import tqdm

EVERY = 10  # items between lines when stderr is not a terminal (logs, CI)


def progress(
    items: Iterable, total: int | None, desc: str, unit: str = "images", every: int = EVERY
) -> Iterator:
    if sys.stderr.isatty():
        yield from tqdm(items, total=total, desc=desc, unit=unit.rstrip("s") or unit, leave=False)
        return
    done = 0
    for done, item in enumerate(items, 1):
        yield item  # resumed once the item is done
        if done % every == 0 and done != total:
            print(f"{desc}: {done}/{total or '?'} {unit}", file=sys.stderr, flush=True)
    print(f"{desc}: {done}/{total or done} {unit}", file=sys.stderr, flush=True)

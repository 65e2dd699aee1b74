"""The bundle a GPU call brings back: finished runs and logs under $OUT, as one tar cut into
parts the device tool returns (at most 8 files of 16 MiB) with a manifest of sha256 sums;
`scripts/gpu_unpack.py` joins and checks it here."""

import hashlib
import json
import os
import tarfile
from pathlib import Path

RUNS = Path("runs")
SHIPPED = RUNS / "shipped.txt"
CAME_BACK = RUNS / "gpu" / "shipped.txt"  # written here by gpu_unpack.py, carried to the machine
PART_BYTES = int(os.environ.get("ANN_PART_BYTES", 15 * 2**20))  # smaller in the tests
MAX_PARTS = 7  # + the manifest = the tool's 8 files
# under the tool's 64 MiB, and 1 MiB left for the tar's headers
MAX_BUNDLE = min(60 * 2**20, MAX_PARTS * PART_BYTES) - 2**20
FINISHED = "model_card.md"  # the export writes it last: a run without it is not finished
RUN_FILES = ("model.safetensors", "model_card.md", "training_curve.png", "metrics.jsonl", "config.toml")


def finished(run: Path) -> bool:
    return (run / FINISHED).exists()


def came_back() -> set[str]:
    return set(CAME_BACK.read_text().split()) if CAME_BACK.exists() else set()


class Shipper:
    """Writes $OUT afresh each time: logs + the runs this call shipped + finished unshipped runs."""

    def __init__(self, logs: Path, out: Path) -> None:
        self.logs, self.out = logs, out
        self.earlier = (set(SHIPPED.read_text().split()) if SHIPPED.exists() else set()) | came_back()
        self.now: list[str] = []

    def __call__(self) -> None:
        members = [(p, f"logs/{p.name}") for p in sorted(self.logs.iterdir()) if p.is_file()]
        members += [(p, f"logs/{p.name}") for p in sorted(RUNS.glob("*.log")) + sorted(RUNS.glob("*.failed"))]
        size = sum(p.stat().st_size for p, _ in members)
        candidates = self.now + [r.name for r in sorted(RUNS.iterdir()) if r.is_dir() and finished(r)
                                 and r.name not in self.earlier and r.name not in self.now]  # fmt: skip
        packed = []
        for name in candidates:
            files = [(RUNS / name / f, f"{name}/{f}") for f in RUN_FILES if (RUNS / name / f).exists()]
            run_size = sum(p.stat().st_size for p, _ in files)
            if size + run_size <= MAX_BUNDLE:
                members += files
                size += run_size
                packed.append(name)
        self.write(members, packed)
        self.now = packed
        SHIPPED.write_text("".join(f"{name}\n" for name in sorted(self.earlier | set(packed))))
        print(f"shipped {packed or 'no runs'} ({size / 2**20:.1f} MiB)", flush=True)

    def write(self, members: list[tuple[Path, str]], packed: list[str]) -> None:
        for old in [*self.out.glob("bundle.part*"), self.out / "manifest.json"]:
            old.unlink(missing_ok=True)  # a manifest never describes parts of another bundle
        tar = self.out / "bundle.tar"
        with tarfile.open(tar, "w") as bundle:
            for path, name in members:
                bundle.add(path, arcname=name)
        data = tar.read_bytes()
        tar.unlink()
        parts = []
        for offset in range(0, len(data), PART_BYTES):
            chunk = data[offset : offset + PART_BYTES]
            part = self.out / f"bundle.part{len(parts):02d}"
            part.write_bytes(chunk)
            parts.append({"name": part.name, "sha256": hashlib.sha256(chunk).hexdigest()})
        if len(parts) > MAX_PARTS:
            raise SystemExit(
                f"bundle of {len(data)} bytes needs {len(parts)} parts; the tool brings back {MAX_PARTS}"
            )
        manifest = {"sha256": hashlib.sha256(data).hexdigest(), "parts": parts, "runs": packed,
                    "files": [n for _, n in members]}  # fmt: skip
        (self.out / "manifest.json").write_text(json.dumps(manifest, indent=1))  # last: marks complete

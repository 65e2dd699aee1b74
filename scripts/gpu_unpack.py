"""Join and check what `scripts/gpu_session.py` brought back, and install finished checkpoints.

    python scripts/gpu_unpack.py FILES_AT [--into runs/gpu] [--install checkpoints]

FILES_AT is the folder the device tool copied $OUT to (manifest.json + bundle.partNN). Every part
and the joined tar are checked against the manifest's sha256 before anything is extracted; a
missing or damaged part stops with its name and nothing is written. --install copies each shipped
run named after a bundled config to CHECKPOINTS/NAME.safetensors with its card (NAME.md) and
curve (NAME_curve.png); other runs (second seeds, re-runs) stay in --into, for the report.
Every run that came back is added to INTO/shipped.txt; the next device calls carry that file, so
that `gpu_session.py` trains none of them again, also on a machine that lost its runs.
"""

import argparse
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run by path from anywhere
from ann.training.config import list_configs  # noqa: E402
from ann.training.export import install  # noqa: E402


class BundleError(ValueError):
    pass


def join(folder: Path) -> tuple[bytes, dict]:
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: no manifest (was the device call's $OUT fetched?)")
    manifest = json.loads(manifest_path.read_text())
    chunks = []
    for part in manifest["parts"]:
        path = folder / part["name"]
        if not path.is_file():
            raise BundleError(f"{path}: part missing")
        chunk = path.read_bytes()
        if hashlib.sha256(chunk).hexdigest() != part["sha256"]:
            raise BundleError(f"{path}: sha256 does not match the manifest (damaged in transfer)")
        chunks.append(chunk)
    data = b"".join(chunks)
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        raise BundleError(f"{folder}: joined bundle does not match the manifest's sha256")
    return data, manifest


def unpack(folder: Path, into: Path) -> dict:
    data, manifest = join(folder)
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as bundle:
        bundle.extractall(into, filter="data")  # refuses absolute paths, '..' and links out
    shipped = into / "shipped.txt"
    back = set(shipped.read_text().split()) if shipped.exists() else set()
    shipped.write_text("".join(f"{name}\n" for name in sorted(back | set(manifest["runs"]))))
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="where the device tool put $OUT's files")
    parser.add_argument("--into", type=Path, default=Path("runs/gpu"))
    parser.add_argument("--install", type=Path, metavar="CHECKPOINTS", help="copy finished runs here")
    args = parser.parse_args(argv)
    try:
        manifest = unpack(args.folder, args.into)
    except (BundleError, tarfile.TarError, OSError, json.JSONDecodeError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"unpacked {len(manifest['files'])} files into {args.into}; runs: {manifest['runs'] or 'none'}")
    bundled = set(list_configs())
    for name in manifest["runs"] if args.install else []:
        if name not in bundled:
            print(f"kept in {args.into / name} (not a bundled config: not a shipped checkpoint)")
            continue
        if not (args.into / name / "model_card.md").is_file():
            print(f"error: {name} came without its model card; not installed", file=sys.stderr)
            return 2
        print("installed", install(args.into / name, args.install / f"{name}.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# The device tool copies every tracked file of this checkout to the GPU machine, 64 MiB at most;
# the shipped fp16 checkpoints (about 28 MB per ResNet-18 model) would soon exceed that.
#   bash scripts/device_tree.sh hide      before device calls: checkpoints/*.safetensors leave
#                                         the index (the files stay on disk) and are ignored
#   bash scripts/device_tree.sh restore   after them: tracked again, nothing else changed
# Do not commit between the two: the commit would delete the checkpoints.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
pattern='/checkpoints/*.safetensors'
exclude=.git/info/exclude
case "${1:-}" in
  hide)
    mapfile -t files < <(git ls-files 'checkpoints/*.safetensors')
    [ ${#files[@]} -eq 0 ] || git rm -q --cached -- "${files[@]}"
    grep -qxF "$pattern" "$exclude" 2>/dev/null || echo "$pattern" >> "$exclude"
    echo "hidden from the device tree: ${#files[@]} checkpoint(s)"
    ;;
  restore)
    grep -vxF "$pattern" "$exclude" > "$exclude.tmp" || true
    mv "$exclude.tmp" "$exclude"
    mapfile -t files < <(ls checkpoints/*.safetensors 2>/dev/null || true)
    [ ${#files[@]} -eq 0 ] || git add -- "${files[@]}"
    echo "tracked again: ${#files[@]} checkpoint(s)"
    ;;
  *) echo "usage: bash scripts/device_tree.sh hide|restore" >&2; exit 2 ;;
esac

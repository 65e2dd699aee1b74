#!/usr/bin/env bash
# Train one shipped checkpoint on the lent GPU machine, in chunks that fit the device tool's
# 10-minute call limit: each call trains until ~9 minutes have passed, is killed (checkpoints are
# atomic, so SIGKILL is safe), and the next call resumes from runs/NAME/checkpoints/last.pt.
# When the run has finished, its model, card, curve and metrics are copied to $OUT.
#   usage: bash scripts/gpu_train.sh CONFIG_NAME [--set key=value ...]
set -uo pipefail
name="$1"; shift
out="runs/$name"
resume=()
[ -f "$out/checkpoints/last.pt" ] && resume=(--resume)
timeout --signal=KILL "${ANN_CHUNK_SECONDS:-540}" python -m ann.train "$name" --out "$out" "${resume[@]}" "$@"
status=$?
if [ -f "$out/model.safetensors" ] && [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/$name"
    cp "$out/model.safetensors" "$OUT/$name/$name.safetensors"
    cp "$out"/model_card.md "$out"/training_curve.png "$out"/metrics.jsonl "$out"/config.toml "$OUT/$name/"
    sha256sum "$OUT/$name/$name.safetensors"
fi
echo "exit status $status (137 = chunk ended, resume with the same command)"

#!/usr/bin/env bash
# Set up if needed, then stream a talking-avatar video with the embedded default model.
# Usage: bash scripts/demo.sh [PORTRAIT SPEECH OUT.mp4]   (defaults: example_inputs/portrait.png, a drawn held-out
# SynthTalk portrait, and example_inputs/speech.wav, a 3 s LibriVox recording; see example_inputs/README.md; out/demo.mp4).
# The model is echotorrent_core/default_model; until it ships, `echotorrent generate` says so and exits non-zero.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"

image="${1:-$ROOT/example_inputs/portrait.png}"
audio="${2:-$ROOT/example_inputs/speech.wav}"
out="${3:-$ROOT/out/demo.mp4}"
mkdir -p "$(dirname "$out")"
echo "[demo] echotorrent generate --image $image --audio $audio --out $out"
exec "$ROOT/.venv/bin/echotorrent" generate --image "$image" --audio "$audio" --out "$out"

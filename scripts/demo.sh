#!/usr/bin/env bash
# Set up if needed, then generate a talking-avatar video with the embedded default model.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"

echo "[demo] no default EchoTorrent model is shipped yet, so there is nothing to generate with." >&2
echo "[demo] Once one is, this script runs: echotorrent generate ... (see README.md)." >&2
exit 1

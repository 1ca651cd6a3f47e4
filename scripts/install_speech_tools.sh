#!/usr/bin/env bash
# Install Debian's offline speech tools for SynthTalk when missing: espeak-ng (phoneme events), festival with the
# HTS voice festvox-us-slt-hts, flite, and pocketsphinx-testdata (public-domain LibriVox recordings with transcripts).
# Needs apt-get and root (CI runs as root on Debian); otherwise it says which tools are missing and exits 0, and the
# tests that need them fail naming the missing tool (they do not skip).
set -euo pipefail

PACKAGES=(espeak-ng festival festvox-us-slt-hts flite pocketsphinx-testdata)
log() { echo "[setup] $*"; }

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -eq 0 ]; then
  log "speech tools present: ${PACKAGES[*]}"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ]; then
  log "missing speech tools ${missing[*]} and no root apt-get to install them: install them by hand"
  exit 0
fi
log "installing ${missing[*]} with apt-get"
start=$SECONDS
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
log "speech tools installed in $((SECONDS - start)) s"

#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (tests/browser) when /usr/bin/chromium is missing.
# Needs apt-get and root (CI runs as root on Debian); otherwise it says why and exits 0, and the browser tests fail naming it.
# Exits non-zero only when apt-get was available and the install failed.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
log() { echo "[setup] $*"; }

if [ -x "$CHROMIUM" ]; then
  log "chromium present: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "no $CHROMIUM and no apt-get: the browser tests will fail until it is installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  log "no $CHROMIUM and not root (apt-get needs root): the browser tests will fail until it is installed"
  exit 0
fi

log "installing Debian's chromium with apt-get for the browser tests (about 130 packages)"
start=$SECONDS
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
log "chromium installed in $((SECONDS - start)) s: $("$CHROMIUM" --version)"

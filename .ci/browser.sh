#!/usr/bin/env bash
# Install Debian's Chromium for the Playwright browser tests (tests/webui, marker "browser").
# Idempotent: does nothing when /usr/bin/chromium already runs. Playwright's own browser download
# (`playwright install`) needs the internet and is not used; the tests launch /usr/bin/chromium.
set -euo pipefail
if [ -x /usr/bin/chromium ] && /usr/bin/chromium --version >/dev/null 2>&1; then
  echo "chromium present: $(/usr/bin/chromium --version)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version

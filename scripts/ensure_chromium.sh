#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through Playwright (no browser download: `playwright install` cannot
# work here). Make sure `chromium` is there, installing Debian's package when run as root.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium not found: installing Debian's chromium package (for the browser tests)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "The browser tests need Debian's chromium: 'sudo apt-get install chromium', then run this again." >&2
exit 1

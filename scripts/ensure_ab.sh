#!/usr/bin/env bash
# The bench (and its quick pass in make test) drives HTTP load with ab: install Debian's apache2-utils as root.
set -euo pipefail
command -v ab >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "ab not found: installing Debian's apache2-utils"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apache2-utils >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq apache2-utils >/dev/null; }
  exit 0
fi
echo "The bench needs ab: 'sudo apt-get install apache2-utils', then run this again." >&2
exit 1

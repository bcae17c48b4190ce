#!/usr/bin/env bash
# TorchServe's frontend is Java: make sure a Java 17+ runtime is there, installing Debian's when run as root.
set -euo pipefail
version() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }
if command -v java >/dev/null 2>&1 && [ "$(version)" -ge 17 ] 2>/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Java 17 not found: installing Debian's openjdk-17-jre-headless"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  exit 0
fi
echo "TorchServe needs Java 17 or newer (found: $(version || echo none))." >&2
echo "Install it, e.g. 'sudo apt-get install openjdk-17-jre-headless', and run this again." >&2
exit 1

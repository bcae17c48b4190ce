#!/usr/bin/env bash
# The tests start a throwaway PostgreSQL (tests/postgres.py: the shared-state tests of issue 15): make sure Debian's
# server binaries (initdb, pg_ctl) and libpq5 are there, installing the postgresql package when run as root.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL not found: installing Debian's postgresql (the tests start their own server, not this one)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql libpq5 >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql libpq5 >/dev/null; }
  exit 0
fi
echo "The tests need PostgreSQL's server: 'sudo apt-get install postgresql', then run this again." >&2
exit 1

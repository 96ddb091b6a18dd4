#!/usr/bin/env bash
# The reload benchmark (bench/reload.lua) with wrk as its load when it can
# be installed; without it, the benchmark uses a bounded Python loop.
set -eu
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y -qq wrk >/dev/null 2>&1 || echo "wrk could not be installed: the Python load is used" >&2
fi
exec bin/pm run bench/reload.lua "$@"

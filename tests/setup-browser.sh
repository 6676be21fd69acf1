#!/bin/sh
# Debian's chromium, for the test that opens the HTML leaderboard in a headless browser
# (tests/test_leaderboard.py). Installed where it is missing and apt-get runs as root (Debian,
# CI); elsewhere that one test is skipped, and fails under CI=true.
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "tests/setup-browser.sh: no chromium, and no apt-get as root to install it" >&2
fi

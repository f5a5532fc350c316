#!/usr/bin/env bash
# Install Debian's chromium for the browser tests when it is missing.
# Never fails the build: where it cannot be installed, the browser tests skip and say why.
set -u
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "could not install chromium; browser tests will be skipped"
else
  echo "chromium is not installed and cannot be installed here (need root and apt-get); browser tests will be skipped"
fi
exit 0

#!/usr/bin/env bash
# Make headless Chromium available for the report's browser tests (tests/test_report_browser.py)
# and `safeglass report --check`. Installs Debian's chromium with apt-get when it is missing and
# we are root, saying first what it installs and why; otherwise says what to do. It always exits 0: the
# browser tests themselves fail with the same hint when no browser is there (tests/conftest.py `require`).
set -u

say() { echo "ensure-chromium: $*"; }

if [ -n "${SAFEGLASS_CHROMIUM:-}" ] && [ -x "${SAFEGLASS_CHROMIUM}" ]; then
  say "using SAFEGLASS_CHROMIUM=${SAFEGLASS_CHROMIUM}"
  exit 0
fi
for name in chromium chromium-browser google-chrome google-chrome-stable chrome; do
  if path="$(command -v "$name" 2>/dev/null)"; then
    say "found $path"
    exit 0
  fi
done

if [ "$(id -u)" != "0" ]; then
  say "chromium not found and not root, so not installing it; the browser tests will fail."
  say "to enable them: sudo apt-get install -y chromium  (or set SAFEGLASS_CHROMIUM=/path/to/chrome)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  say "chromium not found and apt-get is unavailable; the browser tests will fail."
  say "install Chromium or Chrome with your package manager, or set SAFEGLASS_CHROMIUM=/path/to/chrome"
  exit 0
fi

say "the report's browser tests (tests/test_report_browser.py) and \`safeglass report --check\` need headless Chromium,"
say "and none was found: installing Debian's chromium package system-wide, as root, with"
say "  apt-get update && apt-get install -y --no-install-recommends chromium"
say "(to avoid this, install a browser yourself or set SAFEGLASS_CHROMIUM=/path/to/chrome first; without one the"
say " browser tests fail, naming this script)"
# Debian ships a real chromium package; on Ubuntu the package is a snap shim that does not work in
# containers, which ends up in the "still not found" branch below.
if DEBIAN_FRONTEND=noninteractive apt-get update -qq \
   && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; then
  if command -v chromium >/dev/null 2>&1; then
    say "installed $(command -v chromium)"
    exit 0
  fi
fi
say "warning: could not install chromium; the browser tests will fail."
exit 0

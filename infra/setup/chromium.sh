#!/usr/bin/env bash
# Headless Chromium for the report's real-browser test; prints its path.
#
# Why: tests/algorithms/test_report.py opens the rendered territory report in a real browser to
# prove plotly drew the charts offline; a mock cannot prove that. CI installs it through `make test`.
#
# Idempotent and quiet: if /usr/bin/chromium exists, it only prints the path. Otherwise it installs
# the Debian package `chromium` with apt-get (needs root), running `apt-get update` first only when
# the package is not known to apt yet. On failure: one line on stderr, non-zero exit.
#   bash infra/setup/chromium.sh        # -> /usr/bin/chromium
set -euo pipefail

CHROMIUM=/usr/bin/chromium

die() { echo "chromium.sh: error: $*" >&2; exit 1; }

if [ ! -x "$CHROMIUM" ]; then
    [ "$(id -u)" -eq 0 ] || die "$CHROMIUM missing and not root: install the Debian package 'chromium'"
    command -v apt-get >/dev/null 2>&1 || die "$CHROMIUM missing and no apt-get: install Chromium by hand"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show chromium >/dev/null 2>&1; then
        apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed"
    fi
    reinstall=()  # the package is there but its binary is gone: install it again
    dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed" && reinstall=(--reinstall)
    apt-get install -y -qq --no-install-recommends "${reinstall[@]}" chromium >/dev/null 2>&1 \
        || die "apt-get install chromium failed (run 'apt-get install -y chromium' to see why)"
    [ -x "$CHROMIUM" ] || die "package installed but $CHROMIUM is still missing"
fi
echo "$CHROMIUM"

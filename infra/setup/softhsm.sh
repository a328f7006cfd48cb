#!/usr/bin/env bash
# SoftHSM2 (a PKCS#11 software token) for the HSM master-key tests; prints its module path.
#
# Why: tests/pseudonym/test_pseudonym_kms_pkcs11.py proves that the key store's data keys are
# wrapped inside a PKCS#11 token by a key that never leaves it (pdp/pseudonym/pkcs11.py); a mock
# cannot prove that. CI installs it through `make test`. In production the module is the HSM
# vendor's (PDP_PKCS11_MODULE), not this one.
#
# Idempotent and quiet: if the module and softhsm2-util exist, it only prints the module path.
# Otherwise it installs the Debian package `softhsm2` with apt-get (needs root), running
# `apt-get update` first only when the package is not known to apt yet. On failure: one line on
# stderr, non-zero exit.
#   bash infra/setup/softhsm.sh        # -> /usr/lib/softhsm/libsofthsm2.so
set -euo pipefail

MODULE=/usr/lib/softhsm/libsofthsm2.so
UTIL=/usr/bin/softhsm2-util

die() { echo "softhsm.sh: error: $*" >&2; exit 1; }

if [ ! -f "$MODULE" ] || [ ! -x "$UTIL" ]; then
    [ "$(id -u)" -eq 0 ] || die "$MODULE missing and not root: install the Debian package 'softhsm2'"
    command -v apt-get >/dev/null 2>&1 || die "$MODULE missing and no apt-get: install SoftHSM2 by hand"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show softhsm2 >/dev/null 2>&1; then
        apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed"
    fi
    reinstall=()  # a package is there but a file of it is gone: install them again
    for pkg in softhsm2 libsofthsm2; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && reinstall=(--reinstall)
    done
    # the module is in libsofthsm2, softhsm2-util in softhsm2 (which depends on it)
    apt-get install -y -qq --no-install-recommends "${reinstall[@]}" softhsm2 libsofthsm2 >/dev/null 2>&1 \
        || die "apt-get install softhsm2 failed (run 'apt-get install -y softhsm2' to see why)"
    [ -f "$MODULE" ] && [ -x "$UTIL" ] || die "package installed but $MODULE or $UTIL is still missing"
fi
echo "$MODULE"

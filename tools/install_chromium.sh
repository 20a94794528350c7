#!/bin/sh
# Install Debian's Chromium for the browser tests of `priming browse` (Playwright drives
# /usr/bin/chromium; Playwright's own browser download is not used). Never fails the
# build: without apt, or without permission, the browser tests skip and print why.
set -u
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium: no apt-get here; the Chromium browser tests will be skipped" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_chromium: not root and no passwordless sudo; run 'apt-get install -y chromium'" \
             "as root, or the Chromium browser tests will be skipped" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
    || { $SUDO apt-get update >/dev/null 2>&1 \
         && $SUDO apt-get install -y --no-install-recommends chromium >/dev/null 2>&1; } \
    || echo "install_chromium: apt-get install chromium failed; the browser tests will be skipped" >&2
exit 0

#!/usr/bin/env bash
# Makes a Python virtual environment with pip at $1, unless one is there.
# Pip is installed as a second step so that, when it fails, its own words
# (and the disk's free space, the usual cause) are printed instead of venv's
# one line about a failed subprocess.
set -euo pipefail
venv=$1
[ -x "$venv/bin/pip" ] && exit 0
rm -rf "$venv"
python3 -m venv --without-pip "$venv"
if ! "$venv/bin/python" -m ensurepip --upgrade --default-pip; then
    echo "could not install pip into $venv; free space where it lives:" >&2
    df -h "$venv" >&2
    exit 1
fi

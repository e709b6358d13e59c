#!/usr/bin/env bash
# Creates (or reuses) the Python venv the SDK conformance scripts run in:
# target/sdk-venv, with the pinned SDKs of tests/sdk/requirements.txt.
# Idempotent: a venv whose installed set already matches is left alone.
# Prints the venv's python path on its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${SDK_VENV:-$root/target/sdk-venv}"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"

python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
    echo "$want" > "$stamp"
fi
echo "$venv/bin/python"

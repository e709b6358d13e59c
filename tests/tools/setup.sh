#!/usr/bin/env bash
# Installs, under target/, the real third-party programs the end-to-end tests
# drive: json-server (npm) as a legacy REST upstream, and the official KMS
# SDKs (PyPI) in a virtual environment. Idempotent; pinned versions.
# Called by the tests themselves (once per test binary), so `cargo test` is
# the whole test command.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="${CARGO_TARGET_DIR:-$root/target}/e2e-tools"
mkdir -p "$tools"
exec 9>"$tools/.lock"
flock 9

JSON_SERVER_VERSION=0.17.4
if [ ! -x "$tools/npm/node_modules/.bin/json-server" ]; then
  npm install --silent --no-audit --no-fund --prefix "$tools/npm" "json-server@$JSON_SERVER_VERSION" >&2
fi

venv="$tools/venv"
req="$root/tests/sdk/requirements.txt"
stamp="$venv/.requirements"
if [ -f "$req" ]; then
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if ! cmp -s "$req" "$stamp"; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
    cp "$req" "$stamp"
  fi
fi
echo "$tools"

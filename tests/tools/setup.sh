#!/usr/bin/env bash
# Installs, under target/, json-server (npm), the legacy REST upstream the
# end-to-end tests drive. Idempotent; pinned version. (The official KMS SDKs
# are installed by tests/sdk/setup.sh.)
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

echo "$tools"

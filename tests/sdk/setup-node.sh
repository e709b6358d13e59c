#!/usr/bin/env bash
# Installs (or reuses), under target/sdk-node, the official Node KMS SDKs the
# tests/sdk/*.mjs flows drive: exactly the versions of tests/sdk/node/
# package.json, transitive dependencies pinned by its package-lock.json
# (`npm ci`, integrity-checked). Idempotent: an install whose lock file
# already matches is left alone. flock'd, because several test binaries run
# it at once. Prints the install directory (holding node_modules/) on its
# last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${SDK_NODE_DIR:-${CARGO_TARGET_DIR:-$root/target}/sdk-node}"
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

stamp="$dir/.package-lock.sha256"
want="$(cat "$here/node/package.json" "$here/node/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -d "$dir/node_modules" ]; then
  cp "$here/node/package.json" "$here/node/package-lock.json" "$dir/"
  # stdout carries only the result line; npm's chatter goes to stderr
  npm ci --silent --no-audit --no-fund --prefix "$dir" >&2
  echo "$want" > "$stamp"
fi
echo "$dir"

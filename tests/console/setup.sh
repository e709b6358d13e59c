#!/usr/bin/env bash
# Installs (or reuses), under target/console-node, the playwright-core that
# tests/console/console_flow.mjs drives Chromium with: exactly the version of
# tests/console/package.json, pinned by its package-lock.json (`npm ci`,
# integrity-checked). playwright-core downloads no browser: the test uses
# the system's Chromium (Debian's `chromium`). Idempotent; flock'd. Prints the
# install directory (holding node_modules/) on its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${CONSOLE_NODE_DIR:-${CARGO_TARGET_DIR:-$root/target}/console-node}"
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

stamp="$dir/.package-lock.sha256"
want="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || [ ! -d "$dir/node_modules" ]; then
  cp "$here/package.json" "$here/package-lock.json" "$dir/"
  # stdout carries only the result line; npm's chatter goes to stderr
  npm ci --silent --no-audit --no-fund --prefix "$dir" >&2
  echo "$want" > "$stamp"
fi
echo "$dir"

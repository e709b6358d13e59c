#!/usr/bin/env bash
# Installs, under target/, Tencent Cloud's official Node.js SDK — its common
# client, `tencentcloud-sdk-nodejs-common` (the npm registry has no separate
# KMS package; the common client's generic `request(action, params)` is what
# a Node.js KMS caller uses). Pinned, idempotent, serialized with flock so
# parallel test binaries install once. Prints the install prefix (its
# node_modules/ holds the SDK) on its last line.
# Called by tests/kms_tencent.rs itself, so `cargo test` is the whole command.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
prefix="${CARGO_TARGET_DIR:-$root/target}/sdk-node-tencent"
mkdir -p "$prefix"
exec 9>"$prefix/.lock"
flock 9

TENCENT_NODE_SDK_VERSION=4.1.220
stamp="$prefix/.installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$TENCENT_NODE_SDK_VERSION" ]; then
  npm install --silent --no-audit --no-fund --save-exact --prefix "$prefix" \
    "tencentcloud-sdk-nodejs-common@$TENCENT_NODE_SDK_VERSION" >&2
  echo "$TENCENT_NODE_SDK_VERSION" > "$stamp"
fi

echo "$prefix"

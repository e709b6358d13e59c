#!/usr/bin/env bash
# Runs every cargo-fuzz target of sealgate for a bounded time.
#
#   bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60; with no TARGET every target runs, one
# after another. Installs cargo-fuzz when it is missing. The toolchain here is
# stable, and cargo-fuzz passes nightly-only flags (-Zsanitizer, sancov), so
# this sets RUSTC_BOOTSTRAP=1 for the fuzz build only. No sanitizer by default
# (the crate forbids `unsafe`; libFuzzer still finds panics, overflows, hangs
# and runaway memory); SANITIZER=address to use ASan.
#
# Seeds come from fuzz/seeds/<target> (checked in); the growing corpus lives
# in fuzz/corpus/<target> and crashes land in fuzz/artifacts/<target> (both
# ignored by git). A crash is made a regression test by copying it into
# fuzz/regressions/<target>/ — tests/fuzz_regressions.rs replays that folder
# and the seeds through the same check functions in the normal test suite.
# Exits non-zero when any target found a crash.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(envelope policy_load json_rewrite tencent_wire tencent_sign
           alibaba_wire alibaba_sign alibaba_instance keys_blob)
fi

if ! cargo install --list | grep -q '^cargo-fuzz '; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

cd "$here"
# Pin the fuzz build to the versions the main build uses.
[ -f Cargo.lock ] || cp ../Cargo.lock Cargo.lock
export RUSTC_BOOTSTRAP=1
# A target dir of its own: its flags differ from the main build's anyway.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$here/target}"
sanitizer="${SANITIZER:-none}"

cargo fuzz build --fuzz-dir "$here" --sanitizer "$sanitizer" >&2

failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== $t: ${secs}s" >&2
  if ! cargo fuzz run --fuzz-dir "$here" --sanitizer "$sanitizer" "$t" \
      "corpus/$t" "seeds/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"artifacts/$t.log" 2>&1; then
    failed+=("$t")
    echo "!! $t found a crash; see fuzz/artifacts/$t/ and fuzz/artifacts/$t.log" >&2
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+.*DONE' "artifacts/$t.log" >&2 || true
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "all ${#targets[@]} targets ran ${secs}s each without a crash" >&2

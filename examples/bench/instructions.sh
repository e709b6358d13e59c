#!/usr/bin/env bash
# User-space instructions per request, sealgate beside nginx, counted by
# valgrind's callgrind: the same total for the same binary and input whatever
# else the machine is doing, so a change can be judged on a busy machine.
#
#   examples/bench/instructions.sh                 # every row, 300 requests each
#   examples/bench/instructions.sh pass-get1k 500  # one row, 500 requests
#   rows: pass-post pass-get1k pass-get16k seal5 open5 open5-16k
#         nginx-pass-post nginx-pass-get1k nginx-pass-get16k
#   env: LEVEL=info counts sealgate with its access log on (default warn: off)
#
# Builds release with line tables into target/callgrind (so the profiles name
# source lines), starts the benchmark upstream, then the server under
# callgrind; sends the requests twice over one kept-alive connection (curl),
# zeroing the counters after the first pass, and divides the second pass's
# total by the request count. Each profile is kept as $WORK/ROW.callgrind:
# `callgrind_annotate --inclusive=yes FILE` shows where the instructions go.
# Kernel time is not counted: see run.sh for CPU per request and req/s.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/examples/bench"
ROWS=(${1:-pass-post pass-get1k pass-get16k seal5 open5 open5-16k nginx-pass-post nginx-pass-get1k nginx-pass-get16k})
N=${2:-300}
LEVEL=${LEVEL:-warn}
UP=19101; SG=19102; NG=19103
WORK=$(mktemp -d /tmp/sealgate-instr.XXXXXX)
for tool in valgrind callgrind_control callgrind_annotate curl; do
    command -v $tool >/dev/null || { echo "needs $tool (Debian: valgrind, curl)" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

log() { printf '[instructions] %s\n' "$*" >&2; }
log "building release with line tables into target/callgrind"
(cd "$ROOT" && CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR="$ROOT/target/callgrind" \
    cargo build --release --quiet --bin sealgate --example bench_upstream)
BIN="$ROOT/target/callgrind/release"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
up() { for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.2; done; return 1; }

"$BIN/examples/bench_upstream" --write-bodies "$WORK"
"$BIN/examples/bench_upstream" "127.0.0.1:$UP" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
cat > "$WORK/sealgate.toml" <<CONF
listen = "127.0.0.1:$SG"
upstream = "http://127.0.0.1:$UP"
policies = "$HERE/policies"
data_dir = "$WORK/data"
[log]
format = "json"
level = "$LEVEL"
CONF
up "$UP"

# the open rows read bodies sealed once through sealgate itself
"$BIN/sealgate" serve --config "$WORK/sealgate.toml" >"$WORK/seal-once.log" 2>&1 &
P=$!
up "$SG"
for n in 1 5; do
    for size in 1k 16k; do
        curl -sf -o /dev/null -X PUT -H 'content-type: application/json' \
            --data-binary "@$WORK/plain-$size.json" "http://127.0.0.1:$SG/seal$n/body/$n-$size"
    done
done
kill "$P"; wait "$P" 2>/dev/null || true

mkdir -p "$WORK/nginx"
sed -e "s|@WORKERS@|1|" -e "s|@PORT@|$NG|" -e "s|@UPSTREAM@|127.0.0.1:$UP|" -e "s|@DIR@|$WORK/nginx|g" \
    "$HERE/nginx.conf.in" > "$WORK/nginx/nginx.conf"
# one process: callgrind follows the worker, not a master that forks it
sed -i "s/^daemon off;/daemon off; master_process off;/" "$WORK/nginx/nginx.conf"

POST=(-X POST -H 'content-type: application/json' --data-binary "@$WORK/plain-1k.json")
for row in "${ROWS[@]}"; do
    case $row in
        *pass-post) path=/plain/in; args=("${POST[@]}") ;;
        *pass-get1k) path=/plain/body/1-1k; args=() ;;
        *pass-get16k) path=/plain/body/1-16k; args=() ;;
        seal5) path=/seal5/in; args=("${POST[@]}") ;;
        open5) path=/open5/body/5-1k; args=() ;;
        open5-16k) path=/open5/body/5-16k; args=() ;;
        *) echo "unknown row $row" >&2; exit 2 ;;
    esac
    out="$WORK/$row.callgrind"
    case $row in
        nginx-*)
            valgrind --tool=callgrind --callgrind-out-file="$out" "$NGINX" -c "$WORK/nginx/nginx.conf" \
                -p "$WORK/nginx" -e "$WORK/nginx/error.log" >"$WORK/$row.valgrind" 2>&1 &
            port=$NG ;;
        *)
            RUST_LOG=$LEVEL valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN/sealgate" serve \
                --config "$WORK/sealgate.toml" --log-format json >"$WORK/$row.valgrind" 2>&1 &
            port=$SG ;;
    esac
    SPID=$!
    PIDS+=("$SPID")
    up "$port"
    urls=(); for _ in $(seq "$N"); do urls+=("http://127.0.0.1:$port$path"); done
    curl -sf "${args[@]}" "${urls[@]}" >/dev/null    # warm-up: connections, caches, data keys
    callgrind_control -z "$SPID" >/dev/null 2>&1
    curl -sf "${args[@]}" "${urls[@]}" >/dev/null
    callgrind_control -d "$SPID" >/dev/null 2>&1
    kill "$SPID"; wait "$SPID" 2>/dev/null || true
    dump=$(ls -t "$out".* | head -1)
    mv "$dump" "$out"
    total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    printf '%-18s %8d instructions/request\n' "$row" $((total / N))
done
log "profiles in $WORK"

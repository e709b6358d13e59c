#!/usr/bin/env bash
# sealgate against nginx, side by side, in one run.
#
#   examples/bench/run.sh            # full: 3 repetitions, ~10 minutes, + a 60 s sustained run
#   examples/bench/run.sh --quick    # 1 repetition, ~3 minutes
#   options: --no-pin (let every process float over all cores), --out DIR
#
# Installs wrk and nginx from Debian if missing, builds release, starts a
# fixed-response upstream, and measures, one target at a time:
#   direct upstream | nginx reverse proxy | sealgate pass-through |
#   sealgate sealing 1/5/20 fields of a ~1 KB POST body |
#   sealgate opening 1/5/20 fields of ~1 KB and ~16 KB GET bodies |
#   the same with the data-key cache off.
# All servers run at once (idle ones cost nothing); repetitions go round all
# rows, so a burst of outside load spreads over rows instead of sinking one.
# Saturation: wrk (1 thread, $CONNS connections). Latency: examples/bench_load.rs,
# an open-loop generator (wrk2 is not in Debian) at half of each row's own
# saturated rate; nginx is also measured at the rate of sealgate's 5-field
# rows, for the p99 sealgate adds. CPU per request: utime+stime of the
# server's processes from /proc over the saturation run. Peak RSS: VmHWM,
# reset before each run through /proc/PID/clear_refs.
# Everything listens on 127.0.0.1 only. Results: $OUT/results.jsonl and the
# table report.py prints (also written to $OUT/table.md).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/examples/bench"
QUICK=0
PIN=1
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-pin) PIN=0 ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    REPS=1; SAT_SECS=2; LAT_SECS=2; WARM_SECS=1; SUSTAIN_SECS=0
else
    REPS=3; SAT_SECS=3; LAT_SECS=3; WARM_SECS=1; SUSTAIN_SECS=60
fi
CONNS=32
UP_PORT=18000; NGINX_PORT=18081; SG_PORT=18080; SG_COLD_PORT=18082
WORK=$(mktemp -d /tmp/sealgate-bench.XXXXXX)
OUT=${OUT:-$WORK}
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: > "$RESULTS"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- tools -------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} with apt-get"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${need[@]}" >/dev/null || {
        # nginx-light is not in every release; the full package will do
        need=("${need[@]/nginx-light/nginx}")
        $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
    }
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ---- build ---------------------------------------------------------------
log "building release (sealgate, bench_upstream, bench_load)"
(cd "$ROOT" && cargo build --release --quiet --bin sealgate --example bench_upstream --example bench_load)
# copied out at once: a shared CARGO_TARGET_DIR may be rebuilt by someone else mid-run
mkdir -p "$WORK/bin/examples"
T="${CARGO_TARGET_DIR:-$ROOT/target}/release"
cp "$T/sealgate" "$WORK/bin/"
cp "$T/examples/bench_upstream" "$T/examples/bench_load" "$WORK/bin/examples/"
BIN="$WORK/bin"

# ---- pinning ---------------------------------------------------------------
NCPU=$(nproc)
if [ "$PIN" = 1 ] && [ "$NCPU" -ge 2 ]; then
    # the server under test gets the last core; load generator and upstream the rest
    SERVER_CPUS=$((NCPU - 1)); LOAD_CPUS="0-$((NCPU - 2))"
    ON_SERVER=(taskset -c "$SERVER_CPUS"); ON_LOAD=(taskset -c "$LOAD_CPUS")
    WORKERS=1
else
    PIN=0; ON_SERVER=(); ON_LOAD=(); WORKERS=$NCPU
fi

PIDS=()
cleanup() {
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
}
trap cleanup EXIT

listening() { curl -s -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null; }
for port in $UP_PORT $NGINX_PORT $SG_PORT $SG_COLD_PORT; do
    if listening "$port"; then
        echo "port $port is already in use on 127.0.0.1: stop whatever holds it first" >&2
        exit 1
    fi
done
wait_port() { # port pid: the process we started answers there
    for _ in $(seq 1 100); do
        kill -0 "$2" 2>/dev/null || { echo "process $2 exited before listening on $1" >&2; return 1; }
        if listening "$1"; then return 0; fi
        sleep 0.1
    done
    echo "nothing listening on port $1" >&2
    return 1
}

stop() { # pid
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# ---- /proc helpers -------------------------------------------------------------
family() { # pid -> pid and its children (nginx master + workers)
    echo "$1"
    pgrep -P "$1" 2>/dev/null || true
}
cpu_ticks() { # pids... -> utime+stime summed, in clock ticks
    local t=0 p f
    for p in "$@"; do
        f=$(cut -d' ' -f14,15 "/proc/$p/stat" 2>/dev/null || echo "0 0")
        t=$((t + ${f% *} + ${f#* }))
    done
    echo "$t"
}
reset_hwm() { for p in "$@"; do echo 5 > "/proc/$p/clear_refs" 2>/dev/null || true; done; }
hwm_kb() { # pids... -> VmHWM summed
    local t=0 p v
    for p in "$@"; do
        v=$(awk '/^VmHWM/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
TICK=$(getconf CLK_TCK)

# ---- the upstream and the bodies --------------------------------------------------------
"$BIN/examples/bench_upstream" --write-bodies "$WORK"
"${ON_LOAD[@]}" "$BIN/examples/bench_upstream" "127.0.0.1:$UP_PORT" >"$WORK/upstream.log" 2>&1 &
UP_PID=$!; PIDS+=("$UP_PID")
wait_port "$UP_PORT" "$UP_PID"

write_sg_config() { # file port data_dir cache_enabled
    cat > "$1" <<CONF
listen = "127.0.0.1:$2"
upstream = "http://127.0.0.1:$UP_PORT"
policies = "$HERE/policies"
data_dir = "$3"
[log]
format = "json"
level = "warn"
[cache]
enabled = $4
CONF
}
write_sg_config "$WORK/warm.toml" "$SG_PORT" "$WORK/sealgate-data" true
write_sg_config "$WORK/cold.toml" "$SG_COLD_PORT" "$WORK/sealgate-data-cold" false
start_sealgate() { # config port -> pid in LAST_PID
    # the root key sits in the data directory here: a throwaway bench store
    RUST_LOG=warn "${ON_SERVER[@]}" "$BIN/sealgate" serve --config "$1" --log-format json >>"$WORK/sealgate.log" 2>&1 &
    LAST_PID=$!; PIDS+=("$LAST_PID")
    wait_port "$2" "$LAST_PID"
}

log "sealing the response bodies once, through sealgate itself"
start_sealgate "$WORK/warm.toml" "$SG_PORT"
SG_PID=$LAST_PID
for n in 1 5 20; do
    for size in 1k 16k; do
        curl -sf -o /dev/null -X PUT -H 'content-type: application/json' \
            --data-binary "@$WORK/plain-$size.json" "http://127.0.0.1:$SG_PORT/seal$n/body/$n-$size"
        stored=$(curl -sf "http://127.0.0.1:$UP_PORT/x/body/$n-$size")
        got=$(grep -o '"sg1\.' <<<"$stored" | wc -l)
        [ "$got" = "$n" ] || { echo "expected $n envelopes in body $n-$size, found $got" >&2; exit 1; }
        curl -sf "http://127.0.0.1:$SG_PORT/open$n/body/$n-$size" | cmp -s - "$WORK/plain-$size.json" \
            || { echo "body $n-$size does not open back to the original" >&2; exit 1; }
        printf '{"kind":"body","name":"%s-%s","plain_bytes":%d,"sealed_bytes":%d}\n' "$n" "$size" \
            "$(wc -c < "$WORK/plain-$size.json")" "${#stored}" >> "$RESULTS"
    done
done
stop "$SG_PID"
# the cache-off instance runs on a copy of the same store, so it opens the same envelopes
cp -a "$WORK/sealgate-data" "$WORK/sealgate-data-cold"

# ---- every server up at once (idle ones cost nothing), pinned to the server core -------------
mkdir -p "$WORK/nginx"
sed -e "s|@WORKERS@|$WORKERS|" -e "s|@PORT@|$NGINX_PORT|" -e "s|@UPSTREAM@|127.0.0.1:$UP_PORT|" \
    -e "s|@DIR@|$WORK/nginx|g" "$HERE/nginx.conf.in" > "$WORK/nginx/nginx.conf"
"${ON_SERVER[@]}" "$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -e "$WORK/nginx/error.log" &
NG_PID=$!; PIDS+=("$NG_PID")
wait_port "$NGINX_PORT" "$NG_PID"
start_sealgate "$WORK/warm.toml" "$SG_PORT"; SG_PID=$LAST_PID
start_sealgate "$WORK/cold.toml" "$SG_COLD_PORT"; COLD_PID=$LAST_PID
log "nginx: $WORKERS worker(s); $([ "$PIN" = 1 ] && echo "servers pinned to CPU $SERVER_CPUS, wrk/bench_load/upstream to CPU $LOAD_CPUS" || echo "no pinning")"

# rows: name shape server-pid url body-file
# shapes: post = POST ~1 KB, small answer; get1k/get16k = GET of a sealed body
# (the baselines fetch the 1-field one, the smallest: the ratios are conservative)
P="$WORK/plain-1k.json"
N="http://127.0.0.1:$NGINX_PORT"; D="http://127.0.0.1:$UP_PORT"
S="http://127.0.0.1:$SG_PORT"; C="http://127.0.0.1:$SG_COLD_PORT"
ROWS=(
    "nginx post $NG_PID $N/plain/in $P"
    "nginx get1k $NG_PID $N/plain/body/1-1k -"
    "nginx get16k $NG_PID $N/plain/body/1-16k -"
    "direct post $UP_PID $D/plain/in $P"
    "direct get1k $UP_PID $D/plain/body/1-1k -"
    "direct get16k $UP_PID $D/plain/body/1-16k -"
    "pass post $SG_PID $S/plain/in $P"
    "pass get1k $SG_PID $S/plain/body/1-1k -"
    "pass get16k $SG_PID $S/plain/body/1-16k -"
)
for n in 1 5 20; do
    ROWS+=("seal-$n post $SG_PID $S/seal$n/in $P" "seal-$n-cold post $COLD_PID $C/seal$n/in $P")
    for size in 1k 16k; do
        ROWS+=("open-$n get$size $SG_PID $S/open$n/body/$n-$size -"
               "open-$n-cold get$size $COLD_PID $C/open$n/body/$n-$size -")
    done
done

# ---- saturation: wrk; the repetitions go round all rows, so a burst of
# outside load hits one repetition of many rows rather than every repetition of one
declare -A RPS
sat_run() { # rep row shape pid url body
    local rep=$1 row=$2 shape=$3 spid=$4 url=$5 body=$6
    local args=(-t1 -c"$CONNS" --timeout 5s)
    [ "$body" = - ] || args+=(-s "$HERE/post.lua")
    local pids; mapfile -t pids < <(family "$spid")
    if [ "$rep" = 1 ]; then
        BENCH_BODY="$body" "${ON_LOAD[@]}" wrk "${args[@]}" -d"${WARM_SECS}s" "$url" >/dev/null
    fi
    reset_hwm "${pids[@]}"
    local c0 c1 out rps reqs non2xx errs load
    load=$(cut -d' ' -f1 /proc/loadavg)
    c0=$(cpu_ticks "${pids[@]}")
    out=$(BENCH_BODY="$body" "${ON_LOAD[@]}" wrk "${args[@]}" -d"${SAT_SECS}s" "$url")
    c1=$(cpu_ticks "${pids[@]}")
    rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
    reqs=$(awk '/requests in/{print $1}' <<<"$out")
    non2xx=$(awk '/Non-2xx/{print $NF}' <<<"$out"); non2xx=${non2xx:-0}
    errs=$(awk -F'[ ,]+' '/Socket errors/{print $4+$6+$8+$10}' <<<"$out"); errs=${errs:-0}
    printf '{"row":"%s","shape":"%s","kind":"sat","rep":%d,"rps":%s,"requests":%s,"non2xx":%s,"errors":%s,"cpu_us_per_req":%s,"hwm_kb":%s,"loadavg":%s}\n' \
        "$row" "$shape" "$rep" "${rps:-0}" "${reqs:-0}" "$non2xx" "$errs" \
        "$(awk -v d=$((c1 - c0)) -v n="${reqs:-0}" -v t="$TICK" 'BEGIN{printf "%.2f", (n>0 ? d*1e6/t/n : 0)}')" \
        "$(hwm_kb "${pids[@]}")" "$load" >> "$RESULTS"
    RPS["$row/$shape"]+="${rps:-0} "
    [ "$non2xx" = 0 ] && [ "$errs" = 0 ] || log "WARNING: $row [$shape]: $non2xx non-2xx, $errs socket errors"
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]+0}'; }

for rep in $(seq 1 "$REPS"); do
    log "saturation, repetition $rep/$REPS (${#ROWS[@]} rows x ${SAT_SECS}s)"
    for r in "${ROWS[@]}"; do
        # shellcheck disable=SC2086
        sat_run "$rep" $r
    done
done

# ---- latency: bench_load, open loop, at half of each row's own saturated rate;
# nginx also at the rate of sealgate's 5-field rows, for the p99 each adds
lat_run() { # rep row shape url body rate [label]
    local rep=$1 row=$2 shape=$3 url=$4 body=$5 rate=$6 label=${7:-$2}
    local args=(--connections "$CONNS" --rate "$rate" --duration "$LAT_SECS")
    [ "$body" = - ] || args+=(--method POST --body "$body")
    local j
    j=$("${ON_LOAD[@]}" "$BIN/examples/bench_load" "$url" "${args[@]}")
    printf '{"row":"%s","shape":"%s","kind":"lat","rep":%d,%s\n' "$label" "$shape" "$rep" "${j#\{}" >> "$RESULTS"
}
for rep in $(seq 1 "$REPS"); do
    log "latency at half saturation, repetition $rep/$REPS"
    for r in "${ROWS[@]}"; do
        read -r row shape _ url body <<<"$r"
        rate=$(median <<<"${RPS[$row/$shape]}" | awk '{printf "%d", $1/2}')
        [ "$rate" -gt 0 ] || continue
        lat_run "$rep" "$row" "$shape" "$url" "$body" "$rate"
    done
    for pair in "post seal-5 plain/in $P" "get1k open-5 plain/body/1-1k -" "get16k open-5 plain/body/1-16k -"; do
        read -r shape row path body <<<"$pair"
        rate=$(median <<<"${RPS[$row/$shape]}" | awk '{printf "%d", $1/2}')
        [ "$rate" -gt 0 ] || continue
        lat_run "$rep" nginx "$shape" "$N/$path" "$body" "$rate" "nginx@$row"
    done
done

if [ "$SUSTAIN_SECS" -gt 0 ]; then
    log "sustained: seal-5 at saturation for ${SUSTAIN_SECS}s, RSS every 5 s"
    BENCH_BODY="$P" "${ON_LOAD[@]}" wrk -t1 -c"$CONNS" -s "$HERE/post.lua" -d"${SUSTAIN_SECS}s" "$S/seal5/in" > "$WORK/sustain.txt" &
    W=$!
    for t in $(seq 0 5 "$SUSTAIN_SECS"); do
        printf '{"kind":"rss","t":%d,"rss_kb":%s}\n' "$t" "$(rss_kb "$SG_PID")" >> "$RESULTS"
        if [ "$t" -lt "$SUSTAIN_SECS" ]; then sleep 5; fi
    done
    wait "$W" || true
    printf '{"kind":"sustain","rps":%s}\n' "$(awk '/^Requests\/sec/{print $2}' "$WORK/sustain.txt")" >> "$RESULTS"
fi
stop "$SG_PID"; stop "$COLD_PID"; stop "$NG_PID"

# ---- report --------------------------------------------------------------------------------
{
    echo "machine: $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2; exit}'), $NCPU cores;" \
        "$([ "$PIN" = 1 ] && echo "server pinned to CPU $SERVER_CPUS, load generator and upstream to CPU $LOAD_CPUS" || echo "no pinning")"
    echo "mode: $([ "$QUICK" = 1 ] && echo quick || echo full), $REPS x ${SAT_SECS}s saturation (wrk -t1 -c$CONNS) + $REPS x ${LAT_SECS}s latency (bench_load, open loop) per row"
    echo
    python3 "$HERE/report.py" "$RESULTS"
} | tee "$OUT/table.md"
log "raw results: $RESULTS"

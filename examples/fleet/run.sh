#!/usr/bin/env bash
# A sealgate fleet on loopback, no containers: a private PostgreSQL (initdb in
# a temporary directory) holding the key store, a private Redis counting the
# quotas, three sealgate nodes sharing both, and nginx in front of them
# (round robin). The demo upstream stands for the legacy API.
#
# It seals a record through node 1, reads it back through node 2 and through
# nginx, rotates the CMK with the CLI, seals through node 3 under the new
# version and reads that through node 1: every node follows the store.
#
#   bash examples/fleet/run.sh            # builds release binaries first
#   SEALGATE_BIN=target/debug/sealgate DEMO_UPSTREAM_BIN=target/debug/examples/demo_upstream \
#     bash examples/fleet/run.sh          # or use binaries you built
#
# Needs PostgreSQL's server binaries (initdb, pg_ctl), redis-server, nginx
# and curl; installs the missing ones from Debian when run as root.
# Everything it starts listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

need=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: ${need[*]} (install them, or run as root to have them installed)" >&2
    exit 1
  fi
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
nginx=$(command -v nginx || echo /usr/sbin/nginx)

if [ -z "${SEALGATE_BIN:-}" ]; then
  cargo build --release --bin sealgate --example demo_upstream
  SEALGATE_BIN=$root/target/release/sealgate
  DEMO_UPSTREAM_BIN=$root/target/release/examples/demo_upstream
fi
sealgate=$(realpath "$SEALGATE_BIN")
demo_upstream=$(realpath "${DEMO_UPSTREAM_BIN:-$root/target/release/examples/demo_upstream}")

work=$(mktemp -d /tmp/sealgate-fleet.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -f "$work/pg/postmaster.pid" ]; then
    as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# initdb and postgres refuse to run as root: run them as the postgres user then
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
wait_port() {
  for _ in $(seq 1 200); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on 127.0.0.1:$1 ($2)" >&2
  exit 1
}
say() { printf '\n== %s\n' "$*"; }

pg_port=$(free_port); redis_port=$(free_port); up_port=$(free_port); lb_port=$(free_port)
node_ports=("$(free_port)" "$(free_port)" "$(free_port)")

say "PostgreSQL on 127.0.0.1:$pg_port (private, in $work/pg)"
mkdir -p "$work/pg" && [ "$(id -u)" -ne 0 ] || chown postgres "$work/pg"
as_pg "$pg_bin/initdb" -D "$work/pg" -A trust -U sealgate >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w \
  -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
store="postgres://sealgate@127.0.0.1:$pg_port/postgres"

say "Redis on 127.0.0.1:$redis_port"
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$redis_port" redis

say "the demo upstream on 127.0.0.1:$up_port"
"$demo_upstream" "127.0.0.1:$up_port" >"$work/upstream.log" 2>&1 &
pids+=($!)
wait_port "$up_port" demo_upstream

say "one key store for the fleet: sealgate keys init --store $store"
"$sealgate" keys init --store "$store" --root-key-file "$work/root.key"

for i in 0 1 2; do
  port=${node_ports[$i]}
  "$sealgate" serve --store "$store" --root-key-file "$work/root.key" \
    --limits "redis://127.0.0.1:$redis_port" \
    --data-dir "$work/node$((i + 1))" --upstream "http://127.0.0.1:$up_port" \
    --policies "$root/policies" --listen "127.0.0.1:$port" --create-policy-keys \
    --log-format json >"$work/node$((i + 1)).log" 2>&1 &
  pids+=($!)
done
for i in 0 1 2; do wait_port "${node_ports[$i]}" "node $((i + 1))"; done
echo "three nodes: ${node_ports[*]/#/127.0.0.1:}"

say "nginx on 127.0.0.1:$lb_port, round robin over the three"
cat >"$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $work/nginx-body;
  proxy_temp_path $work/nginx-proxy;
  upstream sealgate {
    server 127.0.0.1:${node_ports[0]};
    server 127.0.0.1:${node_ports[1]};
    server 127.0.0.1:${node_ports[2]};
  }
  server {
    listen 127.0.0.1:$lb_port;
    location / { proxy_pass http://sealgate; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
"$nginx" -c "$work/nginx.conf" -p "$work" -g 'daemon off;' &
pids+=($!)
wait_port "$lb_port" nginx

node() { echo "http://127.0.0.1:${node_ports[$(($1 - 1))]}"; }
post() {
  curl -sf -XPOST "$1/users" -H 'content-type: application/json' -d "$2"
  echo
}

say "seal through node 1"
post "$(node 1)" '{"name":"Ann","email":"ann@example.com","ssn":"123-45-6789","cards":[{"number":"4111111111111111"}]}'
say "read through node 2 (plaintext), and what the upstream stores (envelopes)"
curl -sf "$(node 2)/users/1"; echo
curl -sf "http://127.0.0.1:$up_port/users/1"; echo
say "read through nginx, three times (each node in turn)"
for _ in 1 2 3; do curl -sf "http://127.0.0.1:$lb_port/users/1"; echo; done

say "rotate the CMK with the CLI (straight to PostgreSQL)"
"$sealgate" keys rotate demo --store "$store" --root-key-file "$work/root.key"
sleep 1 # the documented propagation bound
say "seal through node 3 (new version), read through node 1"
post "$(node 3)" '{"name":"Bo","email":"bo@example.com","ssn":"987-65-4321","cards":[]}'
curl -sf "$(node 1)/users/2"; echo

say "check: every node read both records in clear, the upstream holds none"
fail=0
for i in 1 2 3; do
  for id in 1 2; do
    body=$(curl -sf "$(node $i)/users/$id")
    case "$body" in
      *'"ssn":"123-45-6789"'* | *'"ssn":"987-65-4321"'*) ;;
      *) echo "node $i users/$id: $body" >&2; fail=1 ;;
    esac
  done
done
if grep -E '123-45-6789|987-65-4321|ann@example.com' "$work/upstream.log" >/dev/null; then
  echo "the upstream saw plaintext" >&2
  fail=1
fi
[ "$fail" -eq 0 ] && echo "fleet OK: 3 nodes, 1 store on PostgreSQL, quotas in Redis, 0 plaintext upstream"
exit "$fail"

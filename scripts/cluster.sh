#!/usr/bin/env bash
# A local Redis Cluster for llmrl: 3 primaries with one replica each on 127.0.0.1, the module
# loaded on every node (a node without it could not load or receive llmrl keys).
#   scripts/cluster.sh start   create it (data and logs in run/cluster/<port>/)
#   scripts/cluster.sh stop    shut every node down
# CLUSTER_BASE_PORT (default 7001) sets the first of the six ports.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${CLUSTER_BASE_PORT:-7001}
ports=$(seq "$base" $((base + 5)))
module="$PWD/target/release/libllmrl.so"
dir="$PWD/run/cluster"

case "${1:-}" in
start)
    [ -f "$module" ] || { echo "$module is missing: run make build" >&2; exit 1; }
    for port in $ports; do
        if redis-cli -p "$port" ping >/dev/null 2>&1; then
            echo "port $port is already in use (make stop, or set CLUSTER_BASE_PORT)" >&2; exit 1
        fi
    done
    for port in $ports; do
        mkdir -p "$dir/$port"
        rm -f "$dir/$port/nodes.conf" "$dir/$port"/*.rdb
        rm -rf "$dir/$port/appendonlydir"
        redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
            --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
            --cluster-require-full-coverage no \
            --appendonly yes --appendfsync everysec --save "" --dir "$dir/$port" \
            --loadmodule "$module" --daemonize yes \
            --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log"
    done
    for port in $ports; do
        for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    done
    # shellcheck disable=SC2046
    redis-cli --cluster create $(for p in $ports; do printf '127.0.0.1:%s ' "$p"; done) \
        --cluster-replicas 1 --cluster-yes >"$dir/create.log"
    for port in $ports; do
        for _ in $(seq 100); do
            redis-cli -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && break
            sleep 0.1
        done
    done
    echo "Redis Cluster with llmrl on 127.0.0.1 ports $(echo $ports | tr ' ' ','): 3 primaries, 3 replicas"
    echo "  redis-cli -c -p $base LLMRL.CHECK api:demo 3 1000 500 120 80"
    ;;
stop)
    # Only the nodes this script started (their pidfiles), never someone else's server.
    for port in $ports; do
        [ -f "$dir/$port/redis.pid" ] || continue
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$dir/$port/redis.pid")" 2>/dev/null || true
        for _ in $(seq 50); do [ -f "$dir/$port/redis.pid" ] || break; sleep 0.1; done
        rm -f "$dir/$port/redis.pid"
    done
    ;;
*)
    echo "usage: $0 start|stop" >&2; exit 2
    ;;
esac

#!/usr/bin/env bash
# End-to-end write load: inflow against VictoriaMetrics (if installed), interleaved
# A B A B … on the same machine, server pinned to core 0 and load generator to
# core 1. Prints each round and the medians. Loopback only; bounded in batches.
#
#   benches/load.sh [ROUNDS] [BATCHES] [CONNECTIONS]
#
# Needs a release build (`cargo build --release`); VictoriaMetrics from Debian's
# `victoria-metrics` package is optional (the baseline).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
batches=${2:-200}
conns=${3:-4}
bin=target/release/inflow
work=$(mktemp -d)
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT

wait_port() { for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/$2" && return 0; sleep 0.1; done; return 1; }

run_load() { # url token pid
  taskset -c 1 "$bin" bench write --url "$1" --token "$2" --connections "$conns" \
    --batches "$batches" --server-pid "$3" --max-duration 120s
}

inflow_round() {
  local dir="$work/inflow-$1"
  INFLOW_ADMIN_TOKEN=bench taskset -c 0 "$bin" serve --data-dir "$dir" --http-bind 127.0.0.1:18090 \
    --log-filter warn >"$dir.log" 2>&1 &
  local pid=$!
  wait_port 18090 health
  run_load http://127.0.0.1:18090 bench "$pid"
  kill -TERM "$pid"; wait "$pid" || true
}

vm_round() {
  local dir="$work/vm-$1"
  taskset -c 0 victoria-metrics -storageDataPath "$dir" -httpListenAddr 127.0.0.1:18091 \
    -loggerLevel ERROR >"$dir.log" 2>&1 &
  local pid=$!
  wait_port 18091 health
  run_load http://127.0.0.1:18091 "" "$pid"
  kill -TERM "$pid"; wait "$pid" || true
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: >"$work/inflow.txt"; : >"$work/vm.txt"
for r in $(seq "$rounds"); do
  out=$(inflow_round "$r"); echo "round $r inflow: $(echo "$out" | tr '\n' ';')"
  echo "$out" | awk '/^lines\/s:/ {print $2}' >>"$work/inflow.txt"
  if command -v victoria-metrics >/dev/null; then
    out=$(vm_round "$r"); echo "round $r victoria-metrics: $(echo "$out" | tr '\n' ';')"
    echo "$out" | awk '/^lines\/s:/ {print $2}' >>"$work/vm.txt"
  fi
done
a=$(median <"$work/inflow.txt")
echo "median lines/s inflow: $a"
if [ -s "$work/vm.txt" ]; then
  b=$(median <"$work/vm.txt")
  echo "median lines/s victoria-metrics: $b"
  awk -v a="$a" -v b="$b" 'BEGIN {printf "ratio inflow/victoria-metrics: %.2f\n", a/b}'
fi

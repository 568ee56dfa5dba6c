#!/usr/bin/env bash
# End-to-end write load: inflow in one process, inflow split into 1 router and 2
# ingesters, and VictoriaMetrics (if installed), interleaved A B C A B C … on the
# same machine, servers pinned to core 0 and the load generator to core 1. Prints
# each round and the medians. Loopback only; bounded in batches.
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
bin=${INFLOW_BIN:-target/release/inflow}
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

split_round() {
  local dir="$work/split-$1"
  mkdir -p "$dir"
  echo "bench-cluster" >"$dir.token"
  local pids=() addrs=() i
  for i in 0 1; do
    taskset -c 0 "$bin" serve --role ingester --ingester-id "ing-$i" --grpc-bind "127.0.0.1:1810$i" \
      --http-bind "127.0.0.1:1811$i" --cluster-token-file "$dir.token" --data-dir "$dir" --log-filter error \
      >"$dir.ing$i.log" 2>&1 &
    pids+=($!); addrs+=("127.0.0.1:1810$i")
  done
  wait_port 18110 health; wait_port 18111 health
  INFLOW_ADMIN_TOKEN=bench taskset -c 0 "$bin" serve --role router --ingesters "$(IFS=,; echo "${addrs[*]}")" \
    --cluster-token-file "$dir.token" --data-dir "$dir" --http-bind 127.0.0.1:18092 --log-filter error \
    >"$dir.router.log" 2>&1 &
  local router=$!
  wait_port 18092 health
  # CPU and RSS of the router only (the ingesters are separate processes).
  run_load http://127.0.0.1:18092 bench "$router"
  kill -TERM "$router"; wait "$router" || true
  kill -TERM "${pids[@]}"; wait "${pids[@]}" || true
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

: >"$work/inflow.txt"; : >"$work/split.txt"; : >"$work/vm.txt"
for r in $(seq "$rounds"); do
  out=$(inflow_round "$r"); echo "round $r inflow: $(echo "$out" | tr '\n' ';')"
  echo "$out" | awk '/^lines\/s:/ {print $2}' >>"$work/inflow.txt"
  out=$(split_round "$r"); echo "round $r inflow split (1 router, 2 ingesters): $(echo "$out" | tr '\n' ';')"
  echo "$out" | awk '/^lines\/s:/ {print $2}' >>"$work/split.txt"
  if command -v victoria-metrics >/dev/null; then
    out=$(vm_round "$r"); echo "round $r victoria-metrics: $(echo "$out" | tr '\n' ';')"
    echo "$out" | awk '/^lines\/s:/ {print $2}' >>"$work/vm.txt"
  fi
done
a=$(median <"$work/inflow.txt")
echo "median lines/s inflow: $a"
echo "median lines/s inflow split: $(median <"$work/split.txt")"
if [ -s "$work/vm.txt" ]; then
  b=$(median <"$work/vm.txt")
  echo "median lines/s victoria-metrics: $b"
  awk -v a="$a" -v b="$b" 'BEGIN {printf "ratio inflow/victoria-metrics: %.2f\n", a/b}'
fi

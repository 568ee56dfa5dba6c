#!/usr/bin/env bash
# Write latency at half of the peak rate: finds the peak with a closed-loop run of
# 1M lines (as benches/load.sh measures it), then offers half of it on a fixed
# schedule (open loop, latency counted from each request's scheduled time) for
# SECONDS (default 40, so that snapshots, every 30 s and whenever half the buffer
# is full, run inside it) and prints p50/p99 and how many requests were shed.
# Server pinned to core 0, load to core 1, --wal-flush-interval $WAL_FLUSH_INTERVAL
# (default 0s; the target: p99 <= flush interval + 20 ms).
#
#   [WAL_FLUSH_INTERVAL=10ms] benches/latency.sh [LINES_PER_BATCH] [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-5000}
rounds=${2:-3}
seconds=${3:-40}
source benches/server.sh
# shellcheck disable=SC2086 # INFLOW_SERVE_ARGS: extra serve flags, split on spaces
start_inflow 18191 --wal-flush-interval "${WAL_FLUSH_INTERVAL:-0s}" ${INFLOW_SERVE_ARGS:-}
load() { taskset -c 1 "$bin" bench write --url http://127.0.0.1:18191 --token bench \
  --lines-per-batch "$lines" "$@"; }
for r in $(seq "$rounds"); do
  peak=$(load --connections 4 --batches $((1000000 / lines)) | awk '/^lines\/s/ {print $2}')
  half=$((peak / 2))
  echo "round $r: peak $peak lines/s; at $half lines/s for ${seconds}s (open loop):"
  load --connections 8 --rate "$half" --batches $((half * seconds / lines)) \
    --max-duration $((seconds * 2))s |
    grep -E 'latency|lines/s|shed'
done
kill -TERM "$pid"; wait "$pid"

#!/usr/bin/env bash
# Memory under sustained overload: one inflow process with a small ingester
# buffer (--buffer-bytes) takes far more than it can snapshot (8 connections of
# 5,000-line gzip batches, server pinned to core 0, load to core 1). Prints the
# bench report, then the server's peak RSS beside the buffer bound. Excess load
# must come back as 503 + Retry-After ("shed"), never an error or an OOM kill.
#
#   benches/overload.sh [BUFFER_MIB] [BATCHES]
set -euo pipefail
cd "$(dirname "$0")/.."
buffer_mib=${1:-256}
batches=${2:-600}
source benches/server.sh
start_inflow 18190 --buffer-bytes $((buffer_mib << 20)) --snapshot-interval 1h
taskset -c 1 "$bin" bench write --url http://127.0.0.1:18190 --token bench --connections 8 \
  --batches "$batches" --server-pid "$pid" --max-duration 120s
hwm_kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
echo "buffer bound: ${buffer_mib} MiB; peak RSS: $((hwm_kib >> 10)) MiB; above the bound: $(((hwm_kib >> 10) - buffer_mib)) MiB"
kill -TERM "$pid"; wait "$pid"

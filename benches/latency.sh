#!/usr/bin/env bash
# Write latency at half of the peak rate: finds the peak with a closed-loop run of
# 1M lines (as benches/load.sh measures it), then offers half of it on a fixed
# schedule (open loop, latency counted from each request's scheduled time) for
# SECONDS (default 40, so that snapshots, every 30 s and whenever half the buffer
# is full, run inside it) and prints p50/p99 and how many requests were shed.
# Server pinned to core 0, load to core 1, --wal-flush-interval $WAL_FLUSH_INTERVAL
# (default 0s; the target: p99 <= flush interval + 20 ms). After each round it
# prints how many WAL flushes and write stages (read, decode, parse, commit,
# ingest) took over 25 ms in it, from the server's /metrics histograms, and the
# server's major page faults: where a long tail came from.
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
# slow_counts: one "name over-25ms total" line per histogram, cumulative.
slow_counts() {
  curl -s -H 'Authorization: Token bench' http://127.0.0.1:18191/metrics |
    awk '/^inflow_(wal_flush|write_stage)_duration_seconds_bucket/ && /le="(0.025|\+Inf)"/ {
           name = "wal_flush"; if (match($0, /stage="[a-z]+"/)) name = substr($0, RSTART + 7, RLENGTH - 8)
           if ($0 ~ /le="0.025"/) fast[name] += $2; else all[name] += $2
         }
         END { for (n in all) print n, all[n] - fast[n], all[n] }'
  awk '{print "majflt", $12, 0}' "/proc/$pid/stat"
}
for r in $(seq "$rounds"); do
  peak=$(load --connections 4 --batches $((1000000 / lines)) | awk '/^lines\/s/ {print $2}')
  before=$(slow_counts)
  half=$((peak / 2))
  echo "round $r: peak $peak lines/s; at $half lines/s for ${seconds}s (open loop):"
  load --connections 8 --rate "$half" --batches $((half * seconds / lines)) \
    --max-duration $((seconds * 2))s |
    grep -E 'latency|lines/s|shed'
  # The round's share of each: the counts after it less those before it.
  printf '%s\n%s\n' "$before" "$(slow_counts)" |
    awk '{ if ($1 in slow) { d[$1] = $2 - slow[$1]; n[$1] = $3 - all[$1] } else { slow[$1] = $2; all[$1] = $3 } }
         END { printf "over 25 ms: wal flush %d of %d", d["wal_flush"], n["wal_flush"]
               split("read decode parse commit ingest", s, " ")
               for (i = 1; i <= 5; i++) printf ", %s %d", s[i], d[s[i]]
               printf "; server major page faults: %d\n", d["majflt"] }'
done
kill -TERM "$pid"; wait "$pid"

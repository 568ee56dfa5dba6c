# Sourced by the load scripts: a release inflow (or $INFLOW_BIN) pinned to core 0, on a fresh data
# directory removed on exit.
bin=${INFLOW_BIN:-target/release/inflow}
work=$(mktemp -d)
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT

# start_inflow PORT [SERVE FLAGS...]: starts the server, sets $pid, and returns
# once /health answers.
start_inflow() {
  local port=$1
  shift
  INFLOW_ADMIN_TOKEN=bench taskset -c 0 "$bin" serve --data-dir "$work/data" \
    --http-bind "127.0.0.1:$port" --log-filter warn "$@" >"$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.1; done
}

#!/usr/bin/env bash
# Runs every test of inflow on a fresh machine: installs what the tests need
# (a Python venv and npm packages with the pinned client libraries, curl), then the Rust unit and
# end-to-end tests, which start the real binary on ephemeral loopback ports, then the Helm
# chart tests (tests/helm/run.sh, which installs the pinned Helm into target/tools).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v curl >/dev/null; then
  apt-get update -qq && apt-get install -y -qq curl
fi

venv=target/test-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
export INFLOW_TEST_PYTHON="$PWD/$venv/bin/python"

if ! command -v node >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
(cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)

# Unit tests, the end-to-end binary, and the benches compiled and run once;
# then the Helm chart and Dockerfile tests (no cluster needed; they start the
# debug binary cargo just built with the chart's rendered args); then one
# closing line summing every result. A failure anywhere fails the script.
log=$(mktemp)
status=0
cargo test --all-targets 2>&1 | tee "$log" || status=1
tests/helm/run.sh 2>&1 | tee -a "$log" || status=1
awk '/^test result:/ { p += $4; f += $6 }
     /^chart: [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"

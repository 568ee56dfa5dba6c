#!/usr/bin/env bash
# Runs every test of inflow on a fresh machine: installs what the tests need
# (a Python venv and npm packages with the pinned client libraries, curl), then the Rust unit and
# end-to-end tests, which start the real binary on ephemeral loopback ports.
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
# then one closing line summing every test binary's result.
log=$(mktemp)
cargo test --all-targets 2>&1 | tee "$log"
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
rm -f "$log"

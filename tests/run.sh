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

# InfluxDB 1.6 (Debian's influxdb and influxdb-client): the InfluxQL comparison starts its
# own influxd on ephemeral loopback ports, the client checks drive the influx shell. The
# package's postinst starts the service wherever an init system runs; a policy-rc.d that
# forbids it (written only if the machine has none, removed after) keeps anything from
# listening on 8086, and under systemd the unit is disabled and stopped too.
if [ ! -x /usr/bin/influxd ] || [ ! -x /usr/bin/influx ]; then
  policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb influxdb-client
  if [ -n "$policy" ]; then
    rm -f "$policy"
    trap - EXIT
  fi
  if [ -d /run/systemd/system ]; then
    systemctl disable --now influxdb >/dev/null 2>&1 || true
  fi
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
# debug binary cargo just built with the chart's rendered args), and the image
# built and run without Docker; then one closing line summing every result. A
# failure anywhere fails the script.
log=$(mktemp)
status=0
cargo test --all-targets 2>&1 | tee "$log" || status=1
# The fuzz targets are not fuzzed here (that needs cargo-fuzz and nightly
# flags), but they must still compile: checked in the main target dir, so the
# dependencies already built are reused. `cargo test` above replays each corpus.
CARGO_TARGET_DIR="$PWD/target" cargo check --manifest-path fuzz/Cargo.toml --bins 2>&1 | tee -a "$log" || status=1
tests/helm/run.sh 2>&1 | tee -a "$log" || status=1
# The image: built from the Dockerfile without a Docker daemon (buildah, on local
# stand-ins of its base images; the build stage on a jemalloc crate, the runtime stage
# on the debug binary) and run with podman as the chart's standalone pod.
tests/image/build.sh 2>&1 | tee -a "$log" || status=1
awk '/^test result:/ { p += $4; f += $6 }
     /^(chart|image): [0-9]+ passed, [0-9]+ failed$/ { p += $2; f += $4 }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
if [ "$status" -ne 0 ]; then
  echo "FAILED: a step exited non-zero (see above; a bench or build failure is not counted in the totals)"
fi
rm -f "$log"
exit "$status"

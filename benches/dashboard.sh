#!/usr/bin/env bash
# Dashboard queries: inflow against InfluxDB 1.6 and VictoriaMetrics on the questions a Grafana
# dashboard asks (see benches/dashboard.py for what it loads, asks and prints).
#
#   benches/dashboard.sh [--hosts 1000] [--hours 24] [--days 1|7] [--rounds 7]
#                        [--only inflow,influxdb,vm] [--keep]
#
# Needs a release build (`cargo build --release`, or INFLOW_BIN=…). Installs what is missing:
# Debian's `influxdb` (1.6) and `victoria-metrics`, with a policy-rc.d (written only if the
# machine has none, removed after) so the packages' services do not start, and under systemd
# their units disabled and stopped; the script starts its own servers on ephemeral loopback
# ports. Progress goes to stderr, the Markdown tables to stdout; exit status 1 if inflow's
# answers differ from InfluxDB 1.6's.
set -euo pipefail
cd "$(dirname "$0")/.."

# Which servers --only names (all three by default).
only="inflow,influxdb,vm"
prev=
for a in "$@"; do
  case "$a" in --only=*) only=${a#--only=} ;; esac
  [ "$prev" = --only ] && only=$a
  prev=$a
done

pkgs=()
case ",$only," in *,influxdb,*) [ -x /usr/bin/influxd ] || pkgs+=(influxdb) ;; esac
case ",$only," in *,vm,*) [ -x /usr/bin/victoria-metrics ] || pkgs+=(victoria-metrics) ;; esac
command -v python3 >/dev/null || pkgs+=(python3)
if [ ${#pkgs[@]} -gt 0 ]; then
  policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"
  if [ -n "$policy" ]; then
    rm -f "$policy"
    trap - EXIT
  fi
  if [ -d /run/systemd/system ]; then
    for unit in influxdb victoria-metrics; do systemctl disable --now "$unit" >/dev/null 2>&1 || true; done
  fi
fi

export INFLOW_BIN=${INFLOW_BIN:-target/release/inflow}
exec python3 benches/dashboard.py "$@"

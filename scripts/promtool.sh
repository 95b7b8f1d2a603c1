#!/usr/bin/env bash
# Puts Prometheus's promtool and server, from Debian 12's prometheus package, in .tools/prometheus/
# without installing anything, so that the monitoring tests can check docs/monitoring/moegpustats-alerts.yml,
# run its unit tests, and run every query of docs/monitoring/moegpustats-dashboard.json on a Prometheus
# that scrapes the metrics endpoint (they look for the server beside promtool):
#   MOEGS_PROMTOOL=$(bash scripts/promtool.sh) dotnet test
# Prints the path of promtool. Needs curl and dpkg-deb; downloads 19 MB once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools/prometheus"
promtool="$tools/usr/bin/promtool"
if [ ! -x "$promtool" ] || [ ! -x "$tools/usr/bin/prometheus" ]; then
  source "$root/scripts/lib/debian-files.sh"
  debian_files "$tools" main/p/prometheus prometheus_2.42.0+ds-5+deb12u1_amd64.deb usr/bin/promtool usr/bin/prometheus
fi
"$promtool" --version >/dev/null
"$tools/usr/bin/prometheus" --version >/dev/null
echo "$promtool"

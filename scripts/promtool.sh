#!/usr/bin/env bash
# Puts Prometheus's promtool, from Debian 12's prometheus package, in .tools/prometheus/ without
# installing anything, so that AlertRulesTests can check docs/monitoring/moegpustats-alerts.yml and
# run its unit tests:
#   MOEGS_PROMTOOL=$(bash scripts/promtool.sh) dotnet test
# Prints the path of promtool. Needs curl and dpkg-deb; downloads 19 MB once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools/prometheus"
promtool="$tools/usr/bin/promtool"
if [ ! -x "$promtool" ]; then
  source "$root/scripts/lib/debian-files.sh"
  debian_files "$tools" main/p/prometheus prometheus_2.42.0+ds-5+deb12u1_amd64.deb usr/bin/promtool
fi
"$promtool" --version >/dev/null
echo "$promtool"

#!/usr/bin/env bash
# Prepares the GPU machine's package here (it has no .NET SDK): the tests, the benchmarks, the CLI
# and the C API's managed half published self-contained into .device/pkg.txz, plus libmoegs.so (the PyTorch
# baselines travel in the working tree, bench/torch/). Then run scripts/device-check.sh (or device-probe.sh, device-sanitize.sh) there in
# one call, carrying ".device".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash native/build.sh >/dev/null
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for proj in tests/MoeGpuStats.Tests/MoeGpuStats.Tests.csproj bench/MoeGpuStats.Bench/MoeGpuStats.Bench.csproj \
  src/MoeGpuStats.Native/MoeGpuStats.Native.csproj src/MoeGpuStats.Cli/MoeGpuStats.Cli.csproj; do
  dotnet publish "$proj" -c Release -r linux-x64 --self-contained -p:DebugType=none -o "$stage/pkg" -v quiet -nologo
done
mkdir -p .device
tar cJf .device/pkg.txz -C "$stage" pkg
cp native/out/libmoegs.so .device/
# The device call carries the working tree (tracked and untracked files git does not ignore) with .device: 64 MiB in all.
tree=$(git ls-files -z -co --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
device=$(du -sb .device | cut -f1)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
echo "packed into .device: $(mib "$device") MiB; with the working tree's $(mib "$tree") MiB the device call carries $(mib $((tree + device))) MiB of its 64"
if [ $((tree + device)) -gt $((64 * 1048576)) ]; then
  echo "too large for the device call: commit or ignore less, or pack fewer projects" >&2
  exit 1
fi

#!/usr/bin/env bash
# Prepares the GPU machine's package here (it has no .NET SDK): the tests, the benchmarks, the CLI
# and the C API's managed half published self-contained into .device/pkg.txz, plus libmoegs.so and
# bench/torch/torch_baseline.py. Then run scripts/device-check.sh there in one call, carrying ".device".
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
cp bench/torch/torch_baseline.py .device/
cp native/out/libmoegs.so .device/
echo "packed into .device/pkg.txz ($(du -m .device/pkg.txz | cut -f1) MiB; the device call carries at most 64 MiB)"
du -sh .device

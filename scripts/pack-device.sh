#!/usr/bin/env bash
# Prepares the GPU machine's package here (it has no .NET SDK): the tests, the benchmarks, the CLI
# and the C API's managed half published self-contained into .device/pkg.txz, plus libmoegs.so.
# Then run scripts/device-check.sh there in one call, carrying ".device".
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash native/build.sh >/dev/null
bash ../shared/device/pack.sh tests/MoeGpuStats.Tests/MoeGpuStats.Tests.csproj \
  bench/MoeGpuStats.Bench/MoeGpuStats.Bench.csproj src/MoeGpuStats.Native/MoeGpuStats.Native.csproj \
  src/MoeGpuStats.Cli/MoeGpuStats.Cli.csproj
cp native/out/libmoegs.so .device/
du -sh .device

#!/usr/bin/env bash
# Prepares the GPU machine's package here (it has no .NET SDK): the tests, the benchmarks, the CLI
# and the C API's managed half published self-contained into .device/pkg.txz, plus libmoegs.so and
# torch_baseline.py. Then run scripts/device-check.sh there in one call, carrying ".device".
#
# It publishes as ../shared/device/pack.sh does, itself: that script writes the checkout's
# .git/info/exclude, which a git worktree does not have (.device/ is in .gitignore anyway).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# The shared folder beside the checkout, or beside the main checkout when this is a worktree.
shared=""
for candidate in "$root/../shared/device" "$(dirname "$(cd "$(git rev-parse --git-common-dir)" && pwd)")/../shared/device"; do
  if [ -f "$candidate/torch_baseline.py" ]; then shared=$candidate; break; fi
done
[ -n "$shared" ] || { echo "no ../shared/device/torch_baseline.py beside this checkout or the main one" >&2; exit 1; }

bash native/build.sh >/dev/null
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for proj in tests/MoeGpuStats.Tests/MoeGpuStats.Tests.csproj bench/MoeGpuStats.Bench/MoeGpuStats.Bench.csproj \
  src/MoeGpuStats.Native/MoeGpuStats.Native.csproj src/MoeGpuStats.Cli/MoeGpuStats.Cli.csproj; do
  dotnet publish "$proj" -c Release -r linux-x64 --self-contained -p:DebugType=none -o "$stage/pkg" -v quiet -nologo
done
mkdir -p .device
tar cJf .device/pkg.txz -C "$stage" pkg
cp "$shared/torch_baseline.py" .device/
cp native/out/libmoegs.so .device/
echo "packed into .device/pkg.txz ($(du -m .device/pkg.txz | cut -f1) MiB; the device call carries at most 64 MiB)"
du -sh .device

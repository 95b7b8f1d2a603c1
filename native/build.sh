#!/usr/bin/env bash
# Builds libmoegs.so (the C API of include/moegs.h) and its managed half into one folder,
# plus the C test program. Needs the .NET SDK and a C compiler.
#   bash native/build.sh [OUT_DIR]        (default: native/out)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/native/out}
mkdir -p "$out"
# Quiet unless it fails: dotnet writes its errors to stdout.
if ! log=$(dotnet publish "$root/src/MoeGpuStats.Native/MoeGpuStats.Native.csproj" -c Release -o "$out" -v quiet -nologo 2>&1); then
  echo "$log" >&2
  echo "dotnet publish of src/MoeGpuStats.Native failed" >&2
  exit 1
fi
dotnet_root=${DOTNET_ROOT:-$(dirname "$(readlink -f "$(command -v dotnet)")")}
nethost=$(find "$dotnet_root/packs" -path '*linux-x64*' -name libnethost.a 2>/dev/null | sort -V | tail -n 1)
[ -n "$nethost" ] || { echo "libnethost.a not found under $dotnet_root/packs (the SDK's app host pack)" >&2; exit 1; }
nethost_dir=$(dirname "$nethost")
cc=${CC:-cc}
"$cc" -O2 -Wall -Wextra -shared -fPIC -I "$root/include" -I "$nethost_dir" "$root/native/moegs.c" \
    "$nethost_dir/libnethost.a" -lstdc++ -ldl -lpthread -Wl,-rpath,'$ORIGIN' -o "$out/libmoegs.so"
"$cc" -O2 -Wall -Wextra -I "$root/include" "$root/native/tests/test_moegs.c" -L "$out" -lmoegs -lm \
    -Wl,-rpath,'$ORIGIN' -o "$out/test_moegs"
echo "built $out/libmoegs.so and $out/test_moegs"

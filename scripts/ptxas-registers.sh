#!/usr/bin/env bash
# Prints what NVIDIA's assembler of CUDA 11.8 (scripts/ptxas.sh) makes of every kernel for sm_90 (registers, spills,
# shared memory), among them the whole-model step kernel under launch bounds of 4, 6 and 8 groups of 256 threads per
# multiprocessor (`--emit-ptx` writes them with CudaLaunchBounds.Add, as the model check loads them). No GPU needed:
#   bash scripts/ptxas-registers.sh > ptxas.log
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ptxas=$(bash "$root/scripts/ptxas.sh")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
dotnet build -c Release -v q "$root/bench/MoeGpuStats.Bench" >&2
dotnet "$root/bench/MoeGpuStats.Bench/bin/Release/net10.0/MoeGpuStats.Bench.dll" --emit-ptx "$out" >/dev/null
echo "$("$ptxas" --version | tail -1); -arch=sm_90 -O3 -v; $(date -u +%F), commit $(git -C "$root" describe --always --dirty)"
for ptx in "$out"/*.ptx; do
  info=$("$ptxas" -arch=sm_90 -O3 -v "$ptx" -o "$out/kernel.cubin" 2>&1 | grep -E "registers|spill" | tr -s ' \n' ' ')
  echo "$(basename "$ptx" .ptx): $info"
done

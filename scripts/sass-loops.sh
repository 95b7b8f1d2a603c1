#!/usr/bin/env bash
# The record kernels' counting loops in SASS, without a GPU: registers and shared memory (ptxas -v),
# then each loop that loads ids, with its instructions from head to back branch, its id loads and
# its shared atomics. The figure that predicts a counting's issue cost is instructions per id.
#   bash scripts/sass-loops.sh        # needs bash scripts/ptxas.sh to have run (or CUDA's ptxas on PATH)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools/cuda/usr/bin"
[ -x "$tools/ptxas" ] || tools=$(dirname "$(command -v ptxas)")
out=$(mktemp -d)
dotnet run -c Release --project "$root/bench/MoeGpuStats.Bench" -- --emit-ptx "$out" > /dev/null
for ptx in "$out"/RoutingRecordKernel*.ptx; do
  kernel=$(basename "$ptx" .ptx)
  echo "$kernel: $("$tools/ptxas" -arch=sm_90 -O3 -v "$ptx" -o "$out/$kernel.cubin" 2>&1 | grep -E 'Used|spill' | tr -s ' \n' ' ')"
  "$tools/cuobjdump" -sass "$out/$kernel.cubin" | python3 -c '
import re, sys
code = [(int(a, 16), text) for a, text in re.findall(r"/\*([0-9a-f]{4})\*/\s+([^;]*);", sys.stdin.read())]
for address, text in code:
    target = re.search(r"BRA (0x[0-9a-f]+)", text)
    if not target or int(target.group(1), 16) >= address:
        continue
    head = int(target.group(1), 16)
    body = [t for a, t in code if head <= a <= address]
    # 32- and 128-bit loads of ids (generic or global); the 64-bit ones are the state.
    loads = sum(1 for t in body if re.search(r"\bLDG?\.E(\.128)?\s", t))
    atomics = sum(1 for t in body if "ATOMS" in t)
    if loads and atomics:
        # From the addresses: the cuobjdump of CUDA 11.8 prints a few sm_90 instructions as bare encodings.
        print(f"  loop {head:#x}-{address:#x}: {(address - head) // 16 + 1} instructions, {loads} id loads, {atomics} shared atomics")
'
done
rm -rf "$out"

#!/usr/bin/env bash
# The whole GPU check, in one call to the GPU machine (no .NET SDK there).
#
# Here (with the SDK):
#   ../shared/device/pack.sh tests/MoeGpuStats.Tests/MoeGpuStats.Tests.csproj bench/MoeGpuStats.Bench/MoeGpuStats.Bench.csproj
# There (device tool: carry [".device", "scripts"], timeout_s ~ 420):
#   bash scripts/device-check.sh
# It writes tests.log, bench.log, torch.json and env.txt under $OUT; copy the figures into
# docs/performance.md with the card, driver and date.
set -uo pipefail
out=${OUT:-/tmp/moegs-out}
mkdir -p "$out"
root=$(pwd)
tar xJf "$root/.device/pkg.txz" -C /tmp
cd /tmp/pkg || exit 1
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } > "$out/env.txt" 2>&1

# 1. The whole test suite, CUDA (and OpenCL, where ILGPU lists PoCL) included.
timeout 240 ./MoeGpuStats.Tests 2>&1 | tee "$out/tests.log" | tail -5

# 2. The device check table, E = 256 (the sizes of the baseline), then the seed workload (managed, host CPU).
timeout 150 ./MoeGpuStats.Bench --device-check --experts 256 2>&1 | tee "$out/bench.log"
./MoeGpuStats.Bench --seed-workload 256 2>&1 | tee -a "$out/bench.log"

# 3. The PyTorch baseline on the same data, same machine, same call.
timeout 120 python3 "$root/.device/torch_baseline.py" --experts 256 --json "$out/torch.json" 2>&1 | tee -a "$out/bench.log"

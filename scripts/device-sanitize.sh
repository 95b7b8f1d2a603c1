#!/usr/bin/env bash
# NVIDIA's memory and race checkers, and Nsight Compute's profile, on the whole model's kernels: one call to the GPU
# machine, beside the whole check (scripts/device-check.sh). Not yet run on a GPU: the tools' start is logged first.
#
# Here:   bash scripts/pack-device.sh
# There:  device tool, carry [".device"], timeout_s 540:   bash scripts/device-sanitize.sh
# Writes under $OUT: env.txt; sanitizer.log (memcheck, racecheck, synccheck and initcheck on three steps of three
# shapes, and of a prefill under memcheck); tests-memcheck.log (the CUDA model tests under memcheck: padding, device
# token counts, losses, capacities, skipped empty steps, int64 and int16 ids, [tokens, layers, k], windows that wrap,
# reads); ncu-decode.log and ncu-prefill.log (one step kernel each, 58 × 256 × 8 at 256 and 16,384 tokens).
# A checker's errors are lines starting "=========" with a summary "ERROR SUMMARY: N errors"; every run's exit status
# is logged after it (99: the checker found errors; 124: its timeout).
set -uo pipefail
out=${OUT:-/tmp/moegs-out}
mkdir -p "$out"
root=$(pwd)
source "$root/scripts/lib/device-package.sh"
enter_device_package "$root"

sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; uname -r
  "$sanitizer" --version 2>&1 | tail -2; "${ncu:-ncu}" --version 2>&1 | tail -1; } > "$out/env.txt" 2>&1
cat "$out/env.txt"

# 1. Each checker on three steps of three shapes (MoeGpuStats.Bench --model-steps: the step kernel alone, then a read
#    compared with the managed engine). A prefill's only under memcheck: racecheck instruments every shared
#    access of its 7.6 million ids.
small=3x16x2x5,58x256x8x256,32x8x2x1024
for tool in memcheck racecheck synccheck initcheck; do
  shapes=$small
  [ "$tool" = memcheck ] && shapes=$small,58x256x8x16384
  echo "== $tool on --model-steps $shapes" >> "$out/sanitizer.log"
  MOEGS_ACCELERATOR=cuda timeout 90 "$sanitizer" --tool "$tool" --error-exitcode 99 \
    ./MoeGpuStats.Bench --model-steps --model-shapes "$shapes" >> "$out/sanitizer.log" 2>&1
  echo "$tool: exit $?" | tee -a "$out/sanitizer.log"
done
echo "checkers done at ${SECONDS}s" | tee -a "$out/env.txt"

# 2. The CUDA model tests under memcheck, one at a time and each named as it starts (the CPU accelerator's and
#    OpenCL's cases left out; the managed engine's run beside them, as the tests compare the two).
MOEGS_TEST_SKIP=opencl,cpu,cpu-warp32,cpu-4mp timeout 200 "$sanitizer" --tool memcheck --error-exitcode 99 \
  ./MoeGpuStats.Tests -class MoeGpuStats.Tests.Model.ModelRoutingStatsTests -class MoeGpuStats.Tests.Device.DeviceModelEngineTests \
  -parallelMode none -reporter verbose > "$out/tests-memcheck.log" 2>&1
echo "tests under memcheck: exit $?" | tee -a "$out/tests-memcheck.log"
grep -aE "Total:|\[FAIL\]|ERROR SUMMARY" "$out/tests-memcheck.log" | tail -8
echo "tests done at ${SECONDS}s" | tee -a "$out/env.txt"

# 3. Nsight Compute on the second step of a decode and of a prefill (the first carries the module's load); the
#    clocks left alone, as the device notes ask.
for run in decode:58x256x8x256 prefill:58x256x8x16384; do
  MOEGS_ACCELERATOR=cuda timeout 90 "${ncu:-ncu}" --clock-control none --set full --launch-skip 1 --launch-count 1 \
    ./MoeGpuStats.Bench --model-steps --model-shapes "${run#*:}" > "$out/ncu-${run%%:*}.log" 2>&1
  echo "ncu ${run%%:*}: exit $?" | tee -a "$out/ncu-${run%%:*}.log"
done
echo "done at ${SECONDS}s" | tee -a "$out/env.txt"

#!/usr/bin/env bash
# A short GPU-machine experiment (about 130 s), beside the whole check (scripts/device-check.sh):
# where the model engine stops counting on OpenCL, and what a step waits for while another thread reads.
#
# Here:   bash scripts/pack-device.sh
# There:  device tool, carry [".device"], timeout_s 300:   bash scripts/device-probe.sh
# Writes env.txt, probe-opencl.log (with the model kernel's OpenCL C as model-kernel.cl), probe-cuda.log and
# tests-opencl-model.log under $OUT.
set -uo pipefail
out=${OUT:-/tmp/moegs-out}
mkdir -p "$out"
root=$(pwd)
source "$root/scripts/lib/device-package.sh"
enter_device_package "$root"
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; ls /etc/OpenCL/vendors 2>&1; cat /etc/OpenCL/vendors/*.icd 2>&1; \
  ldconfig -p | grep -iE 'pocl|OpenCL' ; } > "$out/env.txt" 2>&1
cat "$out/env.txt"
MOEGS_ACCELERATOR=opencl timeout 120 ./MoeGpuStats.Bench --model-probe --out "$out" > "$out/probe-opencl.log" 2>&1; echo "exit $?" >> "$out/probe-opencl.log"
echo "opencl probe done at ${SECONDS}s" | tee -a "$out/env.txt"
MOEGS_ACCELERATOR=cuda timeout 90 ./MoeGpuStats.Bench --model-probe --out /tmp/moegs-probe > "$out/probe-cuda.log" 2>&1; echo "exit $?" >> "$out/probe-cuda.log"
echo "cuda probe done at ${SECONDS}s" | tee -a "$out/env.txt"
MOEGS_TEST_SKIP=cpu,cpu-warp32,cpu-4mp,cuda timeout 100 ./MoeGpuStats.Tests -class MoeGpuStats.Tests.Model.ModelRoutingStatsTests -parallelMode none -reporter verbose \
  > "$out/tests-opencl-model.log" 2>&1; echo "tests exit $?" >> "$out/tests-opencl-model.log"
grep -aE "Total:|\[FAIL\]|tests exit" "$out/tests-opencl-model.log" | tail -8
echo "done at ${SECONDS}s" | tee -a "$out/env.txt"

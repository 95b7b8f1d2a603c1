#!/usr/bin/env bash
# The whole GPU check, in one call to the GPU machine (no .NET SDK there).
#
# Here:   bash scripts/pack-device.sh
# There:  device tool, carry [".device"], timeout_s that fits the device time left (a call's limit is 600 s; it ran 425 s on an H200):   bash scripts/device-check.sh
# Writes env.txt, bench.log, targets.md, interop.log, tests.log, tests-opencl.log and json.tgz (device-check.json,
# model-check.json, torch.json, model-torch.json, cli-device.json) under $OUT: the device tool brings back at most 8 files.
# Copy the figures into docs/performance.md with the card, driver and date.
set -uo pipefail
export PYTHONUNBUFFERED=1  # a python step killed by its timeout still leaves its lines in bench.log
out=${OUT:-/tmp/moegs-out}
mkdir -p "$out"
# targets.py reads the checks' JSON: none may be left from an earlier run.
js=/tmp/moegs-json
rm -rf "$js" "$out/json.tgz" "$out/json.tgz.part" && mkdir -p "$js"
keep_json() { tar czf "$out/json.tgz.part" -C "$js" . && mv -f "$out/json.tgz.part" "$out/json.tgz"; }
# The checks write their JSON after every row: a SIGTERM to the script packs the rows so far once the
# step running ends (each runs under timeout, in a process group of its own); a SIGKILL leaves the last packing.
trap keep_json EXIT
trap 'exit 143' TERM
root=$(pwd)
source "$root/scripts/lib/device-package.sh"
enter_device_package "$root"
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; } > "$out/env.txt" 2>&1
cat "$out/env.txt"

# 1. The machine's CUDA assembler on each kernel: its registers decide how many groups a multiprocessor holds.
ptxas=$(command -v ptxas || echo /usr/local/cuda/bin/ptxas)
./MoeGpuStats.Bench --emit-ptx /tmp/moegs-ptx > /dev/null 2>&1
if [ -x "$ptxas" ]; then
  for f in /tmp/moegs-ptx/*.ptx; do
    echo "$(basename "$f"): $("$ptxas" -arch=sm_90 -O3 -v "$f" -o /dev/null 2>&1 | grep -E 'Used|spill' | tr -s ' \n' ' ')"
  done
else
  echo "no ptxas on PATH or at $ptxas: no registers read"
fi | tee "$out/bench.log"

# 2. The whole model first (issue 20's targets): one RecordStep against L single-layer records and a copy of
#    the same bytes, L = 58, E = 256, k = 8 and L = 32, E = 8, k = 2 (Mixtral) at 1 to 16,384 tokens
#    (ModelShape.Default). CUDA by name: where ILGPU sees none, the checks stop at once instead of spending
#    their timeouts on the CPU accelerator.
MOEGS_ACCELERATOR=cuda timeout 120 ./MoeGpuStats.Bench --model-check --json "$js/model-check.json" 2>&1 | tee -a "$out/bench.log"
keep_json
echo "model check done at ${SECONDS}s" | tee -a "$out/env.txt"

# 2a. What a PyTorch server records per step without this library (vLLM's per-layer scatter_add_,
#     index_add_, bincount), the model check's shapes and data.
if python3 -c 'import torch' > /dev/null 2>&1; then
  timeout 120 python3 "$root/bench/torch/model_baseline.py" --json "$js/model-torch.json" 2>&1 | tee -a "$out/bench.log"
else
  echo "torch is absent: bench/torch/model_baseline.py skipped; the model targets against PyTorch stay unmeasured" | tee -a "$out/bench.log"
fi
keep_json
echo "model baseline done at ${SECONDS}s" | tee -a "$out/env.txt"

# 3. One layer's device check at E = 256 (the baseline's sizes), also as JSON for targets.py, then the seed workload on this host.
MOEGS_ACCELERATOR=cuda timeout 150 ./MoeGpuStats.Bench --device-check --experts 256 --json "$js/device-check.json" 2>&1 | tee -a "$out/bench.log"
keep_json
timeout 40 ./MoeGpuStats.Bench --seed-workload 256 2>&1 | tee -a "$out/bench.log"
echo "bench done at ${SECONDS}s" | tee -a "$out/env.txt"

# 3a. The PyTorch baseline on the same data, in the same call.
timeout 90 python3 "$root/bench/torch/torch_baseline.py" --experts 256 --json "$js/torch.json" 2>&1 | tee -a "$out/bench.log"
keep_json
echo "torch baseline done at ${SECONDS}s" | tee -a "$out/env.txt"

# 3b. Issue 4's targets from the device check's JSON and the baseline's, and the candidate countings against the copy and
#     the library's; first the whole-model targets (decode step < 10 µs, ≥ 20× per-layer PyTorch, prefill ≥ 80 % of the copy).
python3 "$root/scripts/targets.py" --device-check "$js/device-check.json" --torch "$js/torch.json" \
  --model-check "$js/model-check.json" --model-torch "$js/model-torch.json" 2>&1 | tee "$out/targets.md"

# 4. PyTorch -> Python wrapper -> libmoegs (self-contained runtime) on torch's current stream, no synchronize.
MOEGS_LIB=/tmp/pkg/libmoegs.so timeout 60 python3 "$root/python/examples/torch_topk_check.py" 2>&1 | tee "$out/interop.log"
#    A model's record captured in torch.cuda.graph and replayed: each replay a step the host never sees.
MOEGS_LIB=/tmp/pkg/libmoegs.so timeout 40 python3 "$root/python/examples/torch_cuda_graph_check.py" 2>&1 | tee -a "$out/interop.log"
#    The same with a [tokens, layers, k] int16 routed-experts buffer (some vLLM versions' capture), read where it lies.
MOEGS_LIB=/tmp/pkg/libmoegs.so timeout 40 python3 "$root/python/examples/torch_cuda_graph_check.py" --routed-experts 2>&1 | tee -a "$out/interop.log"
#    Four more runs, exit statuses only: an abort at teardown (glibc's "free(): invalid next size", once at 5086965)
#    would show as 134 in one of them.
for run in 1 2 3 4; do
  MOEGS_LIB=/tmp/pkg/libmoegs.so timeout 40 python3 "$root/python/examples/torch_cuda_graph_check.py" > /dev/null 2>&1
  echo "graph check, repeat $run: exit $?" | tee -a "$out/interop.log"
done
#    torch copying the model's own memory (device_arrays, __cuda_array_interface__) on the one GPU: one rank of NCCL.
MOEGS_LIB=/tmp/pkg/libmoegs.so timeout 90 python3 "$root/python/examples/allreduce_window_load.py" --device cuda --ranks 1 2>&1 | tee -a "$out/interop.log"
echo "allreduce_window_load: exit ${PIPESTATUS[0]}" | tee -a "$out/interop.log"
echo "interop done at ${SECONDS}s" | tee -a "$out/env.txt"

# 5. The main job, the CLI, on the best accelerator (CUDA there) and on the managed engine: same routing, same numbers.
timeout 40 ./moegs simulate --steps 100 --json > "$js/cli-device.json" 2> /tmp/cli-device.log
MOEGS_ACCELERATOR=managed timeout 40 ./moegs simulate --steps 100 --json > /tmp/cli-managed.json 2> /dev/null
python3 - "$js/cli-device.json" /tmp/cli-managed.json <<'PY' 2>&1 | tee -a "$out/interop.log"
import json, sys
device, managed = (json.load(open(path)) for path in sys.argv[1:3])
differ = [key for key in managed if key != "routing_latency_stats" and device.get(key) != managed[key]]
print("cli: device and managed snapshots", "EQUAL (latency aside)" if not differ else f"DIFFER in {differ}")
PY
keep_json
grep -m1 "engine" /tmp/cli-device.log | tee -a "$out/interop.log"
echo "cli done at ${SECONDS}s" | tee -a "$out/env.txt"

# 6. The test suite last, so that a run cut short by the call's time limit still brings back every figure
#    above. The CPU accelerator's tests are left to CI (MOEGS_TEST_SKIP); here CUDA's and the managed
#    engine's, then OpenCL (PoCL) alone in a second process, so that a crash inside an OpenCL driver (PoCL 5
#    corrupted the heap once, 2026-11-26) cannot take CUDA's results with it. The 1,000-record asynchrony
#    check is DeviceRoutingStatsTests.AThousandRecordsReturnBeforeTheDeviceFinishes. One test at a time,
#    each named as it starts: an abort inside a native driver then names its test.
MOEGS_TEST_SKIP=opencl,cpu,cpu-warp32,cpu-4mp timeout 240 ./MoeGpuStats.Tests -diagnostics -parallelMode none -reporter verbose > "$out/tests.log" 2>&1; echo "tests exit $?" >> "$out/tests.log"
MOEGS_TEST_SKIP=cpu,cpu-warp32,cpu-4mp,cuda timeout 160 ./MoeGpuStats.Tests -diagnostics -parallelMode none -reporter verbose > "$out/tests-opencl.log" 2>&1; echo "opencl tests exit $?" >> "$out/tests-opencl.log"
for log in "$out/tests.log" "$out/tests-opencl.log"; do grep -aE "Total:|\[FAIL\]|enqueued in|tests exit" "$log" | tail -12; done
echo "tests done at ${SECONDS}s" | tee -a "$out/env.txt"

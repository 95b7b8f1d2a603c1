"""Times a Python scrape of a DeepSeek-V3-shaped model on the managed engine: the model's read under its lock
(moegs_model_read through MoeModelStats.summary's path) and prometheus_client's generate_latest(), with and without
the per-expert series. Run from the checkout's root after native/build.sh: /usr/bin/python3 <this file> (NumPy, prometheus_client)."""
import statistics
import sys
import time

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

sys.path.insert(0, "python")
import moegs  # noqa: E402

LAYERS, EXPERTS, TOP_K, TOKENS, STEPS = 58, 256, 8, 64, 200


def median_ms(call, times=30):
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples), min(samples), max(samples)


rng = np.random.default_rng(2)
model = moegs.MoeModelStats(LAYERS, EXPERTS, accelerator="managed")
for _ in range(STEPS):
    model.record(rng.integers(0, EXPERTS, size=(LAYERS, TOKENS, TOP_K), dtype=np.int32))
print(f"{LAYERS} x {EXPERTS} x top-{TOP_K}, {STEPS} steps of {TOKENS} tokens, managed engine, 30 calls each: median (min-max) ms")
print("summary() %.2f (%.2f-%.2f)" % median_ms(model.summary))
print("the read a scrape makes (moegs_model_read: summary, window load, layer totals) %.2f (%.2f-%.2f)"
      % median_ms(lambda: model._read_structs(None, False)))
for expert_series in (False, True):
    registry = CollectorRegistry()
    registry.register(moegs.ModelMetricsCollector(model, expert_series=expert_series))
    text = generate_latest(registry)
    print(f"generate_latest(), expert_series={expert_series}: %.2f (%.2f-%.2f)" % median_ms(lambda: generate_latest(registry))
          + f"; {len(text):,} bytes")
model.close()

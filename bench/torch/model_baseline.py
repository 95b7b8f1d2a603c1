#!/usr/bin/env python3
"""What a PyTorch server records per step of a whole MoE model without this library, on the GPU,
for the same routing data as `MoeGpuStats.Bench --model-check` (so the checksums compare).

Per step of L layers, into a [layers, experts] load tensor (int64 counts):

  scatter_add (vLLM)  per layer, vLLM's record_expert_load as written:
                      flat = ids_l.flatten();
                      load[l].scatter_add_(0, flat.long(), torch.ones_like(flat).to(load))
                      (how vLLM records expert_load_pass, layer by layer as the forward pass runs)
  index_add           per layer, load[l].index_add_(0, ids_l.flatten().long(), ones) with `ones` made once
  bincount            per layer, load[l].add_(torch.bincount(ids_l.flatten(), minlength=E))
                      (bincount reads the ids' range back to the host: a synchronization per layer)
  one scatter_add     for reference, not per layer: the whole step in one scatter_add_ into
                      load.view(-1) after adding each layer's offset l*E to its ids (three kernels)
  scatter_add, graph  the per-layer scatter_add step captured once in a CUDA graph and replayed, as vLLM's decode
                      replays its forward pass (the launches from Python gone, the L layers' kernels left);
                      CUDA only (null in the JSON on the CPU)

Data: ids [layers, tokens, k] packed, int32, id[i] = floor(u_i^2 * E) over the whole step's flat
index i, u_i = ((i * 2654435761) mod 2^32) / 2^32 in float64 (torch_baseline.py's skewed load).
Checksum: sum over l, e of load[l, e] * (l * E + e + 1) after one step.

Timing: CUDA events around each step after warm-up; the median step. Shapes are LxExkxT:

  python3 bench/torch/model_baseline.py [--shapes 58x256x8x256,32x8x2x256] [--json out.json]

--device cpu runs the same steps on the CPU, timed by the host clock: the tests run it so that the
script, its data and its checksums are checked before a GPU run (its times are no baseline).
"""
import argparse
import json
import time

import torch

DEFAULT_SHAPES = ("58x256x8x1,58x256x8x64,58x256x8x256,58x256x8x1024,58x256x8x16384,"
                  "32x8x2x1,32x8x2x64,32x8x2x256,32x8x2x1024,32x8x2x16384")


def ids_for(n, experts, device):
    i = torch.arange(n, dtype=torch.int64, device=device)
    u = ((i * 2654435761) % (1 << 32)).to(torch.float64) / float(1 << 32)
    return torch.floor(u * u * experts).to(torch.int32)


def median_step_ms(step, reps, device, warmup=5):
    for _ in range(warmup):
        step()
    if device == "cpu":
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            step()
            times.append((time.perf_counter() - start) * 1e3)
        return sorted(times)[len(times) // 2]
    torch.cuda.synchronize()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for start, end in events:
        start.record()
        step()
        end.record()
    torch.cuda.synchronize()
    times = sorted(start.elapsed_time(end) for start, end in events)
    return times[len(times) // 2]


def captured(step):
    """`step` captured in a CUDA graph (after warm-up on a side stream, as torch.cuda.graphs asks): its replay."""
    outer = torch.cuda.current_stream()
    side = torch.cuda.Stream()
    side.wait_stream(outer)
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    outer.wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            step()
    finally:
        # torch.cuda.graph's exit skips restoring the stream when the capture's end raises.
        torch.cuda.set_stream(outer)
    return graph.replay


def checksum(load):
    flat = load.flatten().to(torch.int64).cpu()
    weights = torch.arange(1, flat.numel() + 1, dtype=torch.int64)
    return int((flat * weights).sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default=DEFAULT_SHAPES)
    ap.add_argument("--json")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--reps", type=int, help="timed steps per method (default: 200, 50 from 4 Mi ids a step)")
    a = ap.parse_args()
    dev = a.device
    print(torch.cuda.get_device_name(0) if dev == "cuda" else "CPU", "torch", torch.__version__)
    print()
    clock = "CUDA events" if dev == "cuda" else "the host clock"
    print(f"PyTorch per step of L layers (median of steps between {clock}), into a [L, E] int64 load tensor.")
    print("| L | E | k | tokens | scatter_add (vLLM) | index_add | bincount | one scatter_add | scatter_add (vLLM), CUDA graph | checksum |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    # After a failed capture the caching allocator may still route allocations to the dead graph's pool: no second try.
    can_capture = dev == "cuda"
    for text in a.shapes.split(","):
        layers, experts, topk, tokens = (int(p) for p in text.strip().split("x"))
        per_layer = tokens * topk
        ids = ids_for(layers * per_layer, experts, dev).view(layers, tokens, topk)
        layer_ids = [ids[l] for l in range(layers)]
        load = torch.zeros((layers, experts), dtype=torch.int64, device=dev)
        ones = torch.ones(per_layer, dtype=torch.int64, device=dev)
        all_ones = torch.ones(layers * per_layer, dtype=torch.int64, device=dev)
        offsets = (torch.arange(layers, dtype=torch.int32, device=dev) * experts).view(layers, 1, 1)

        def scatter_add():
            for l in range(layers):
                flat = layer_ids[l].flatten()
                load[l].scatter_add_(0, flat.long(), torch.ones_like(flat).to(load))

        def index_add():
            for l in range(layers):
                load[l].index_add_(0, layer_ids[l].flatten().long(), ones)

        def bincount():
            for l in range(layers):
                load[l].add_(torch.bincount(layer_ids[l].flatten(), minlength=experts))

        def one_scatter_add():
            load.view(-1).scatter_add_(0, (ids + offsets).flatten().long(), all_ones)

        large = layers * per_layer >= (1 << 22)
        reps = a.reps or (50 if large else 200)
        timings = {}
        sums = set()
        steps = [("scatter_add_ms", scatter_add), ("index_add_ms", index_add),
                 ("bincount_ms", bincount), ("one_scatter_add_ms", one_scatter_add)]
        if can_capture:
            try:
                steps.append(("scatter_add_graph_ms", captured(scatter_add)))
            except RuntimeError as error:  # the other rows still count; the JSON says null for this one and the rest
                can_capture = False
                print(f"({text}: the per-layer scatter_add_ could not be captured in a CUDA graph, and no later shape "
                      f"is: {error})", flush=True)
        for name, step in steps:
            timings[name] = median_step_ms(step, reps, dev)
            load.zero_()
            step()
            sums.add(checksum(load))
        timings.setdefault("scatter_add_graph_ms", None)
        same = len(sums) == 1
        row = dict(layers=layers, experts=experts, topk=topk, tokens=tokens, **timings,
                   checksum=min(sums), checksums_agree=same)
        rows.append(row)
        graph_ms = timings["scatter_add_graph_ms"]
        graphed = "-" if graph_ms is None else f"{graph_ms * 1e3:.1f} µs"
        print(f"| {layers} | {experts} | {topk} | {tokens} | {timings['scatter_add_ms'] * 1e3:.1f} µs | "
              f"{timings['index_add_ms'] * 1e3:.1f} µs | {timings['bincount_ms'] * 1e3:.1f} µs | "
              f"{timings['one_scatter_add_ms'] * 1e3:.1f} µs | {graphed} | "
              f"{row['checksum'] if same else 'DIFFER: ' + str(sorted(sums))} |",
              flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

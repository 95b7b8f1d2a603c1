"""On a CUDA machine: a model's record captured in a CUDA graph with torch.cuda.graph, as a server captures
its decode step, then replayed with new top-k ids and a new unpadded-token count written into the captured
tensors before each replay. Every replay must record one step that the host never sees: the summary, the
window load and its newest steps must equal a managed model fed the same ids. Prints one line and exits 0
when they do. With --routed-experts the captured input is a [tokens, layers, k] int16 buffer, as vLLM's
routed-experts capture keeps a step, recorded where it lies (its transpose, at a token stride).

    MOEGS_LIB=/path/to/libmoegs.so python3 python/examples/torch_cuda_graph_check.py [--replays 40] [--routed-experts]
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import moegs  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=58)
    ap.add_argument("--experts", type=int, default=256)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64, help="the graph's padded batch")
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--replays", type=int, default=40)
    ap.add_argument("--routed-experts", action="store_true", help="capture a [tokens, layers, k] int16 buffer, as vLLM's")
    a = ap.parse_args()
    generator = torch.Generator().manual_seed(0)
    shape = (a.layers, a.tokens, a.top_k)
    if a.routed_experts:
        # The graph's static input: ids is a [layers, tokens, k] view of it, read without a copy.
        ids = torch.zeros((a.tokens, a.layers, a.top_k), dtype=torch.int16, device="cuda").transpose(0, 1)
    else:
        ids = torch.zeros(shape, dtype=torch.int32, device="cuda")   # the graph's static input
    valid = torch.zeros(1, dtype=torch.int32, device="cuda")
    with moegs.MoeModelStats(a.layers, a.experts, window=a.window, accelerator="cuda") as model, \
            moegs.MoeModelStats(a.layers, a.experts, window=a.window, accelerator="managed") as managed:

        def write():
            step = torch.randint(0, a.experts, shape, dtype=torch.int32, generator=generator)
            count = int(torch.randint(0, a.tokens + 1, (1,), generator=generator))
            ids.copy_(step)
            valid.fill_(count)
            managed.record(step[:, :count].contiguous())

        # The first record outside the graph, on a side stream, as torch's docs ask of warm-up work.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            write()
            model.record(ids, valid_tokens=valid)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model.record(ids, valid_tokens=valid)  # on the capture stream, torch's current stream here
        for _ in range(a.replays):
            write()
            graph.replay()
        torch.cuda.synchronize()
        got, want, want_load = model.summary(), managed.summary(), managed.window_load()
        recent = max(1, a.window // 4)
        same = (got == want and (model.window_load() == managed.window_load()).all()
                and (model.window_load(recent_steps=recent) == managed.window_load(recent_steps=recent)).all()
                and got["steps"] == a.replays + 1)

        # A read begun without waiting, ordered on torch's current stream (after the replays before it, before the
        # replay after it, on the device), then one more replay at once: the read keeps the step it was begun at.
        pending = model.begin_read()
        write()
        graph.replay()
        arrived_before_the_wait = pending.done()
        torch.cuda.synchronize()
        early, early_load = pending.result()
        same = (same and early == got and (early_load == want_load).all() and model.summary() == managed.summary()
                and model.summary()["steps"] == a.replays + 2)
        # The graph holds a kernel of the model's module, in the library's own CUDA context, and the model's memory:
        # destroy it before the model, whose close() destroys both. Left to main's return, after the with block, it
        # would be destroyed against an unloaded module (undefined behaviour; the likeliest cause of one run's abort
        # at its teardown on the H200, glibc's "free(): invalid next size", not confirmed there).
        torch.cuda.synchronize()
        graph.reset()
        del graph
    layout = "[tokens, layers, k] int16" if a.routed_experts else "[layers, tokens, k] int32"
    print(f"torch_cuda_graph_check: {a.replays} replays of one captured record ({a.layers}x{a.tokens}x{a.top_k} {layout}, "
          f"E={a.experts}) on {torch.cuda.get_device_name(0)}: steps {got['steps']} (want {a.replays + 1}); "
          f"summary and window load {'EQUAL' if same else 'DIFFER'} to the managed model's, a pending read's among them (arrived before the host waited: {arrived_before_the_wait})")
    if not same:
        print("cuda:", got, "\nmanaged:", want)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

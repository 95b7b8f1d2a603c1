"""On a CUDA machine: a real top-k gate in PyTorch hands topk_ids to MoeGpuStats on torch's current
stream, step after step with no torch.cuda.synchronize() between them; at the end the counts must
equal torch.bincount over the same ids exactly, and torch's CUDA context must stay current on this thread
after every call. Prints one line and exits 0 when both hold.

    MOEGS_LIB=/path/to/libmoegs.so python3 python/examples/torch_topk_check.py [--steps 200]
"""
import argparse
import ctypes
import functools
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import moegs  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=200)
    a = ap.parse_args()
    torch.manual_seed(0)
    gate = torch.nn.Linear(a.hidden, a.experts, bias=False, device="cuda")
    expected = torch.zeros(a.experts, dtype=torch.int64, device="cuda")
    torch_context = current_cuda_context()  # torch's primary context: every moegs call must leave it current
    kept = True
    with moegs.MoeStats(a.experts, accelerator="cuda") as stats, torch.no_grad():
        kept &= current_cuda_context() == torch_context
        start = time.perf_counter()
        for _ in range(a.steps):
            x = torch.randn(a.tokens, a.hidden, device="cuda")
            topk_ids = torch.topk(gate(x).softmax(-1), a.top_k, dim=-1).indices.int()
            stats.record(topk_ids)  # ordered on torch.cuda.current_stream(); no host wait
            kept &= current_cuda_context() == torch_context
            expected += torch.bincount(topk_ids.flatten(), minlength=a.experts)
            del topk_ids  # the caching allocator may hand this memory to the next step: the stream order protects it
        enqueue_ms = (time.perf_counter() - start) * 1000
        counts = stats.expert_counts()
        snapshot = stats.snapshot()
    want = expected.cpu().tolist()
    same = counts == want
    print(f"torch_topk_check: {a.steps} steps of {a.tokens}x{a.top_k} ids on {torch.cuda.get_device_name(0)}: "
          f"counts {'EQUAL' if same else 'DIFFER'} to torch.bincount; routings={snapshot['total_routings']} "
          f"cv={snapshot['utilization_cv']:.4f}; torch's CUDA context {'kept' if kept else 'NOT kept'} current; "
          f"host loop {enqueue_ms:.1f} ms")
    if not same:
        print("moegs:", counts, "\ntorch:", want)
    return 0 if same and kept and snapshot["total_routings"] == a.steps else 1


@functools.lru_cache(maxsize=1)
def _libcuda():
    return ctypes.CDLL("libcuda.so.1")


def current_cuda_context():
    """The calling thread's current CUDA context (driver API), to check that moegs calls leave torch's in place."""
    context = ctypes.c_void_p()
    status = _libcuda().cuCtxGetCurrent(ctypes.byref(context))
    if status != 0:
        raise RuntimeError(f"cuCtxGetCurrent failed: {status}")
    return context.value


if __name__ == "__main__":
    sys.exit(main())

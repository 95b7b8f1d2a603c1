"""Sums a model's window load across ranks with torch.distributed, without copying it to the host.

Two processes (ranks; --ranks N for another count) each record their own steps into a moegs.MoeModelStats, view the model's window load
where the model keeps it (MoeModelStats.device_arrays: __array_interface__ on the CPU accelerator,
__cuda_array_interface__ on CUDA), copy that view on the device into a tensor of their own and all-reduce
the copy: the job's [layers, experts] slots over the window, the weight of DeepSeek's EPLB for the whole job.
Each rank then checks that its model's state is unchanged; rank 0 checks the sum against the sum of the
ranks' own copies (window_load()) and prints it. Exit status 0 when every check holds.

    MOEGS_LIB=native/out/libmoegs.so python3 python/examples/allreduce_window_load.py                # gloo, "cpu"
    MOEGS_LIB=native/out/libmoegs.so python3 python/examples/allreduce_window_load.py --device cuda  # NCCL, a GPU per rank

Needs torch (with gloo) and NumPy. The CPU run is what the tests run; the CUDA run is the same code on NCCL
and has not been run on a GPU. On one GPU, --ranks 1 checks the export alone: torch's copy of the model's
memory against window_load() (the device check runs it).
"""
import argparse
import os
import sys
import tempfile

import numpy
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import moegs  # noqa: E402

def rank_main(rank, a, rendezvous):
    if a.device == "cuda":
        # moegs_model_create("cuda") takes the first GPU this process sees: show each rank only its own.
        os.environ["CUDA_VISIBLE_DEVICES"] = str(rank)
    dist.init_process_group("nccl" if a.device == "cuda" else "gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=a.ranks)
    device = torch.device("cuda" if a.device == "cuda" else "cpu")
    model = moegs.MoeModelStats(a.layers, a.experts, window=a.window, accelerator=a.device)

    # Each rank routes its own tokens: another seed, another batch size, more steps than the window holds.
    generator = torch.Generator().manual_seed(1000 + rank)
    for _ in range(a.steps):
        ids = torch.randint(-1, a.experts, (a.layers, a.tokens + 8 * rank, a.top_k), generator=generator, dtype=torch.int32)
        model.record(ids.to(device))  # on CUDA ordered on torch's current stream; -1 is an empty slot

    # The model's own memory, no copy. dtype="int64": torch before 2.3 has no uint64 (counts stay below 2**63).
    # On CUDA the export orders torch's current stream after the fold of the last step, so work enqueued there
    # next (the clone below) reads folded counts.
    arrays = model.device_arrays(dtype="int64")
    own = torch.from_numpy(model.window_load().astype(numpy.int64)).to(device)  # this rank's copy, to check against
    if a.device == "cuda":
        view = torch.as_tensor(arrays.window_load, device=device)  # __cuda_array_interface__
    else:
        view = torch.from_numpy(numpy.asarray(arrays.window_load))  # __array_interface__
    # all_reduce writes the sum into the tensor it is given: given the view, it would add the other ranks'
    # counts into this model's state. So reduce a copy made on the device (no trip through the host).
    summed = view.clone()
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)

    after = torch.from_numpy(model.window_load().astype(numpy.int64)).to(device)
    unchanged = bool(torch.equal(after, own))
    parts = [torch.empty_like(own) for _ in range(a.ranks)]
    dist.all_gather(parts, own)
    flags = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(a.ranks)]
    dist.all_gather(flags, torch.tensor([int(unchanged)], dtype=torch.int64, device=device))
    ok = True
    if rank == 0:
        expected = sum(parts)
        equal = bool(torch.equal(summed, expected))
        every_state_kept = all(int(flag.item()) == 1 for flag in flags)
        backend = dist.get_backend()
        print(f"allreduce_window_load: {a.ranks} rank{'' if a.ranks == 1 else 's'} on {a.device} ({backend}), {a.steps} steps each, window {a.window}: "
              f"the all-reduced window load of {a.layers} layers x {a.experts} experts {'EQUALS' if equal else 'DIFFERS FROM'} "
              f"the sum of the ranks' copies; every model's own state {'unchanged' if every_state_kept else 'CHANGED'}")
        for layer, row in enumerate(summed.cpu().tolist()):
            print(f"  layer {layer}: {row}")
        if not equal:
            print("  expected:", expected.cpu().tolist())
        ok = equal and every_state_kept
    dist.barrier()
    dist.destroy_process_group()
    model.close()
    if not ok:
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="the model's accelerator: cpu (gloo) or cuda (NCCL)")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--ranks", type=int, default=2, help="processes, each a rank (on cuda, each takes the GPU of its rank's index)")
    a = ap.parse_args()
    if a.ranks < 1:
        ap.error(f"--ranks is {a.ranks}; give 1 or more")
    with tempfile.TemporaryDirectory() as folder:
        try:
            mp.spawn(rank_main, args=(a, os.path.join(folder, "rendezvous")), nprocs=a.ranks)
        except mp.ProcessExitedException as failed:
            print(f"allreduce_window_load: {failed}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

using ILGPU;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Bench.Candidates;

/// <summary>
/// One shared atomic per id and no branch: a run that ends adds to its bin; a run that goes on adds
/// 0 to a bin of the thread's own, which no other thread touches, so it never waits on a conflict.
/// </summary>
/// <remarks>
/// The prediction, from CUDA 11.8's SASS for sm_90 (<c>scripts/sass-loops.sh</c>): 58
/// instructions per four ids instead of 75, in the same 32 registers, for 1 KiB more shared memory
/// per group (8 groups of 256 threads still fit on a Hopper multiprocessor). A uniform load already
/// issues an atomic for almost every id, so only the branch goes; a collapsed router pays one
/// conflict-free atomic per id where the library's step pays almost none. The own bins are never
/// read, so they are never cleared.
/// </remarks>
internal readonly struct BranchFreeRunStep : IRunStep
{
    public int ScratchBins => RoutingRecordKernel.PreferredGroupSize;

    public void Count(ArrayView<int> bins, int experts, int id, ref int runId, ref int run)
    {
        var ends = id != runId;
        var own = RoutingRecordKernel.MaxExperts + 1 + Group.IdxX;
        Atomic.Add(ref bins[ends & run != 0 ? InvalidBin.Of(runId, experts) : own], ends ? run : 0);
        run = ends ? 1 : run + 1;
        runId = id;
    }

    public void Flush(ArrayView<int> bins, int experts, int runId, int run) =>
        default(BranchedRunStep).Flush(bins, experts, runId, run);
}

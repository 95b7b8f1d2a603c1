using ILGPU;

namespace MoeGpuStats.Kernels;

/// <summary>How the record kernel's threads add their ids to the group's shared histogram.</summary>
/// <remarks>
/// Both give the same counts; they differ in how many shared-memory atomics a skewed load costs
/// (many threads adding to one bin at once serialize on it). On an H200, thread runs kept every
/// skewed load measured within 1.02× of the uniform time, and warp aggregation was slower on every
/// load (docs/performance.md): thread runs are the default.
/// </remarks>
public enum HistogramCounting
{
    /// <summary>
    /// Each thread counts its equal consecutive ids in a register and adds a run at once: one hot
    /// expert (a k = 1 router that collapsed) costs about one atomic per thread. Runs on every accelerator.
    /// </summary>
    ThreadRuns,

    /// <summary>
    /// The lanes of a warp that hold the same id add it once, with their number (CUDA's
    /// <c>match.any</c>, sm_70 or newer; emulated with shuffles on the CPU accelerator): a few hot
    /// experts that alternate (all tokens sent to the same k experts) cost one atomic per hot
    /// expert per warp step instead of one per id. Slower than <see cref="ThreadRuns"/> on every load
    /// measured on an H200 (3.9× on uniform ids): each id pays a match and a local store.
    /// </summary>
    WarpAggregated,
}

/// <summary>One thread's part of a record's histogram: its grid-stride share of the ids into the group's bins.</summary>
internal interface IHistogramCounting
{
    /// <summary>Adds this thread's ids in range to <paramref name="bins"/>; returns how many were out of range.</summary>
    /// <param name="ids">The record's ids.</param>
    /// <param name="bins">The group's shared histogram.</param>
    /// <param name="experts">Ids at or above this are out of range.</param>
    /// <param name="groups">The counting groups, <c>0</c> to <c>groups − 1</c>, whose threads share the ids by grid stride.</param>
    int CountShare(ArrayView<int> ids, ArrayView<int> bins, int experts, int groups);
}

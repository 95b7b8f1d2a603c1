using ILGPU;

namespace MoeGpuStats.Kernels;

/// <summary>How the record kernel's threads add their ids to the group's shared histogram.</summary>
/// <remarks>
/// All give the same counts; they differ in how many shared-memory atomics a skewed load costs
/// (many threads adding to one bin at once serialize on it) and in how the ids are loaded. On an
/// H200 and an H100, thread runs kept every skewed load measured within 1.04× of the uniform time
/// (docs/performance.md). <see cref="RecordKernelPolicy.For"/> picks one per accelerator.
/// </remarks>
internal enum HistogramCounting
{
    /// <summary>
    /// Each thread counts its equal consecutive ids in a register and adds a run at once: one hot
    /// expert (a k = 1 router that collapsed) costs about one atomic per thread. Runs on every accelerator.
    /// </summary>
    ThreadRuns,

    /// <summary>
    /// <see cref="ThreadRuns"/> with one 128-bit load for four consecutive ids, a run for each of the
    /// four places, and equal runs joined before they are added. The default on CUDA: fewer load
    /// instructions and twice the bytes in flight per thread made records at 16 Mi and 128 Mi ids
    /// 2–7 % faster on an H100 and an H200 (docs/performance.md). Runs on CUDA and the CPU accelerator
    /// (where it is slower than <see cref="ThreadRuns"/>); not on OpenCL, where it is unmeasured.
    /// </summary>
    QuadLoadRuns,
}

/// <summary>One thread's part of a record's histogram: its grid-stride share of the ids into the group's bins.</summary>
internal interface IHistogramCounting
{
    /// <summary>Adds this thread's ids to <paramref name="bins"/>: an id in range to its bin, any other to <c>bins[experts]</c>.</summary>
    /// <param name="ids">The record's ids.</param>
    /// <param name="alignedStart">The index of the first id on a 16-byte boundary (<see cref="RecordArguments.AlignedStart"/>).</param>
    /// <param name="bins">The group's shared histogram, <paramref name="experts"/> + 1 bins (the last counts the ids out of range).</param>
    /// <param name="experts">Ids at or above this, and negative ids, are out of range.</param>
    /// <param name="groups">The counting groups, <c>0</c> to <c>groups − 1</c>, whose threads share the ids by grid stride.</param>
    void CountShare(ArrayView<int> ids, int alignedStart, ArrayView<int> bins, int experts, int groups);

    /// <summary>
    /// Checks every position <see cref="CountShare"/> gave this thread with <see cref="Padding.Check"/>:
    /// the −1 ids it counted as out of range, and the padded tokens whose first slot it counted.
    /// </summary>
    void CountPadding(ArrayView<int> ids, int alignedStart, int topK, int groups, ref int emptySlots, ref int paddedTokens);
}

/// <summary>The bin an id is counted in: its own when in range, else the one after the experts'.</summary>
internal static class InvalidBin
{
    /// <summary>
    /// <paramref name="id"/> when it is in <c>[0, experts)</c>, else <paramref name="experts"/>: one
    /// unsigned minimum instead of a branch and a register for the invalid ids, per id.
    /// </summary>
    public static int Of(int id, int experts) => (int)Math.Min((uint)id, (uint)experts);
}

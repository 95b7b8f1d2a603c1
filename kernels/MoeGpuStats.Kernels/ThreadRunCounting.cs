using ILGPU;

namespace MoeGpuStats.Kernels;

/// <summary><see cref="HistogramCounting.ThreadRuns"/>: equal consecutive ids of a thread counted as <see cref="Runs"/>.</summary>
internal readonly struct ThreadRunCounting : IHistogramCounting
{
    public void CountShare(ArrayView<int> ids, int alignedStart, ArrayView<int> bins, int experts, int groups)
    {
        // Four independent loads per thread before any atomic keep 16 bytes per thread in flight,
        // which a read-once kernel needs to approach the memory bandwidth.
        // The four come from one view per iteration at 32-bit offsets: indexing the whole view with
        // 64-bit indices cost about 30 instructions of address arithmetic per iteration.
        var runId = -1;
        var run = 0;
        var threads = groups * Group.DimX;
        var i = (long)Grid.IdxX * Group.DimX + Group.IdxX;
        for (; i + 3L * threads < ids.Length; i += 4L * threads)
        {
            var window = ids.SubView(i);
            var a = window[0];
            var b = window[threads];
            var c = window[2 * threads];
            var d = window[3 * threads];
            Runs.Count(bins, experts, a, ref runId, ref run);
            Runs.Count(bins, experts, b, ref runId, ref run);
            Runs.Count(bins, experts, c, ref runId, ref run);
            Runs.Count(bins, experts, d, ref runId, ref run);
        }

        for (; i < ids.Length; i += threads)
        {
            Runs.Count(bins, experts, ids[i], ref runId, ref run);
        }

        Runs.Flush(bins, experts, runId, run);
    }

    public void CountPadding(ArrayView<int> ids, int alignedStart, int topK, int groups, ref int emptySlots, ref int paddedTokens) =>
        Padding.CheckStrided(ids, topK, groups, ref emptySlots, ref paddedTokens);
}

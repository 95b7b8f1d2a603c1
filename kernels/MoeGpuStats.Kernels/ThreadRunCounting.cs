using ILGPU;

namespace MoeGpuStats.Kernels;

/// <summary><see cref="HistogramCounting.ThreadRuns"/>: equal consecutive ids of a thread, one atomic per run.</summary>
internal readonly struct ThreadRunCounting : IHistogramCounting
{
    public int ScratchBins => 0;

    public void CountShare(ArrayView<int> ids, ArrayView<int> bins, int experts, int groups)
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
            Count(bins, experts, a, ref runId, ref run);
            Count(bins, experts, b, ref runId, ref run);
            Count(bins, experts, c, ref runId, ref run);
            Count(bins, experts, d, ref runId, ref run);
        }

        for (; i < ids.Length; i += threads)
        {
            Count(bins, experts, ids[i], ref runId, ref run);
        }

        Flush(bins, experts, runId, run);
    }

    /// <summary>Extends the thread's run of equal ids, or adds it to its bin and starts a new one.</summary>
    /// <remarks>
    /// Without branches but the atomic's (non-short-circuit <c>&amp;</c> and a select; ptxas keeps
    /// the branch around the atomic rather than predicating it): the branchy form cost about 16
    /// instructions per id, and at 128 Mi ids the record kernel issues for a large part of its time. The first, empty run adds nothing (256 threads adding 0 to one bin
    /// would serialize).
    /// </remarks>
    internal static void Count(ArrayView<int> bins, int experts, int id, ref int runId, ref int run)
    {
        var ends = id != runId;
        if (ends & run != 0)
        {
            Atomic.Add(ref bins[InvalidBin.Of(runId, experts)], run);
        }

        run = ends ? 1 : run + 1;
        runId = id;
    }

    /// <summary>Adds the thread's last run to its bin.</summary>
    internal static void Flush(ArrayView<int> bins, int experts, int id, int run)
    {
        if (run != 0)
        {
            Atomic.Add(ref bins[InvalidBin.Of(id, experts)], run);
        }
    }
}

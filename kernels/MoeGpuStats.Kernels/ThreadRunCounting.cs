using ILGPU;

namespace MoeGpuStats.Kernels;

/// <summary><see cref="HistogramCounting.ThreadRuns"/>: equal consecutive ids of a thread, one atomic per run.</summary>
internal readonly struct ThreadRunCounting : IHistogramCounting
{
    public int CountShare(ArrayView<int> ids, ArrayView<int> bins, int experts, int groups)
    {
        // Four independent loads per thread before any atomic keep 16 bytes per thread in flight,
        // which a read-once kernel needs to approach the memory bandwidth.
        var invalid = 0;
        var runId = -1;
        var run = 0;
        var threads = (long)groups * Group.DimX;
        var i = (long)Grid.IdxX * Group.DimX + Group.IdxX;
        for (; i + 3 * threads < ids.Length; i += 4 * threads)
        {
            var a = ids[i];
            var b = ids[i + threads];
            var c = ids[i + 2 * threads];
            var d = ids[i + 3 * threads];
            Count(bins, experts, a, ref runId, ref run, ref invalid);
            Count(bins, experts, b, ref runId, ref run, ref invalid);
            Count(bins, experts, c, ref runId, ref run, ref invalid);
            Count(bins, experts, d, ref runId, ref run, ref invalid);
        }

        for (; i < ids.Length; i += threads)
        {
            Count(bins, experts, ids[i], ref runId, ref run, ref invalid);
        }

        Flush(bins, experts, runId, run, ref invalid);
        return invalid;
    }

    /// <summary>Extends the thread's run of equal ids, or flushes it and starts a new one.</summary>
    private static void Count(ArrayView<int> bins, int experts, int id, ref int runId, ref int run, ref int invalid)
    {
        if (id == runId)
        {
            run++;
            return;
        }

        Flush(bins, experts, runId, run, ref invalid);
        runId = id;
        run = 1;
    }

    private static void Flush(ArrayView<int> bins, int experts, int id, int run, ref int invalid)
    {
        if (run == 0)
        {
            return;
        }

        if ((uint)id < (uint)experts)
        {
            Atomic.Add(ref bins[id], run);
        }
        else
        {
            invalid += run;
        }
    }
}

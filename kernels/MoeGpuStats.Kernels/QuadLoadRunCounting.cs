using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats.Kernels;

/// <summary>
/// <see cref="HistogramCounting.QuadLoadRuns"/>: each thread loads four consecutive ids with one 128-bit load, two loads in
/// flight, and keeps a run for each of the four places. A thread's loads stay a multiple of 8 ids
/// apart, so with k = 8 each place sees the same place of every token it reads, and a collapsed
/// router's runs stay unbroken, as in <see cref="ThreadRunCounting"/>.
/// </summary>
/// <remarks>
/// One load instruction and one address computation for four ids instead of four, and 32 bytes in
/// flight per thread instead of 16: from CUDA 11.8's SASS for sm_90, 61.5 instructions per four ids
/// instead of 75, in the same 32 registers. The 128-bit loads start at the first 16-byte boundary of
/// the ids, which the launcher finds on the host (<see cref="IdAlignment"/>); the ids before it and
/// after the last whole quad, three at most each, are counted one by one by the first threads.
/// </remarks>
internal readonly struct QuadLoadRunCounting : IHistogramCounting
{
    public void CountShare(ArrayView<int> ids, int alignedStart, ArrayView<int> bins, int experts, int groups)
    {
        var threads = groups * Group.DimX;
        var thread = Grid.IdxX * Group.DimX + Group.IdxX;
        for (var head = thread; head < alignedStart; head += threads)
        {
            Atomic.Add(ref bins[InvalidBin.Of(ids[head], experts)], 1);
        }

        // Ids that end before their first boundary have no quads (a sub-view may not start at the end).
        var body = alignedStart < ids.Length ? ids.SubView(alignedStart) : ids.SubView(0, 0);
        var quads = body.AsAligned(4 * sizeof(int)).Cast<IdQuad>();
        for (var rest = alignedStart + quads.Length * 4 + thread; rest < ids.Length; rest += threads)
        {
            Atomic.Add(ref bins[InvalidBin.Of(ids[rest], experts)], 1);
        }

        int idA = -1, idB = -1, idC = -1, idD = -1;
        int runA = 0, runB = 0, runC = 0, runD = 0;
        var i = (long)thread;
        for (; i + threads < quads.Length; i += 2L * threads)
        {
            var window = quads.SubView(i);
            var p = window[0];
            var q = window[threads];
            Runs.Count(bins, experts, p.A, ref idA, ref runA);
            Runs.Count(bins, experts, p.B, ref idB, ref runB);
            Runs.Count(bins, experts, p.C, ref idC, ref runC);
            Runs.Count(bins, experts, p.D, ref idD, ref runD);
            Runs.Count(bins, experts, q.A, ref idA, ref runA);
            Runs.Count(bins, experts, q.B, ref idB, ref runB);
            Runs.Count(bins, experts, q.C, ref idC, ref runC);
            Runs.Count(bins, experts, q.D, ref idD, ref runD);
        }

        if (i < quads.Length)
        {
            var p = quads[i];
            Runs.Count(bins, experts, p.A, ref idA, ref runA);
            Runs.Count(bins, experts, p.B, ref idB, ref runB);
            Runs.Count(bins, experts, p.C, ref idC, ref runC);
            Runs.Count(bins, experts, p.D, ref idD, ref runD);
        }

        // Equal runs joined first: all ids to one expert would otherwise cost four atomics per thread
        // on one bin here (without the join that load took 1.12× thread runs' time on an H200).
        Join(idD, ref runD, idC, ref runC);
        Join(idD, ref runD, idB, ref runB);
        Join(idD, ref runD, idA, ref runA);
        Join(idC, ref runC, idB, ref runB);
        Join(idC, ref runC, idA, ref runA);
        Join(idB, ref runB, idA, ref runA);
        Runs.Flush(bins, experts, idA, runA);
        Runs.Flush(bins, experts, idB, runB);
        Runs.Flush(bins, experts, idC, runC);
        Runs.Flush(bins, experts, idD, runD);
    }

    public void CountPadding(ArrayView<int> ids, int alignedStart, int topK, int groups, ref int emptySlots, ref int paddedTokens)
    {
        var threads = groups * Group.DimX;
        var thread = Grid.IdxX * Group.DimX + Group.IdxX;
        for (var head = thread; head < alignedStart; head += threads)
        {
            Padding.Check(ids, head, topK, ref emptySlots, ref paddedTokens);
        }

        var quads = (ids.Length - alignedStart) / 4;
        for (var quad = (long)thread; quad < quads; quad += threads)
        {
            for (var place = 0; place < 4; place++)
            {
                Padding.Check(ids, alignedStart + 4 * quad + place, topK, ref emptySlots, ref paddedTokens);
            }
        }

        for (var rest = alignedStart + quads * 4 + thread; rest < ids.Length; rest += threads)
        {
            Padding.Check(ids, rest, topK, ref emptySlots, ref paddedTokens);
        }
    }

    /// <summary>Moves the run of <paramref name="id"/> into the run of <paramref name="intoId"/> when they are the same id.</summary>
    private static void Join(int id, ref int run, int intoId, ref int intoRun)
    {
        if (id == intoId)
        {
            intoRun += run;
            run = 0;
        }
    }
}

/// <summary>Four consecutive ids: one 128-bit load where the view is 16-byte aligned.</summary>
internal readonly record struct IdQuad(int A, int B, int C, int D);

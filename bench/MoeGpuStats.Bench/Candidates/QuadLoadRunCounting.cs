using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Bench.Candidates;

/// <summary>
/// A candidate for <see cref="HistogramCounting.ThreadRuns"/>, timed by the device check before it
/// may replace it: each thread loads four consecutive ids with one 128-bit load, two loads in
/// flight, and keeps a run for each of the four places. A thread's loads stay a multiple of 8 ids
/// apart, so with k = 8 each place sees the same place of every token it reads, and a collapsed
/// router's runs stay unbroken, as in the library's counting. <typeparamref name="TStep"/> adds
/// each id to its run.
/// </summary>
/// <remarks>
/// The prediction: one load instruction and one address computation for four ids instead of four,
/// 32 bytes in flight per thread instead of 16, six more registers for the runs; from CUDA 11.8's
/// SASS for sm_90 (<c>scripts/sass-loops.sh</c>), 61.5 instructions per four ids instead of 75 with
/// the library's step, 46.5 with <see cref="BranchFreeRunStep"/>, in the same 32 registers. The ids
/// after the last whole quad (three at most) are counted one by one by the first threads.
/// </remarks>
internal readonly struct QuadLoadRunCounting<TStep> : IHistogramCounting
    where TStep : struct, IRunStep
{
    public int ScratchBins => default(TStep).ScratchBins;

    public void CountShare(ArrayView<int> ids, ArrayView<int> bins, int experts, int groups)
    {
        var step = default(TStep);
        var threads = groups * Group.DimX;
        var thread = Grid.IdxX * Group.DimX + Group.IdxX;
        // The ids of the library's buffers start 16-byte aligned; any view could not. ILGPU 1.5.3's
        // AlignTo, which would split off the ids before the first boundary, emits PTX that ptxas
        // rejects (an untyped mov), so the candidate assumes the alignment: the host, which knows the
        // view's address, would pass the split to the kernel if this counting were taken.
        var quads = ids.AsAligned(4 * sizeof(int)).Cast<IdQuad>();
        var rest = quads.Length * 4 + thread;
        if (rest < ids.Length)
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
            step.Count(bins, experts, p.A, ref idA, ref runA);
            step.Count(bins, experts, p.B, ref idB, ref runB);
            step.Count(bins, experts, p.C, ref idC, ref runC);
            step.Count(bins, experts, p.D, ref idD, ref runD);
            step.Count(bins, experts, q.A, ref idA, ref runA);
            step.Count(bins, experts, q.B, ref idB, ref runB);
            step.Count(bins, experts, q.C, ref idC, ref runC);
            step.Count(bins, experts, q.D, ref idD, ref runD);
        }

        if (i < quads.Length)
        {
            var p = quads[i];
            step.Count(bins, experts, p.A, ref idA, ref runA);
            step.Count(bins, experts, p.B, ref idB, ref runB);
            step.Count(bins, experts, p.C, ref idC, ref runC);
            step.Count(bins, experts, p.D, ref idD, ref runD);
        }

        step.Flush(bins, experts, idA, runA);
        step.Flush(bins, experts, idB, runB);
        step.Flush(bins, experts, idC, runC);
        step.Flush(bins, experts, idD, runD);
    }
}

/// <summary>Four consecutive ids: one 128-bit load where the view is 16-byte aligned.</summary>
internal readonly record struct IdQuad(int A, int B, int C, int D);

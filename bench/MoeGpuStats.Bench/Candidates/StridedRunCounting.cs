using ILGPU;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Bench.Candidates;

/// <summary>
/// The library's loads (<see cref="HistogramCounting.ThreadRuns"/>: four ids in flight per thread,
/// a grid stride apart) with another <see cref="IRunStep"/>.
/// </summary>
internal readonly struct StridedRunCounting<TStep> : IHistogramCounting
    where TStep : struct, IRunStep
{
    public int ScratchBins => default(TStep).ScratchBins;

    public void CountShare(ArrayView<int> ids, ArrayView<int> bins, int experts, int groups)
    {
        var step = default(TStep);
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
            step.Count(bins, experts, a, ref runId, ref run);
            step.Count(bins, experts, b, ref runId, ref run);
            step.Count(bins, experts, c, ref runId, ref run);
            step.Count(bins, experts, d, ref runId, ref run);
        }

        for (; i < ids.Length; i += threads)
        {
            step.Count(bins, experts, ids[i], ref runId, ref run);
        }

        ThreadRunCounting.Flush(bins, experts, runId, run);
    }
}

using ILGPU;

namespace MoeGpuStats.Kernels;

/// <summary>How a counting adds one id to a thread's run of equal ids.</summary>
internal interface IRunStep
{
    /// <summary>The shared ints the step uses after the histogram's (<see cref="IHistogramCounting.ScratchBins"/>).</summary>
    int ScratchBins { get; }

    /// <summary>Extends the run of <paramref name="runId"/>, or adds it to its bin and starts a run of <paramref name="id"/>.</summary>
    void Count(ArrayView<int> bins, int experts, int id, ref int runId, ref int run);

    /// <summary>Adds the thread's last run, of <paramref name="run"/> ids equal to <paramref name="runId"/>, to its bin.</summary>
    void Flush(ArrayView<int> bins, int experts, int runId, int run);
}

/// <summary>The library's step (<see cref="HistogramCounting.ThreadRuns"/>): an atomic only where a run ends, behind a branch.</summary>
internal readonly struct BranchedRunStep : IRunStep
{
    public int ScratchBins => 0;

    /// <summary>Extends the thread's run of equal ids, or adds it to its bin and starts a new one.</summary>
    /// <remarks>
    /// Without branches but the atomic's (non-short-circuit <c>&amp;</c> and a select; ptxas keeps
    /// the branch around the atomic rather than predicating it): the branchy form cost about 16
    /// instructions per id, and at 128 Mi ids the record kernel issues for a large part of its
    /// time. The first, empty run adds nothing (256 threads adding 0 to one bin would serialize).
    /// </remarks>
    public void Count(ArrayView<int> bins, int experts, int id, ref int runId, ref int run)
    {
        var ends = id != runId;
        if (ends & run != 0)
        {
            Atomic.Add(ref bins[InvalidBin.Of(runId, experts)], run);
        }

        run = ends ? 1 : run + 1;
        runId = id;
    }

    public void Flush(ArrayView<int> bins, int experts, int runId, int run)
    {
        if (run != 0)
        {
            Atomic.Add(ref bins[InvalidBin.Of(runId, experts)], run);
        }
    }
}

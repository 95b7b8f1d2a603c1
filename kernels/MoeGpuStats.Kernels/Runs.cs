using ILGPU;

namespace MoeGpuStats.Kernels;

/// <summary>A thread's runs of equal ids: an atomic only where a run ends, behind a branch.</summary>
internal static class Runs
{
    /// <summary>Extends the thread's run of <paramref name="runId"/>, or adds it to its bin and starts a run of <paramref name="id"/>.</summary>
    /// <remarks>
    /// Without branches but the atomic's (non-short-circuit <c>&amp;</c> and a select; ptxas keeps
    /// the branch around the atomic rather than predicating it): the branchy form cost about 16
    /// instructions per id, and at 128 Mi ids the record kernel issues for a large part of its
    /// time. The first, empty run adds nothing (256 threads adding 0 to one bin would serialize).
    /// A branch-free step (an atomic per id, a run that goes on adding 0 to a bin of the thread's
    /// own) was measured no faster on an H200 (docs/performance.md).
    /// </remarks>
    public static void Count(ArrayView<int> bins, int experts, int id, ref int runId, ref int run)
    {
        var ends = id != runId;
        if (ends & run != 0)
        {
            Atomic.Add(ref bins[InvalidBin.Of(runId, experts)], run);
        }

        run = ends ? 1 : run + 1;
        runId = id;
    }

    /// <summary>Adds the thread's last run, of <paramref name="run"/> ids equal to <paramref name="runId"/>, to its bin.</summary>
    public static void Flush(ArrayView<int> bins, int experts, int runId, int run)
    {
        if (run != 0)
        {
            Atomic.Add(ref bins[InvalidBin.Of(runId, experts)], run);
        }
    }
}

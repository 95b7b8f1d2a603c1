using ILGPU.Runtime;
using static System.FormattableString;

namespace MoeGpuStats.Kernels;

/// <summary>
/// The record kernel's tuning for one accelerator, as CUB keeps a tuning policy per architecture:
/// the histogram counting, and the grid rule that <see cref="CountingGrid"/> turns into groups and
/// copies. <see cref="For"/> gives the values measured best; the device check builds others to sweep.
/// </summary>
internal sealed record RecordKernelPolicy
{
    /// <summary>
    /// The fewest ids a thread takes before the launch adds another group, whose flush of up to
    /// E bins to global memory must pay for itself.
    /// </summary>
    public const int DefaultIdsPerThread = 16;

    /// <summary>The fewest ids per thread of a batch too small to give every multiprocessor a group at <see cref="IdsPerThread"/>.</summary>
    public const int FewestIdsPerThread = 4;

    /// <summary>
    /// The fewest ids a counting group takes per expert, by default, before the launch adds another
    /// group: every group flushes up to E counts to global memory, which at thousands of experts
    /// costs as much as counting its ids. At 256 experts or fewer <see cref="DefaultIdsPerThread"/>
    /// decides; at 4,096 a group takes 256 ids per thread.
    /// </summary>
    public const int DefaultIdsPerBin = 16;

    /// <summary>The counting groups per copy of the batch histogram, by default.</summary>
    public const int DefaultGroupsPerCopy = 64;

    private readonly HistogramCounting _counting = HistogramCounting.ThreadRuns;
    private readonly int _idsPerThread = DefaultIdsPerThread;
    private readonly int _groupsPerCopy = DefaultGroupsPerCopy;
    private readonly int _idsPerBin = DefaultIdsPerBin;

    /// <summary>How threads add ids to the shared histogram.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Not a defined value.</exception>
    public HistogramCounting Counting
    {
        get => _counting;
        init => _counting = Enum.IsDefined(value) ? value : throw new ArgumentOutOfRangeException(nameof(Counting), Invariant($"Counting is {value}; give a defined HistogramCounting."));
    }

    /// <summary>The fewest ids per thread before another group is launched, once every multiprocessor has one.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Less than 1.</exception>
    public int IdsPerThread
    {
        get => _idsPerThread;
        init => _idsPerThread = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(IdsPerThread), Invariant($"IdsPerThread is {value}; give at least 1."));
    }

    /// <summary>The counting groups per copy of the batch histogram (<see cref="RecordArguments.Copies"/>, at most <see cref="RoutingStateLayout.MaxCopies"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Less than 1.</exception>
    public int GroupsPerCopy
    {
        get => _groupsPerCopy;
        init => _groupsPerCopy = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(GroupsPerCopy), Invariant($"GroupsPerCopy is {value}; give at least 1."));
    }

    /// <summary>The fewest ids per expert a group takes before another group is launched, once every multiprocessor has one; 0 for no such bound.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative.</exception>
    public int IdsPerBin
    {
        get => _idsPerBin;
        init => _idsPerBin = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(IdsPerBin), Invariant($"IdsPerBin is {value}; give 0 (no bound) or more."));
    }

    /// <summary>
    /// The policy measured best on <paramref name="accelerator"/>: <see cref="HistogramCounting.QuadLoadRuns"/>
    /// on CUDA, where it was measured faster; <see cref="HistogramCounting.ThreadRuns"/> elsewhere (on
    /// the CPU accelerator quad loads took 0.95–2.3× its time, slower at most shapes; on OpenCL they are unmeasured).
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    public static RecordKernelPolicy For(Accelerator accelerator)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        return new() { Counting = accelerator.AcceleratorType == AcceleratorType.Cuda ? HistogramCounting.QuadLoadRuns : HistogramCounting.ThreadRuns };
    }
}

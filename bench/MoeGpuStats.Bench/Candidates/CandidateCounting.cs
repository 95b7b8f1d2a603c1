using System.Reflection;
using ILGPU.Runtime;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Bench.Candidates;

/// <summary>
/// A histogram counting that the library does not use until the device check has timed it against
/// <see cref="HistogramCounting.ThreadRuns"/>: a predicted gain, measured before it is taken.
/// </summary>
/// <param name="Name">The name the device check prints.</param>
/// <param name="Create">Loads the record kernel with this counting, at the library's grid rule and flush copies.</param>
/// <param name="Kernel">The record kernel with this counting, for its PTX (<c>--emit-ptx</c>).</param>
internal sealed record CandidateCounting(string Name, Func<Accelerator, RoutingRecordLauncher> Create, MethodInfo Kernel)
{
    /// <summary>The candidates, in the order the device check prints them.</summary>
    public static IReadOnlyList<CandidateCounting> All { get; } =
    [
        Of<ThreadRunCounting<BranchFreeRunStep>>("BranchFreeRuns"),
        Of<QuadLoadRunCounting<BranchFreeRunStep>>("QuadLoadBranchFreeRuns"),
    ];

    private static CandidateCounting Of<TCounting>(string name)
        where TCounting : struct, IHistogramCounting =>
        new(
            name,
            accelerator => RoutingRecordKernel.Create<TCounting>(accelerator, CountingGridRule.Default),
            KernelPtx.RecordKernel<TCounting>());
}

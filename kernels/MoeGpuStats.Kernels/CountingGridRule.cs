namespace MoeGpuStats.Kernels;

/// <summary>The record kernel's tuning knobs that <see cref="CountingGrid"/> turns into groups and copies for one accelerator.</summary>
/// <param name="IdsPerThread">The fewest ids per thread before another group, once every multiprocessor has one.</param>
/// <param name="GroupsPerCopy">The counting groups per copy of the batch histogram.</param>
/// <param name="IdsPerBin">The fewest ids per expert a group takes before another group, once every multiprocessor has one; 0 for no such bound.</param>
internal readonly record struct CountingGridRule(int IdsPerThread, int GroupsPerCopy, int IdsPerBin)
{
    /// <summary>The library's rule.</summary>
    public static CountingGridRule Default { get; } =
        new(RoutingRecordKernel.DefaultIdsPerThread, RoutingRecordKernel.DefaultGroupsPerCopy, RoutingRecordKernel.DefaultIdsPerBin);
}

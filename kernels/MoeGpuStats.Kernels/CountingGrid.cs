using ILGPU.Runtime;

namespace MoeGpuStats.Kernels;

/// <summary>
/// The record kernel's grid rule for one <see cref="RecordKernelPolicy"/>: how many groups count a batch of ids. A small batch first gets a
/// group per multiprocessor, down to <see cref="RecordKernelPolicy.FewestIdsPerThread"/> ids per
/// thread (its threads then wait for one round of loads, not several in a row); a larger one a
/// group per <see cref="RecordKernelPolicy.IdsPerThread"/> ids per thread or <see cref="RecordKernelPolicy.IdsPerBin"/> ids per expert, whichever is
/// more (each group flushes up to E counts); never more groups than the multiprocessors hold at
/// once (registers and shared memory counted by the driver), since a second, partial wave would
/// cost a whole wave's time. It also sets how many copies of the batch histogram the groups flush
/// into: one per <see cref="RecordKernelPolicy.GroupsPerCopy"/> groups, at most as many as a batch
/// buffer holds at the record's expert count (<see cref="RoutingStateLayout.CopiesHeld"/>).
/// </summary>
internal readonly struct CountingGrid
{
    private readonly RecordKernelPolicy _policy;
    private readonly long _fewestIdsPerGroup;
    private readonly int _multiprocessors;
    private readonly int _maxGroups;

    /// <summary><paramref name="policy"/> for groups of <paramref name="groupSize"/> threads on <paramref name="multiprocessors"/> that hold <paramref name="maxGroups"/> at once.</summary>
    internal CountingGrid(RecordKernelPolicy policy, int groupSize, int multiprocessors, int maxGroups)
    {
        _policy = policy;
        GroupSize = groupSize;
        _fewestIdsPerGroup = (long)groupSize * RecordKernelPolicy.FewestIdsPerThread;
        _multiprocessors = multiprocessors;
        _maxGroups = maxGroups;
    }

    /// <summary>Threads per group.</summary>
    public int GroupSize { get; }

    /// <summary><paramref name="policy"/> for <paramref name="kernel"/> on <paramref name="accelerator"/>.</summary>
    public static CountingGrid For(Accelerator accelerator, Kernel kernel, RecordKernelPolicy policy)
    {
        var groupSize = RoutingRecordKernel.GroupSize(accelerator);
        var resident = accelerator.EstimateMaxActiveGroupsPerMultiprocessor(kernel, groupSize, 0);
        var multiprocessors = Math.Max(1, accelerator.NumMultiprocessors);
        return new CountingGrid(policy, groupSize, multiprocessors, multiprocessors * Math.Max(1, resident));
    }

    /// <summary>The counting groups for <paramref name="ids"/> ids of <paramref name="experts"/> experts (at least one), leaving <paramref name="reserved"/> places of the wave to other groups.</summary>
    public int Groups(long ids, int experts, int reserved)
    {
        var idsPerGroup = Math.Max((long)GroupSize * _policy.IdsPerThread, (long)experts * _policy.IdsPerBin);
        var spread = Math.Min(_multiprocessors, (ids + _fewestIdsPerGroup - 1) / _fewestIdsPerGroup);
        return (int)Math.Clamp(Math.Max(spread, (ids + idsPerGroup - 1) / idsPerGroup), 1L, Math.Max(1, _maxGroups - reserved));
    }

    /// <summary>The batch-histogram copies that <paramref name="groups"/> counting groups of a record of <paramref name="experts"/> experts flush into.</summary>
    public int Copies(int groups, int experts) =>
        Math.Clamp(groups / _policy.GroupsPerCopy, 1, RoutingStateLayout.CopiesHeld(experts));
}

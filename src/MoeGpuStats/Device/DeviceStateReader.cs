using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Engines;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Device;

/// <summary>
/// Copies of one routing state's device views back to the host, for a <see cref="DeviceRoutingStats"/>
/// and for each layer of a model. The caller folds any pending record first and serializes calls;
/// ILGPU's host copies wait for the stream, so every read sees the records enqueued before it.
/// </summary>
internal static class DeviceStateReader
{
    public static RoutingStateBlock ReadBlock(AcceleratorStream stream, RoutingStateViews views)
    {
        Span<RoutingStateBlock> block = stackalloc RoutingStateBlock[1];
        views.State.CopyToCPU(stream, block);
        return block[0];
    }

    /// <summary>The first <paramref name="experts"/> utilizations, or the decayed ones (empty when <paramref name="options"/> has no decay).</summary>
    public static float[] ReadUtilization(AcceleratorStream stream, RoutingStateViews views, int experts, RoutingStatsOptions options, bool decayed)
    {
        if (decayed && options.UtilizationDecay is null)
        {
            return [];
        }

        var values = new float[experts];
        (decayed ? views.DecayedUtilization : views.Utilization).SubView(0, experts).CopyToCPU(stream, values.AsSpan());
        return values;
    }

    public static ulong[] ReadTokenCounts(AcceleratorStream stream, RoutingStateViews views, int experts)
    {
        var values = new ulong[experts];
        views.TokenCounts.SubView(0, experts).CopyToCPU(stream, values.AsSpan());
        return values;
    }

    /// <summary>The variance ring's entries, oldest first (the block and the ring copied).</summary>
    public static float[] ReadVarianceHistory(AcceleratorStream stream, RoutingStateViews views)
    {
        var ring = new float[RoutingStateLayout.VarianceWindow];
        var block = ReadBlock(stream, views);
        views.VarianceHistory.SubView(0, ring.Length).CopyToCPU(stream, ring.AsSpan());
        return Unroll(ring, block);
    }

    /// <summary>Launches the query and copies its result back.</summary>
    public static UtilizationQueryResult Query(AcceleratorStream stream, RoutingStateViews views, int window, UtilizationQueryLauncher query, ArrayView<UtilizationQueryResult> result)
    {
        query(stream, views, window, result);
        Span<UtilizationQueryResult> host = stackalloc UtilizationQueryResult[1];
        result.CopyToCPU(stream, host);
        return host[0];
    }

    /// <summary>Every array of the state copied back (the first copy waits for the queued work).</summary>
    public static RoutingState ReadState(AcceleratorStream stream, RoutingStateViews views, int experts, RoutingStatsOptions options)
    {
        var utilization = new float[experts];
        var sums = new double[experts];
        var decayed = new float[options.UtilizationDecay is null ? 0 : experts];
        var counts = new ulong[experts];
        var ring = new float[RoutingStateLayout.VarianceWindow];
        var block = ReadBlock(stream, views);
        views.Utilization.SubView(0, experts).CopyToCPU(stream, utilization.AsSpan());
        views.UtilizationSums.SubView(0, experts).CopyToCPU(stream, sums.AsSpan());
        views.DecayedUtilization.SubView(0, decayed.Length).CopyToCPU(stream, decayed.AsSpan());
        views.TokenCounts.SubView(0, experts).CopyToCPU(stream, counts.AsSpan());
        views.VarianceHistory.SubView(0, ring.Length).CopyToCPU(stream, ring.AsSpan());
        return StateOf(block, utilization, sums, decayed, counts, ring);
    }

    /// <summary>A state from its block and arrays copied back (the caller's: the state keeps them; <paramref name="ring"/> is unrolled).</summary>
    public static RoutingState StateOf(RoutingStateBlock block, float[] utilization, double[] sums, float[] decayed, ulong[] counts, ReadOnlySpan<float> ring) =>
        new()
        {
            TotalRoutings = block.TotalRoutings,
            TotalTokens = block.TotalTokens,
            TokensDropped = block.TokensDropped,
            InvalidExpertIds = block.InvalidExpertIds,
            RoutedSlots = block.RoutedSlots,
            SlotsDropped = block.SlotsDropped,
            LoadBalanceLossSum = block.LoadBalanceLossSum,
            RouterZLossSum = block.RouterZLossSum,
            AverageLoadBalanceLoss = block.AverageLoadBalanceLoss,
            AverageRouterZLoss = block.AverageRouterZLoss,
            RoutingEfficiency = block.RoutingEfficiency,
            ExpertUtilization = utilization,
            UtilizationSums = sums,
            DecayedExpertUtilization = decayed,
            ExpertTokenCounts = counts,
            LoadVarianceHistory = Unroll(ring, block),
            CapacityAverageUtilization = block.CapacityAverageUtilization,
            CapacityPeakUtilization = block.CapacityPeakUtilization,
            CapacityExceededCount = block.CapacityExceededCount,
            TotalCapacity = block.TotalCapacity,
            TotalUsed = block.TotalUsed,
        };

    /// <summary>The ring's entries, oldest first.</summary>
    private static float[] Unroll(ReadOnlySpan<float> ring, RoutingStateBlock block)
    {
        var history = new float[block.VarianceCount];
        for (var i = 0; i < history.Length; i++)
        {
            history[i] = ring[(block.VarianceHead + i) % ring.Length];
        }

        return history;
    }
}
